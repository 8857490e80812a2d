"""DMPHN-1-2-4 (Zhang et al., CVPR 2019, Sec. 3): the network, its trainable wrapper and checkpoints.

:class:`DMPHNNet` maps a blurry image ``(B, C, H, W)`` in ``[0, 1]`` (H, W multiples of :data:`PAD_MULTIPLE` = 8)
to a sharp estimate of the same shape, unclamped. :class:`DMPHN` holds it with its Adam optimiser (lr 1e-4, the
paper's) and trains it on the paper's MSE loss (``training_step``); ``enhance`` takes any H, W (replicate-padded to
a multiple of 8 and cropped back) and clamps to ``[0, 1]``. ``save`` is atomic with a tensor checksum;
``load_state`` / ``from_checkpoint`` check the format tag :data:`CHECKPOINT_FORMAT` and the architecture.
:class:`DMPHNConfig` is params group :data:`PARAM_GROUP` (``baselines.dmphn``).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from gimbal.baselines.base import BaselineConfig, BaselineModel
from gimbal.errors import ModelFileIncompatible, ParamError, ShapeError

__all__ = [
    "CHECKPOINT_FORMAT",
    "DMPHN",
    "PAD_MULTIPLE",
    "PARAM_GROUP",
    "DMPHNConfig",
    "DMPHNDecoder",
    "DMPHNEncoder",
    "DMPHNNet",
    "ResBlock",
]

CHECKPOINT_FORMAT = "gimbal.baselines.dmphn/v1"
PARAM_GROUP = "baselines.dmphn"
PAD_MULTIPLE = 8  # 2 (level-3 patch split) x 4 (two stride-2 convs): H, W of the network input must divide by it
CENTER = 0.5  # the authors' code feeds images - 0.5 and predicts sharp - 0.5


@dataclass(frozen=True)
class DMPHNConfig(BaselineConfig):
    """Params group ``baselines.dmphn``: :class:`DMPHN`'s hyper-parameters and its training recipe.

    Defaults are the tiny embedded size; paper scale: ``base_channels=32, res_blocks=2`` (lr is the paper's). The
    image channels and the weight-init seed are not keys of the group: they are the run's (``model.channels``,
    ``seed``), given to :class:`DMPHN`. ``identity_init`` (our deviation, default on): the output is
    ``input + D1(...)`` with D1's last conv zero-initialised, so training starts from ``output = input``; off, the
    output is ``D1(...)`` as in the paper.

    Recipe (:data:`RECIPE_KEYS`, not stored with the model): ``steps`` Adam updates, ``batch_size`` clips per step.
    """

    base_channels: int = 8  # c: encoder widths c, 2c, 4c (paper 32)
    res_blocks: int = 1  # residual blocks per scale in each encoder / decoder (paper 2)
    identity_init: bool = True  # out = x + D1(...), D1's last conv zero-initialised (paper: out = D1(...))
    lr: float = 1e-4  # Adam (paper 1e-4)
    steps: int = 200
    batch_size: int = 4

    ARCH_KEYS = ("channels", "base_channels", "res_blocks", "identity_init")
    RECIPE_KEYS = ("steps", "batch_size")

    def __post_init__(self) -> None:
        def bad(key: str, why: str) -> ParamError:
            return ParamError(f"params: '{PARAM_GROUP}.{key}' {why}, got {getattr(self, key)!r}")

        def is_int(value: Any) -> bool:
            return isinstance(value, int) and not isinstance(value, bool)

        for key in ("base_channels", "batch_size"):
            if not is_int(getattr(self, key)) or getattr(self, key) < 1:
                raise bad(key, "must be a positive integer (e.g. 8; paper base_channels 32)")
        if not is_int(self.res_blocks) or self.res_blocks < 0:
            raise bad("res_blocks", "must be an integer >= 0 (e.g. 1; paper 2)")
        if not is_int(self.steps) or self.steps < 0:
            raise bad("steps", "must be an integer >= 0 (0: no training)")
        if not isinstance(self.identity_init, bool):
            raise bad("identity_init", "must be true or false")
        if isinstance(self.lr, bool) or not isinstance(self.lr, (int, float)) or not (0 < self.lr < math.inf):
            raise bad("lr", "must be a number > 0 (paper 1e-4)")


# -- building blocks ----------------------------------------------------------------------------------------


def _conv3(c_in: int, c_out: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1)


class ResBlock(nn.Module):
    """``x + conv3x3(relu(conv3x3(x)))``, no normalisation (paper Sec. 3: "residual links", one ReLU each).

    ``(B, c, h, w) -> (B, c, h, w)``.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(_conv3(channels, channels), nn.ReLU(), _conv3(channels, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def _res_blocks(channels: int, n: int) -> list[nn.Module]:
    return [ResBlock(channels) for _ in range(n)]


class DMPHNEncoder(nn.Module):
    """E_i: ``conv3x3 (C -> c)``, res blocks, ``conv3x3/2 (c -> 2c)``, res blocks, ``conv3x3/2 (2c -> 4c)``, res blocks.

    ``(B, C, h, w) -> (B, 4c, h / 4, w / 4)`` (h, w multiples of 4). At the paper's size (c = 32, 2 blocks per scale)
    this is its 15 convolutions with 6 residual links and 6 ReLUs.
    """

    def __init__(self, channels: int, base_channels: int, res_blocks: int) -> None:
        super().__init__()
        c = base_channels
        self.body = nn.Sequential(
            _conv3(channels, c), *_res_blocks(c, res_blocks),
            _conv3(c, 2 * c, stride=2), *_res_blocks(2 * c, res_blocks),
            _conv3(2 * c, 4 * c, stride=2), *_res_blocks(4 * c, res_blocks),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class DMPHNDecoder(nn.Module):
    """D_i, the encoder mirrored: res blocks at 4c, ``deconv4x4/2 (4c -> 2c)``, res blocks, ``deconv4x4/2 (2c -> c)``,
    res blocks, ``conv3x3 (c -> C)`` (:attr:`out`, the last layer).

    ``(B, 4c, h, w) -> (B, C, 4 h, 4 w)``, unbounded (a residual, or the image for D_1).
    """

    def __init__(self, channels: int, base_channels: int, res_blocks: int) -> None:
        super().__init__()
        c = base_channels
        self.body = nn.Sequential(
            *_res_blocks(4 * c, res_blocks),
            nn.ConvTranspose2d(4 * c, 2 * c, 4, stride=2, padding=1), *_res_blocks(2 * c, res_blocks),
            nn.ConvTranspose2d(2 * c, c, 4, stride=2, padding=1), *_res_blocks(c, res_blocks),
        )
        self.out = _conv3(c, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.body(x))


def _init_weights(module: nn.Module) -> None:
    """The authors' init: conv / deconv weights ~ N(0, (0.5 sqrt(2 / n))^2), n = k_h k_w out_channels; biases 0."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
        n = module.kernel_size[0] * module.kernel_size[1] * module.out_channels
        nn.init.normal_(module.weight, 0.0, 0.5 * math.sqrt(2.0 / n))
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def _check_images(x: Any, channels: int, what: str, multiple: int = 1) -> None:
    """ShapeError naming ``what`` and the shape unless ``x`` is a float ``(B, channels, H, W)`` tensor with H, W
    multiples of ``multiple``."""
    if not isinstance(x, torch.Tensor) or x.ndim != 4 or x.shape[1] != channels or not x.is_floating_point():
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ShapeError(f"DMPHN {what}: expected float (B, {channels}, H, W) in [0, 1], got {shape}")
    if x.shape[-2] % multiple or x.shape[-1] % multiple or x.shape[-2] == 0 or x.shape[-1] == 0:
        raise ShapeError(
            f"DMPHN {what}: H and W must be positive multiples of {multiple} (2 for the 4-patch split x 4 for the two "
            f"stride-2 convs), got {tuple(x.shape)}; pad it (DMPHN.enhance pads and crops back)"
        )


# -- the network --------------------------------------------------------------------------------------------


class DMPHNNet(nn.Module):
    """DMPHN-1-2-4: three levels, each with its own encoder E_i and decoder D_i (not shared).

    Level i splits the image into 2^(i-1) non-overlapping patches B_{i,j}: level 1 the whole image, level 2 its top
    and bottom halves, level 3 the 2x2 grid of quadrants. The paper (Sec. 3) runs bottom-up, from the finest
    split; S is a decoder output, C an encoder output, "(+)" spatial concatenation:

    - level 3: ``C_{3,j} = E_3(B_{3,j})`` for the 4 quadrants; ``C*_{3,j} = C_{3,2j-1} (+) C_{3,2j}`` joins the
      two quadrants of half j side by side; ``S_{3,j} = D_3(C*_{3,j})``;
    - level 2: ``C_{2,j} = E_2(B_{2,j} + S_{3,j}) + C*_{3,j}``; ``C*_2 = C_{2,1} (+) C_{2,2}`` (stacked vertically);
      ``S_2 = D_2(C*_2)``;
    - level 1: ``C_1 = E_1(B_1 + S_2) + C*_2``; ``S_1 = D_1(C_1)``, the output (trained with MSE to the sharp image).

    As in the authors' code the images are shifted to ``[-0.5, 0.5]`` inside (``B = x - 0.5``) and the output
    shifted back (``S_1 + 0.5``); with ``identity_init`` (our deviation) the output is instead ``x + S_1`` with D_1's
    last conv zero-initialised, so a fresh network returns its input.

    ``forward``: ``(B, C, H, W)`` in ``[0, 1]``, H and W multiples of :data:`PAD_MULTIPLE` (8) -> ``(B, C, H, W)``,
    not clamped. Attributes: ``encoders`` / ``decoders`` (``nn.ModuleList``, index 0 = level 1).
    """

    def __init__(self, channels: int = 1, base_channels: int = 8, res_blocks: int = 1,
                 identity_init: bool = True) -> None:
        super().__init__()
        self.channels = channels
        self.identity_init = identity_init
        self.encoders = nn.ModuleList(DMPHNEncoder(channels, base_channels, res_blocks) for _ in range(3))
        self.decoders = nn.ModuleList(DMPHNDecoder(channels, base_channels, res_blocks) for _ in range(3))
        self.apply(_init_weights)
        if identity_init:
            nn.init.zeros_(self.decoders[0].out.weight)
            nn.init.zeros_(self.decoders[0].out.bias)

    def level3(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Level 3 alone: ``(C*_3, S_3)`` of ``x`` ``(B, C, H, W)`` in [0, 1] (H, W multiples of 8), laid out as the
        image (top half above bottom half): features ``(B, 4c, H / 4, W / 4)`` and residuals ``(B, C, H, W)``.

        Each quadrant is encoded on its own, so a quadrant's features depend on its pixels only; each half's
        residual depends on the pixels of that half only (D_3 sees the two quadrant features of one half).
        """
        _check_images(x, self.channels, "level3 input", PAD_MULTIPLE)
        feats, res = self._level3(x - CENTER)
        return _unbatch_halves(feats), _unbatch_halves(res)

    def _level3(self, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Level 3 on the centred image ``b`` ``(B, C, H, W)``: ``C*_3`` ``(2B, 4c, H/8, W/4)`` and ``S_3``
        ``(2B, C, H/2, W)``, the two halves stacked along the batch (top first)."""
        n = b.shape[0]
        top, bottom = b.chunk(2, dim=-2)
        quads = torch.cat([*top.chunk(2, dim=-1), *bottom.chunk(2, dim=-1)])  # (4B): tl, tr, bl, br
        f = self.encoders[2](quads)  # C_{3,j}, every quadrant on its own
        tl, tr, bl, br = f.split(n)
        halves = torch.cat([torch.cat([tl, tr], dim=-1), torch.cat([bl, br], dim=-1)])  # C*_{3,j}: (2B)
        return halves, self.decoders[2](halves)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_images(x, self.channels, "network input", PAD_MULTIPLE)
        b = x - CENTER
        f3, s3 = self._level3(b)
        halves = torch.cat(b.chunk(2, dim=-2))  # B_{2,j}: (2B, C, H/2, W), top first
        f2 = self.encoders[1](halves + s3) + f3  # C_{2,j}
        f2 = _unbatch_halves(f2)  # C*_2: (B, 4c, H/4, W/4)
        s2 = self.decoders[1](f2)
        f1 = self.encoders[0](b + s2) + f2  # C_1
        s1 = self.decoders[0](f1)
        return x + s1 if self.identity_init else s1 + CENTER


def _unbatch_halves(t: torch.Tensor) -> torch.Tensor:
    """``(2B, ...)`` top halves then bottom halves -> ``(B, ..., 2h, w)``, the top above the bottom."""
    top, bottom = t.chunk(2, dim=0)
    return torch.cat([top, bottom], dim=-2)


# -- the trainable wrapper ----------------------------------------------------------------------------------


class DMPHN(BaselineModel):
    """DMPHN-1-2-4 trainable from scratch: ``network`` (:class:`DMPHNNet`), ``optimizer`` (Adam, ``config.lr``),
    ``step`` (training steps done). ``channels``: image channels (1 grey, 3 RGB). Weights are initialised from
    ``seed`` without touching torch's global RNG. Checkpoint plumbing: :class:`~gimbal.baselines.base.BaselineModel`.
    """

    FORMAT, NAME, STAGE, PARAM_GROUP, CONFIG = CHECKPOINT_FORMAT, "DMPHN", "train_dmphn", PARAM_GROUP, DMPHNConfig

    def __init__(self, config: DMPHNConfig | None = None, channels: int = 1, seed: int = 0,
                 device: str | torch.device = "cpu") -> None:
        if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
            raise ParamError(f"DMPHN: channels must be a positive integer, got {channels!r}")
        self.config = config or DMPHNConfig()
        self.channels = channels
        self.seed = seed
        self.device = torch.device(device)
        c = self.config
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.network = DMPHNNet(channels, c.base_channels, c.res_blocks, c.identity_init)
        self.network.to(self.device)
        self.optimizer = torch.optim.Adam(self.network.parameters(), lr=c.lr)
        self.step = 0

    # -- training -------------------------------------------------------------------------------

    def training_step(self, blurred: torch.Tensor, sharp: torch.Tensor) -> dict[str, float]:
        """One Adam step on ``MSE(network(blurred), sharp)`` (the paper's loss; the output is not clamped).

        ``blurred``, ``sharp``: ``(B, C, H, W)`` in [0, 1], equal shapes, H and W multiples of 8 (else
        :class:`ShapeError`). Returns floats ``loss`` and ``mse`` (equal: MSE is the only term), before the step.
        """
        _check_images(blurred, self.channels, "training_step blurred", PAD_MULTIPLE)
        _check_images(sharp, self.channels, "training_step sharp", PAD_MULTIPLE)
        if blurred.shape != sharp.shape:
            raise ShapeError(f"DMPHN training_step: blurred {tuple(blurred.shape)} != sharp {tuple(sharp.shape)}")
        blurred, sharp = blurred.to(self.device), sharp.to(self.device)
        self.network.train()
        self.optimizer.zero_grad(set_to_none=True)
        loss = F.mse_loss(self.network(blurred), sharp)
        loss.backward()
        self.optimizer.step()
        self.step += 1
        value = float(loss.detach())
        return {"loss": value, "mse": value}

    # -- inference ------------------------------------------------------------------------------

    @torch.no_grad()
    def enhance(self, blurred: torch.Tensor) -> torch.Tensor:
        """Sharp estimate of ``blurred`` ``(B, C, H, W)`` or ``(C, H, W)`` in [0, 1], any H, W >= 1; same shape,
        clamped to [0, 1], on the input's device. The input is replicate-padded (bottom / right) to multiples of 8
        and the output cropped back; runs in eval mode (restores the previous mode)."""
        squeeze = isinstance(blurred, torch.Tensor) and blurred.ndim == 3
        x = blurred.unsqueeze(0) if squeeze else blurred
        _check_images(x, self.channels, "enhance input")
        h, w = x.shape[-2:]
        pad_h, pad_w = -h % PAD_MULTIPLE, -w % PAD_MULTIPLE
        xp = x.to(self.device)
        if pad_h or pad_w:
            xp = F.pad(xp, (0, pad_w, 0, pad_h), mode="replicate")
        was_training = self.network.training
        self.network.eval()
        try:
            out = self.network(xp)[..., :h, :w].clamp(0.0, 1.0).to(blurred.device)
        finally:
            self.network.train(was_training)
        return out[0] if squeeze else out

    # -- persistence ----------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume: format tag, config, network, optimiser, step."""
        return {
            "format": CHECKPOINT_FORMAT,
            "config": self.stored_config(),
            "network": self.network.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "step": self.step,
        }

    def load_state(self, ckpt: dict[str, Any], where: str | os.PathLike[str]) -> DMPHN:
        """Load a :meth:`state_dict` (read from ``where``, which errors name) into this model; returns self.

        Raises :class:`DataError` naming ``where`` if the checkpoint was built with a different architecture (the
        message lists the differing keys) or its tensors do not fit.
        """
        self.check_arch(ckpt, where)
        try:
            self.network.load_state_dict(ckpt["network"])
            self.optimizer.load_state_dict(ckpt["optimizer"])
        except (RuntimeError, KeyError, ValueError, TypeError) as exc:
            raise ModelFileIncompatible(f"{where}: DMPHN checkpoint does not match the model ({exc}); "
                                        "re-train it") from exc
        self.step = int(ckpt.get("step", 0))
        return self

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike[str], device: str | torch.device = "cpu") -> DMPHN:
        """Build a model with the architecture stored in a checkpoint and load it. :class:`DataError` naming the file
        if it is missing, unreadable, fails its checksum, is not a DMPHN checkpoint or does not fit."""
        ckpt = cls.read_checkpoint(path)
        config, channels, seed = cls.saved_config(ckpt, path)
        return cls(config, channels, seed, device=device).load_state(ckpt, path)
