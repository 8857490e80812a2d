"""The trainable DeblurGAN-v2 wrapper (the authors' ``adversarial_trainer.py``, ``train.py``) and its checkpoints.

:class:`DeblurGANv2` holds the generator, the double-scale discriminator, the content loss, their two Adam
optimisers (lr 1e-4) and the RaGAN-LS prediction pools; ``training_step(blurred, sharp)`` takes
``(B, C, H, W)`` float32 images in ``[0, 1]`` and minimises ``content + adv_weight * adv`` with
``adv_weight = 0.001``, the authors' training config (``config/config.yaml: adv_lambda: 0.001``; the paper's
Sec. 3.3 text writes 0.01); ``enhance`` returns the sharp estimate, same shape, in ``[0, 1]``. ``save`` is
atomic and ``load`` / ``from_checkpoint`` check the format tag :data:`CHECKPOINT_FORMAT` and the architecture;
:class:`DeblurGANConfig` is params group :data:`PARAM_GROUP` (``baselines.deblurgan``), parsed like every
group by :func:`gimbal.config.parse_config`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from gimbal.baselines.base import BaselineConfig, BaselineModel
from gimbal.baselines.deblurgan.discriminator import (
    DoubleScaleDiscriminator,
    PredictionPool,
    ragan_ls_d_loss,
    ragan_ls_g_loss,
)
from gimbal.baselines.deblurgan.generator import PARAM_GROUP, FPNMobileNetGenerator, _check_images
from gimbal.baselines.deblurgan.losses import ContentLoss
from gimbal.errors import ModelFileIncompatible, ParamError, ShapeError

__all__ = [
    "CHECKPOINT_FORMAT",
    "DeblurGANConfig",
    "DeblurGANv2",
    "PARAM_GROUP",
    "POOL_SIZE",
    "parameter_count",
]

CHECKPOINT_FORMAT = "gimbal.baselines.deblurgan/v1"
POOL_SIZE = 50  # RaGAN-LS prediction pool (the original's ImagePool(50))


@dataclass(frozen=True)
class DeblurGANConfig(BaselineConfig):
    """Params group ``baselines.deblurgan``: :class:`DeblurGANv2`'s hyper-parameters and its training recipe.

    Defaults are the tiny embedded size; paper scale: ``width_mult=1.0, fpn_channels=128, head_channels=64,
    d_channels=64`` (the other values are the authors' already). The image channels and the weight-init seed
    are not keys of the group: they are the run's (``model.channels``, ``seed``), given to :class:`DeblurGANv2`.

    Recipe (:data:`RECIPE_KEYS`, not stored with the model): ``steps`` generator/discriminator updates (0: no
    training, only validate and write the model), ``batch_size`` clips per step, ``weights`` the path of
    weights to start from (a DeblurGAN-v2 checkpoint of this module, or a bare generator state dict), or None
    to train from scratch.
    """

    width_mult: float = 0.5  # MobileNetV2 width multiplier (paper 1.0)
    fpn_channels: int = 32  # FPN lateral / top-down width (paper 128)
    head_channels: int = 16  # per-level head and smoothing width (paper 64)
    norm: str = "instance"  # FPN / discriminator norm: instance | batch
    identity_init: bool = True  # zero-init the last conv so training starts from out = input (original: False)
    d_channels: int = 16  # PatchGAN base width ndf (paper 64)
    d_local_layers: int = 3  # local PatchGAN: 70 px receptive field
    d_global_layers: int = 5  # global PatchGAN: 286 px receptive field
    lr: float = 1e-4  # Adam, both networks (paper 1e-4)
    adv_weight: float = 0.001  # lambda of the adversarial term (authors' config 0.001; paper text 0.01)
    mse_weight: float = 0.5
    perceptual_weight: float = 0.006  # VGG19 conv3_3 MSE weight
    structural_weight: float = 0.05  # weight of the SUBSTITUTE structural loss (no VGG weights)
    perceptual_weights: str | None = None  # path of torchvision VGG19 weights, or None
    steps: int = 200
    batch_size: int = 4
    weights: str | None = None

    ARCH_KEYS = ("channels", "width_mult", "fpn_channels", "head_channels", "norm", "d_channels",
                 "d_local_layers", "d_global_layers")
    RECIPE_KEYS = ("steps", "batch_size", "weights")

    def __post_init__(self) -> None:
        def bad(key: str, why: str) -> ParamError:
            return ParamError(f"params: '{PARAM_GROUP}.{key}' {why}, got {getattr(self, key)!r}")

        for key in ("fpn_channels", "head_channels", "d_channels", "d_local_layers", "d_global_layers", "batch_size"):
            if not isinstance(getattr(self, key), int) or getattr(self, key) < 1:
                raise bad(key, "must be a positive integer")
        for key in ("width_mult", "lr"):
            if not getattr(self, key) > 0:
                raise bad(key, "must be > 0")
        for key in ("adv_weight", "mse_weight", "perceptual_weight", "structural_weight"):
            if not getattr(self, key) >= 0:
                raise bad(key, "must be >= 0")
        if self.norm not in ("instance", "batch"):
            raise bad("norm", "must be 'instance' or 'batch'")
        if self.steps < 0:
            raise bad("steps", "must be >= 0 (0: only evaluate given weights)")


class DeblurGANv2(BaselineModel):
    """DeblurGAN-v2 (FPN-MobileNet generator + double-scale RaGAN-LS discriminator), trainable from scratch.

    Attributes: ``generator`` (:class:`FPNMobileNetGenerator`), ``discriminator``
    (:class:`DoubleScaleDiscriminator`), ``content_loss`` (:class:`ContentLoss`), ``opt_g`` / ``opt_d``
    (Adam, ``config.lr``), ``step`` (training steps done). ``channels``: image channels (1 grey, 3 RGB). Weights are
    initialised from ``seed`` without touching the global RNG. ``feature_extractor`` overrides
    ``config.perceptual_weights``. Checkpoint plumbing: :class:`~gimbal.baselines.base.BaselineModel`.
    """

    FORMAT, NAME, STAGE, PARAM_GROUP, CONFIG = (CHECKPOINT_FORMAT, "DeblurGAN-v2", "train_deblurgan", PARAM_GROUP,
                                                DeblurGANConfig)

    def __init__(
        self,
        config: DeblurGANConfig | None = None,
        channels: int = 3,
        seed: int = 0,
        feature_extractor: str | os.PathLike[str] | nn.Module | None = None,
        device: str | torch.device = "cpu",
    ) -> None:
        if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
            raise ParamError(f"DeblurGAN-v2: channels must be a positive integer, got {channels!r}")
        self.config = config or DeblurGANConfig()
        self.channels = channels
        self.seed = seed
        c = self.config
        self.device = torch.device(device)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.generator = FPNMobileNetGenerator(
                channels, c.width_mult, c.fpn_channels, c.head_channels, c.norm, c.identity_init
            )
            self.discriminator = DoubleScaleDiscriminator(
                channels, c.d_channels, c.d_local_layers, c.d_global_layers, c.norm
            )
        if feature_extractor is None and c.perceptual_weights is not None:
            feature_extractor = c.perceptual_weights
        self.content_loss = ContentLoss(feature_extractor, c.mse_weight, c.perceptual_weight, c.structural_weight)
        self.generator.to(self.device)
        self.discriminator.to(self.device)
        self.content_loss.to(self.device)
        self.opt_g = torch.optim.Adam(self.generator.parameters(), lr=c.lr)
        self.opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=c.lr)
        # RaGAN-LS reference means, one real / fake pool per discriminator scale (local, global), as the original
        self.real_pools = [PredictionPool(POOL_SIZE) for _ in range(2)]
        self.fake_pools = [PredictionPool(POOL_SIZE) for _ in range(2)]
        self.step = 0

    # -- training -------------------------------------------------------------------------------

    def training_step(self, blurred: torch.Tensor, sharp: torch.Tensor) -> dict[str, float]:
        """One generator + discriminator update on a batch (train.py ``_run_epoch`` order).

        ``blurred``, ``sharp``: ``(B, C, H, W)`` in [0, 1]. The discriminator is updated first on
        ``adv_weight * double-scale RaGAN-LS`` (the original scales it by the same lambda) after adding this
        batch's predictions to the prediction pools, then the generator on ``content + adv_weight * adv``
        (relativistic means from the pools: constants). Returns floats ``loss_g, content, mse, perceptual,
        adv_g, loss_d``.
        """
        c = self.config
        _check_images(blurred, self.channels, "training_step blurred")
        _check_images(sharp, self.channels, "training_step sharp")
        if blurred.shape != sharp.shape:
            raise ShapeError(
                f"DeblurGAN-v2 training_step: blurred {tuple(blurred.shape)} != sharp {tuple(sharp.shape)}"
            )
        blurred, sharp = blurred.to(self.device), sharp.to(self.device)
        self.generator.train()
        self.discriminator.train()
        fake = self.generator(blurred)

        loss_d = fake.new_zeros(())
        if c.adv_weight > 0:
            self.opt_d.zero_grad(set_to_none=True)
            real_preds = self.discriminator(sharp)
            fake_preds = self.discriminator(fake.detach())
            for pools, preds in ((self.real_pools, real_preds), (self.fake_pools, fake_preds)):
                for pool, pred in zip(pools, preds, strict=True):
                    pool.add(pred)
            loss_d = c.adv_weight * sum(
                ragan_ls_d_loss(r, f, rp.mean(), fp.mean())
                for r, f, rp, fp in zip(real_preds, fake_preds, self.real_pools, self.fake_pools, strict=True)
            ) / len(real_preds)
            loss_d.backward()
            self.opt_d.step()

        self.opt_g.zero_grad(set_to_none=True)
        terms = self.content_loss(fake, sharp)
        adv_g = fake.new_zeros(())
        if c.adv_weight > 0:
            self.discriminator.requires_grad_(False)
            try:
                real_preds = self.discriminator(sharp)
                fake_preds = self.discriminator(fake)
                adv_g = sum(
                    ragan_ls_g_loss(r, f, rp.mean(), fp.mean())
                    for r, f, rp, fp in zip(real_preds, fake_preds, self.real_pools, self.fake_pools, strict=True)
                ) / len(real_preds)
            finally:
                self.discriminator.requires_grad_(True)
        loss_g = terms["content"] + c.adv_weight * adv_g
        loss_g.backward()
        self.opt_g.step()
        self.step += 1
        return {
            "loss_g": float(loss_g.detach()),
            "content": float(terms["content"].detach()),
            "mse": float(terms["mse"].detach()),
            "perceptual": float(terms["perceptual"].detach()),
            "adv_g": float(adv_g.detach()),
            "loss_d": float(loss_d.detach()),
        }

    @property
    def network(self) -> nn.Module:
        """The restoring network: the generator (what :func:`gimbal.models.liveness.restorer_liveness` inspects)."""
        return self.generator

    # -- inference ------------------------------------------------------------------------------

    @torch.no_grad()
    def enhance(self, blurred: torch.Tensor) -> torch.Tensor:
        """Sharp estimate of ``blurred`` ``(B, C, H, W)`` or ``(C, H, W)`` in [0, 1]; same shape, [0, 1], on the
        input's device. Runs the generator in eval mode (restores the previous mode)."""
        squeeze = blurred.ndim == 3
        x = blurred.unsqueeze(0) if squeeze else blurred
        _check_images(x, self.channels, "enhance input")
        was_training = self.generator.training
        self.generator.eval()
        try:
            out = self.generator(x.to(self.device)).to(blurred.device)
        finally:
            self.generator.train(was_training)
        return out[0] if squeeze else out

    # -- persistence ----------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume: format tag, config, both networks, both optimisers, step."""
        return {
            "format": CHECKPOINT_FORMAT,
            "config": self.stored_config(),
            "generator": self.generator.state_dict(),
            "discriminator": self.discriminator.state_dict(),
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "pools": {"real": [p.state_dict() for p in self.real_pools],
                      "fake": [p.state_dict() for p in self.fake_pools]},
            "step": self.step,
        }

    def load_state(self, ckpt: dict[str, Any], where: str | os.PathLike[str]) -> DeblurGANv2:
        """Load a :meth:`state_dict` (read from ``where``, which errors name) into this model; returns self."""
        path = where
        self.check_arch(ckpt, where)
        try:
            self.generator.load_state_dict(ckpt["generator"])
            self.discriminator.load_state_dict(ckpt["discriminator"])
            self.opt_g.load_state_dict(ckpt["opt_g"])
            self.opt_d.load_state_dict(ckpt["opt_d"])
            pools = ckpt.get("pools") or {}  # absent in checkpoints written before the pools: start empty
            for key, mine in (("real", self.real_pools), ("fake", self.fake_pools)):
                for pool, state in zip(mine, pools.get(key) or [{"size": POOL_SIZE, "scores": []}] * 2, strict=True):
                    pool.load_state_dict(state)
        except (RuntimeError, KeyError, ValueError, TypeError) as exc:
            raise ModelFileIncompatible(f"{path}: DeblurGAN-v2 checkpoint does not match the model ({exc}); "
                                        "re-train it") from exc
        self.step = int(ckpt.get("step", 0))
        return self

    @classmethod
    def from_checkpoint(
        cls,
        path: str | os.PathLike[str],
        feature_extractor: str | os.PathLike[str] | nn.Module | None = None,
        device: str | torch.device = "cpu",
    ) -> DeblurGANv2:
        """Build a model with the architecture stored in a checkpoint and load it (DataError as :meth:`load`)."""
        ckpt = cls.read_checkpoint(path)
        config, channels, seed = cls.saved_config(ckpt, path)
        if feature_extractor is None and config.perceptual_weights is not None:
            if not Path(config.perceptual_weights).is_file():  # weights are a loss-only input: not needed to infer
                config = replace(config, perceptual_weights=None)
        return cls(config, channels, seed, feature_extractor=feature_extractor, device=device).load_state(ckpt, path)


def parameter_count(module: nn.Module) -> int:
    """Number of trainable parameters of ``module``."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
