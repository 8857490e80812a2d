"""DeblurGAN-v2 baseline (Kupyn, Martyniuk, Wu, Wang, "DeblurGAN-v2: Deblurring (Orders-of-Magnitude)
Faster and Better", ICCV 2019), trained from scratch on our data.

Digital Gimbal (Dahary et al., CVPR 2021, Table 2) compares against DeblurGAN-v2 applied to the single
full-exposure image. This module re-implements the FPN-MobileNet variant following the paper and the
authors' code (github.com/VITA-Group/DeblurGANv2: ``models/fpn_mobilenet.py``, ``models/mobilenet_v2.py``,
``models/networks.py``, ``models/losses.py``, ``adversarial_trainer.py``, ``train.py``):

- :class:`FPNMobileNetGenerator` - MobileNetV2 encoder (inverted residual blocks, width multiplier) cut into
  five stages at strides 2..32, FPN lateral 1x1 convs + top-down path, a two-conv head per pyramid level,
  heads upsampled to stride 4 and concatenated, two smoothing convs, and the global residual
  ``out = clamp(x + tanh(f(x)), -1, 1)``.
- :class:`DoubleScaleDiscriminator` - two PatchGANs (``NLayerDiscriminator``): a *local* one with a 70 px
  receptive field (3 layers) and a *global* one with a 286 px receptive field (5 layers) that sees the whole
  (embedded-size) image, trained with :func:`ragan_ls_d_loss` / :func:`ragan_ls_g_loss` ("double-scale
  RaGAN-LS"); the relativistic means come from a :class:`PredictionPool` of the last 50 detached
  predictions per discriminator and kind (the original's ``ImagePool(50)``), so they are constants and the
  generator's adversarial gradient flows through ``D(G(x))`` only.
- :class:`ContentLoss` - ``0.5 * MSE + 0.006 * MSE(VGG19 conv3_3)``; the generator loss is
  ``content + adv_weight * adv`` with ``adv_weight = 0.001``, the authors' training config
  (``config/config.yaml: adv_lambda: 0.001``; the paper's Sec. 3.3 text writes 0.01).
- :class:`DeblurGANv2` - generator, discriminator, their two Adam optimisers (lr 1e-4), ``training_step``,
  ``enhance``, atomic ``save`` / checked ``load``, ``from_params`` (group ``baselines.deblurgan``).

Range convention: every public function takes and returns images ``(B, C, H, W)`` float32 in ``[0, 1]``.
Internally the generator and discriminators work on ``x_pm = 2 x - 1`` in ``[-1, 1]`` exactly as the
original, so the residual is ``out = (clamp(x_pm + tanh(f), -1, 1) + 1) / 2`` (i.e. the residual in
``[0, 1]`` units is ``tanh(f) / 2``). The content loss is computed on ``[0, 1]`` images like the original
(it maps back with ``(x + 1) / 2`` before the MSE and VGG terms).

Deviations from the original, all because no pretrained weights can be downloaded and we train from
scratch at tiny sizes on CPU:

- the encoder is randomly initialised (the original starts from ImageNet MobileNetV2); channel widths
  scale with ``width_mult`` and the FPN / head widths are params (paper: 1.0, 128, 64);
- instance norm is the standard one (the original's ``InstanceNorm2d(track_running_stats=True)`` is a
  known quirk that changes behaviour in eval mode); the encoder keeps MobileNetV2's BatchNorm (its train- and
  eval-mode outputs score within 0.1 dB of each other at batch 4, 32 px crops: not a cause of harm);
- the last generator conv is zero-initialised (``identity_init``) so training starts from ``out = input``
  instead of a random residual, which from scratch costs hundreds of steps to undo;
- the prediction pool keeps per-sample mean scores, not whole score maps (equal for fixed-size crops);
- the perceptual term needs VGG19 ImageNet weights given by path (see :class:`VGG19Features`); without
  them a clearly labelled *substitute* structural loss (:class:`StructuralLoss`) is used instead and a
  warning is logged once.
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import kornia
import torch
import torch.nn.functional as F
from torch import nn

from gimbal.errors import DataError, ParamError, ShapeError
from gimbal.io import save_torch_atomic
from gimbal.params import get

__all__ = [
    "ContentLoss",
    "DeblurGANConfig",
    "DeblurGANv2",
    "DoubleScaleDiscriminator",
    "FPNMobileNetGenerator",
    "NLayerDiscriminator",
    "PredictionPool",
    "StructuralLoss",
    "VGG19Features",
    "config_from_params",
    "load_vgg19_features",
    "parameter_count",
    "ragan_ls_d_loss",
    "ragan_ls_g_loss",
]

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "gimbal.baselines.deblurgan/v1"
PAD_MULTIPLE = 32  # the encoder's total stride; inputs are padded up to it and cropped back
PARAM_GROUP = "baselines.deblurgan"
POOL_SIZE = 50  # RaGAN-LS prediction pool (the original's ImagePool(50))


# ----------------------------------------------------------------------------------------------
# Generator: FPN over a MobileNetV2 encoder (models/fpn_mobilenet.py, models/mobilenet_v2.py)
# ----------------------------------------------------------------------------------------------

# MobileNetV2 inverted-residual settings (t = expansion, c = channels, n = repeats, s = stride).
# The FPN uses features[0:16] only, so the final 320-channel block and the last 160 block are omitted.
_MBV2_SETTINGS: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
)
_MBV2_STAGES = ((0, 2), (2, 4), (4, 7), (7, 11), (11, 16))  # features[a:b] for enc0..enc4 (strides 2..32)


def _make_divisible(value: float, divisor: int = 8) -> int:
    """Round a channel count to a multiple of ``divisor`` (MobileNetV2's rule, never below 90 %)."""
    out = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if out < 0.9 * value:
        out += divisor
    return out


def _norm_layer(kind: str, channels: int) -> nn.Module:
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=False)
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    raise ParamError(f"params: '{PARAM_GROUP}.norm' must be 'instance' or 'batch', got {kind!r}")


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expand -> 3x3 depthwise (stride) -> 1x1 linear project, + skip if shapes match.

    ``(B, c_in, H, W) -> (B, c_out, H / stride, W / stride)``.
    """

    def __init__(self, c_in: int, c_out: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        hidden = c_in * expand_ratio
        self.use_res_connect = stride == 1 and c_in == c_out
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers += [nn.Conv2d(c_in, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6(inplace=True)]
        layers += [
            nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU6(inplace=True),
            nn.Conv2d(hidden, c_out, 1, bias=False),
            nn.BatchNorm2d(c_out),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


def mobilenet_v2_stages(in_channels: int, width_mult: float) -> tuple[nn.ModuleList, list[int]]:
    """The MobileNetV2 feature stack cut into the FPN's five stages.

    Returns ``(stages, out_channels)``: stage k maps stride ``2**k`` features to stride ``2**(k+1)``
    (stage 0 takes the image), ``out_channels[k]`` is its width (``[16, 24, 32, 64, 160] * width_mult``).
    """
    c_prev = _make_divisible(32 * width_mult)
    features: list[nn.Module] = [
        nn.Sequential(
            nn.Conv2d(in_channels, c_prev, 3, 2, 1, bias=False), nn.BatchNorm2d(c_prev), nn.ReLU6(inplace=True)
        )
    ]
    widths = [c_prev]
    for t, c, n, s in _MBV2_SETTINGS:
        c_out = _make_divisible(c * width_mult)
        for i in range(n):
            features.append(InvertedResidual(c_prev, c_out, s if i == 0 else 1, t))
            widths.append(c_out)
            c_prev = c_out
    stages = nn.ModuleList(nn.Sequential(*features[a:b]) for a, b in _MBV2_STAGES)
    return stages, [widths[b - 1] for _, b in _MBV2_STAGES]


class FPN(nn.Module):
    """Feature pyramid over the MobileNetV2 encoder (fpn_mobilenet.FPN).

    ``forward(x (B, C, H, W))``, H and W multiples of 32, returns ``(map0, map1, map2, map3, map4)`` at
    strides 2, 4, 8, 16, 32 with ``head_channels`` (map0) and ``fpn_channels`` (the others) channels.
    """

    def __init__(self, in_channels: int, width_mult: float, fpn_channels: int, head_channels: int, norm: str):
        super().__init__()
        self.enc, widths = mobilenet_v2_stages(in_channels, width_mult)
        self.lateral = nn.ModuleList(
            [nn.Conv2d(widths[0], head_channels, 1, bias=False)]
            + [nn.Conv2d(w, fpn_channels, 1, bias=False) for w in widths[1:]]
        )
        # top-down smoothing convs td1..td3 (coarse to fine)
        self.td = nn.ModuleList(
            nn.Sequential(nn.Conv2d(fpn_channels, fpn_channels, 3, padding=1), _norm_layer(norm, fpn_channels),
                          nn.ReLU(inplace=True))
            for _ in range(3)
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        enc = []
        for stage in self.enc:
            x = stage(x)
            enc.append(x)
        lat = [conv(e) for conv, e in zip(self.lateral, enc, strict=True)]
        maps = [lat[4]]
        for td, lateral in zip(self.td, (lat[3], lat[2], lat[1]), strict=True):
            maps.append(td(lateral + F.interpolate(maps[-1], scale_factor=2, mode="nearest")))
        map4, map3, map2, map1 = maps
        return lat[0], map1, map2, map3, map4


class FPNHead(nn.Module):
    """Two 3x3 conv + ReLU per pyramid level (fpn_mobilenet.FPNHead)."""

    def __init__(self, c_in: int, c_mid: int, c_out: int) -> None:
        super().__init__()
        self.block0 = nn.Conv2d(c_in, c_mid, 3, padding=1, bias=False)
        self.block1 = nn.Conv2d(c_mid, c_out, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.block1(F.relu(self.block0(x))))


class FPNMobileNetGenerator(nn.Module):
    """DeblurGAN-v2 generator (FPNMobileNet): ``(B, C, H, W)`` in [0, 1] -> sharp estimate, same shape, [0, 1].

    Any H, W >= 1 work: the input is replicate-padded (bottom/right) to a multiple of 32 and the output
    cropped back (a single <= 32x32 image in training mode is padded to 32x64 so the encoder's BatchNorm
    sees more than one value per channel at stride 32). Internally ``x_pm = 2x - 1`` and
    ``out_pm = clamp(x_pm + tanh(f(x_pm)), -1, 1)`` (the original's global residual), returned as
    ``(out_pm + 1) / 2``.
    """

    def __init__(
        self,
        channels: int = 3,
        width_mult: float = 1.0,
        fpn_channels: int = 128,
        head_channels: int = 64,
        norm: str = "instance",
        identity_init: bool = True,
    ) -> None:
        super().__init__()
        self.channels = channels
        self.fpn = FPN(channels, width_mult, fpn_channels, head_channels, norm)
        self.heads = nn.ModuleList(FPNHead(fpn_channels, head_channels, head_channels) for _ in range(4))
        self.smooth = nn.Sequential(
            nn.Conv2d(4 * head_channels, head_channels, 3, padding=1), _norm_layer(norm, head_channels),
            nn.ReLU(inplace=True),
        )
        half = max(head_channels // 2, 1)
        self.smooth2 = nn.Sequential(
            nn.Conv2d(head_channels, half, 3, padding=1), _norm_layer(norm, half), nn.ReLU(inplace=True)
        )
        self.final = nn.Conv2d(half, channels, 3, padding=1)
        if identity_init:  # residual starts at 0: the untrained generator returns its input (not in the original)
            nn.init.zeros_(self.final.weight)
            nn.init.zeros_(self.final.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_images(x, self.channels, "generator input")
        h, w = x.shape[-2:]
        x_pm = 2.0 * x - 1.0
        pad_h, pad_w = (-h) % PAD_MULTIPLE, (-w) % PAD_MULTIPLE
        if self.training and x.shape[0] == 1 and h + pad_h == w + pad_w == PAD_MULTIPLE:
            pad_w += PAD_MULTIPLE  # BatchNorm needs > 1 value per channel at stride 32 when training
        if pad_h or pad_w:
            x_pm = F.pad(x_pm, (0, pad_w, 0, pad_h), mode="replicate")
        map0, map1, map2, map3, map4 = self.fpn(x_pm)
        # per-level heads, all brought to stride 4 and concatenated (coarsest first, as the original)
        up = [
            F.interpolate(head(m), scale_factor=s, mode="nearest") if s > 1 else head(m)
            for head, m, s in zip(self.heads[::-1], (map4, map3, map2, map1), (8, 4, 2, 1), strict=True)
        ]
        smoothed = self.smooth(torch.cat(up, dim=1))
        smoothed = F.interpolate(smoothed, scale_factor=2, mode="nearest")
        smoothed = self.smooth2(smoothed + map0)
        smoothed = F.interpolate(smoothed, scale_factor=2, mode="nearest")
        out_pm = torch.clamp(x_pm + torch.tanh(self.final(smoothed)), -1.0, 1.0)  # global residual
        return (out_pm[..., :h, :w] + 1.0) / 2.0


# ----------------------------------------------------------------------------------------------
# Discriminator: double-scale PatchGAN (models/networks.py NLayerDiscriminator, DoubleGAN)
# ----------------------------------------------------------------------------------------------


class NLayerDiscriminator(nn.Module):
    """PatchGAN: ``n_layers`` stride-2 4x4 convs, then two stride-1 4x4 convs -> one logit per patch.

    ``(B, C, H, W)`` in [-1, 1] -> ``(B, 1, H', W')`` unbounded scores. Receptive field
    ``1 + 3 (2**n_layers - 1) + 6 * 2**n_layers`` px: 70 for ``n_layers=3``, 286 for 5.
    """

    def __init__(self, channels: int = 3, ndf: int = 64, n_layers: int = 3, norm: str = "instance") -> None:
        super().__init__()
        use_bias = norm == "instance"  # as the original: no bias before batch norm
        seq: list[nn.Module] = [nn.Conv2d(channels, ndf, 4, 2, 2), nn.LeakyReLU(0.2, inplace=True)]
        mult = 1
        for n in range(1, n_layers):
            prev, mult = mult, min(2**n, 8)
            seq += [nn.Conv2d(ndf * prev, ndf * mult, 4, 2, 2, bias=use_bias), _norm_layer(norm, ndf * mult),
                    nn.LeakyReLU(0.2, inplace=True)]
        prev, mult = mult, min(2**n_layers, 8)
        seq += [nn.Conv2d(ndf * prev, ndf * mult, 4, 1, 2, bias=use_bias), _norm_layer(norm, ndf * mult),
                nn.LeakyReLU(0.2, inplace=True), nn.Conv2d(ndf * mult, 1, 4, 1, 2)]
        self.model = nn.Sequential(*seq)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class DoubleScaleDiscriminator(nn.Module):
    """Local (patch) + global PatchGANs of DeblurGAN-v2.

    ``forward(x (B, C, H, W) in [0, 1]) -> (local (B, 1, h1, w1), global (B, 1, h2, w2))`` scores. The local
    branch (``local_layers=3``: 70 px receptive field) judges patches, the global one (``global_layers=5``:
    286 px) sees the whole embedded-size image.
    """

    def __init__(
        self, channels: int = 3, ndf: int = 64, local_layers: int = 3, global_layers: int = 5, norm: str = "instance"
    ) -> None:
        super().__init__()
        self.channels = channels
        self.patch = NLayerDiscriminator(channels, ndf, local_layers, norm)
        self.full = NLayerDiscriminator(channels, ndf, global_layers, norm)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x_pm = 2.0 * x - 1.0
        return self.patch(x_pm), self.full(x_pm)


class PredictionPool:
    """The original's ``ImagePool(50)`` of one discriminator's predictions (util/image_pool.py), as RaGAN-LS uses it.

    :meth:`add` keeps the per-sample mean score of the last ``size`` samples, *detached*; :meth:`mean` is the
    relativistic reference ``mean D(.)`` of both losses. The original stores whole score maps and averages their
    concatenation; for equal-size maps (fixed training crops) that equals the mean of per-sample means used here.
    Because the reference is a constant, the generator's adversarial gradient flows only through ``D(G(x))``.
    """

    def __init__(self, size: int = 50) -> None:
        if size < 1:
            raise ValueError(f"PredictionPool size must be >= 1, got {size}")
        self.size = size
        self.scores = torch.empty(0)

    def __len__(self) -> int:
        return int(self.scores.numel())

    def add(self, pred: torch.Tensor) -> None:
        """Append the per-sample means of ``pred (B, 1, h, w)`` (detached), dropping the oldest beyond ``size``."""
        per_sample = pred.detach().flatten(1).mean(dim=1).float()
        self.scores = torch.cat([self.scores.to(per_sample.device), per_sample])[-self.size:]

    def mean(self) -> torch.Tensor:
        """Mean pooled score (a constant scalar tensor); raises if nothing was added yet."""
        if not len(self):
            raise RuntimeError("PredictionPool.mean: the pool is empty (update the discriminator first)")
        return self.scores.mean()

    def state_dict(self) -> dict[str, Any]:
        return {"size": self.size, "scores": self.scores.detach().cpu().clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.size = int(state["size"])
        self.scores = torch.as_tensor(state["scores"], dtype=torch.float32).flatten()[-self.size:]


def ragan_ls_d_loss(
    pred_real: torch.Tensor,
    pred_fake: torch.Tensor,
    real_mean: torch.Tensor | None = None,
    fake_mean: torch.Tensor | None = None,
) -> torch.Tensor:
    """Relativistic average least-squares discriminator loss (losses.RelativisticDiscLossLS.get_loss).

    ``((D(r) - mean D(f) - 1)^2 + (D(f) - mean D(r) + 1)^2) / 2``, each term averaged over batch and patches.
    The means are constants (the original takes them from a :class:`PredictionPool`; default: the detached
    batch means).
    """
    real_mean = pred_real.detach().mean() if real_mean is None else real_mean.detach()
    fake_mean = pred_fake.detach().mean() if fake_mean is None else fake_mean.detach()
    return (torch.mean((pred_real - fake_mean - 1.0) ** 2) + torch.mean((pred_fake - real_mean + 1.0) ** 2)) / 2


def ragan_ls_g_loss(
    pred_real: torch.Tensor,
    pred_fake: torch.Tensor,
    real_mean: torch.Tensor | None = None,
    fake_mean: torch.Tensor | None = None,
) -> torch.Tensor:
    """Relativistic average least-squares generator loss (losses.RelativisticDiscLossLS.get_g_loss).

    ``((D(r) - mean D(f) + 1)^2 + (D(f) - mean D(r) - 1)^2) / 2`` with constant means (as
    :func:`ragan_ls_d_loss`): the generator's gradient comes from the second term only, as in the original.
    """
    real_mean = pred_real.detach().mean() if real_mean is None else real_mean.detach()
    fake_mean = pred_fake.detach().mean() if fake_mean is None else fake_mean.detach()
    return (torch.mean((pred_real - fake_mean + 1.0) ** 2) + torch.mean((pred_fake - real_mean - 1.0) ** 2)) / 2


# ----------------------------------------------------------------------------------------------
# Content loss: MSE + perceptual (VGG19 conv3_3) or a documented structural substitute
# ----------------------------------------------------------------------------------------------

# torchvision vgg19.features indices 0..14 (conv1_1 .. conv3_3, without the ReLU after conv3_3)
_VGG19_CONV3_3 = (64, 64, "M", 128, 128, "M", 256, 256, 256)
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


class VGG19Features(nn.Module):
    """VGG19 feature stack up to conv3_3 (pre-ReLU), torchvision-free, frozen.

    Layer indices, names and shapes equal torchvision's ``vgg19().features[:15]`` (``0.weight`` ...
    ``14.bias``), so ``torch.save(torchvision.models.vgg19(weights="IMAGENET1K_V1").features.state_dict(),
    "vgg19.pt")`` (or the whole model's state dict, keys ``features.N.*``) loads via :meth:`from_file`.

    ``forward(x (B, 3, H, W) in [0, 1])`` normalises with the ImageNet mean/std and returns
    ``(B, 256, H/4, W/4)`` conv3_3 features.
    """

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 3
        for v in _VGG19_CONV3_3:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(c_in, int(v), 3, padding=1), nn.ReLU(inplace=True)]
                c_in = int(v)
        self.features = nn.Sequential(*layers[:-1])  # stop at conv3_3 (index 14), as the original
        self.register_buffer("mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> VGG19Features:  # always frozen, always eval
        return super().train(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features((x - self.mean) / self.std)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> VGG19Features:
        """Load torchvision-compatible VGG19 weights (see class docstring); DataError names the file."""
        return load_vgg19_features(path)


def load_vgg19_features(path: str | os.PathLike[str]) -> VGG19Features:
    """Build a :class:`VGG19Features` from a state-dict file of torchvision's VGG19 (features or whole model)."""
    path = Path(path)
    how = (
        "save it on a machine with internet via torch.save(torchvision.models.vgg19(weights='IMAGENET1K_V1')"
        ".features.state_dict(), PATH) and set baselines.deblurgan.perceptual_weights to PATH (or null)"
    )
    if not path.is_file():
        raise DataError(f"{path}: VGG19 weights file not found; {how}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling/zip error means a bad file
        raise DataError(f"{path}: not a readable torch state dict ({exc}); {how}") from exc
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise DataError(f"{path}: expected a state dict, got {type(state).__name__}; {how}")
    model = VGG19Features()
    wanted = model.features.state_dict()
    picked: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        name = str(key)
        for prefix in ("module.", "features."):
            name = name.removeprefix(prefix)
        if name in wanted:
            picked[name] = value
    missing = [k for k in wanted if k not in picked]
    if missing:
        raise DataError(f"{path}: VGG19 weights lack {missing[:3]} (expected torchvision vgg19 'features.N.*'); {how}")
    bad = [k for k in wanted if tuple(picked[k].shape) != tuple(wanted[k].shape)]
    if bad:
        k = bad[0]
        raise DataError(
            f"{path}: VGG19 weight {k} has shape {tuple(picked[k].shape)}, expected {tuple(wanted[k].shape)} "
            f"(is this VGG19?); {how}"
        )
    model.features.load_state_dict({k: v.float() for k, v in picked.items()})
    return model


class StructuralLoss(nn.Module):
    """SUBSTITUTE for the VGG19 perceptual loss, used only when no VGG19 weights are available.

    ``forward(fake, real (B, C, H, W) in [0, 1]) -> scalar``: the mean L1 distance of Sobel image gradients
    over ``scales`` dyadic scales (average-pooled) plus kornia's SSIM loss ``(1 - SSIM) / 2`` (window 7) at
    full resolution. It rewards sharp edges / local structure like the perceptual term does, but it is
    *not* DeblurGAN-v2's loss: results trained with it are not the paper's configuration.
    """

    def __init__(self, scales: int = 3, window_size: int = 7) -> None:
        super().__init__()
        self.scales = scales
        self.window_size = window_size

    def forward(self, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        grad_term = fake.new_zeros(())
        a, b = fake, real
        n = 0
        for s in range(self.scales):
            if s > 0:
                if min(a.shape[-2:]) < 4:
                    break
                a, b = F.avg_pool2d(a, 2), F.avg_pool2d(b, 2)
            ga = kornia.filters.spatial_gradient(a, mode="sobel")
            gb = kornia.filters.spatial_gradient(b, mode="sobel")
            grad_term = grad_term + torch.mean(torch.abs(ga - gb))
            n += 1
        window = min(self.window_size, *fake.shape[-2:])
        window = window if window % 2 == 1 else window - 1
        ssim = kornia.losses.ssim_loss(fake, real, window_size=max(window, 1), max_val=1.0)
        return grad_term / n + ssim


_WARNED_SUBSTITUTE = False


def _warn_substitute_once() -> None:
    global _WARNED_SUBSTITUTE
    if not _WARNED_SUBSTITUTE:
        log.warning(
            "DeblurGAN-v2: no VGG19 weights given (baselines.deblurgan.perceptual_weights is null); using a "
            "SUBSTITUTE structural loss (multi-scale Sobel-gradient L1 + SSIM) instead of the VGG19 conv3_3 "
            "perceptual loss. Give torchvision VGG19 weights by path for the paper's loss."
        )
        _WARNED_SUBSTITUTE = True


class ContentLoss(nn.Module):
    """DeblurGAN-v2 content loss: ``mse_weight * MSE + perceptual_weight * MSE(VGG19 conv3_3)`` (paper Sec. 3.3).

    ``feature_extractor``: a path to torchvision-compatible VGG19 weights (see :class:`VGG19Features`), an
    ``nn.Module`` mapping ``(B, 3, H, W)`` in [0, 1] to features, or ``None``. With ``None`` the perceptual
    term is replaced by the SUBSTITUTE :class:`StructuralLoss` weighted by ``structural_weight`` (a warning
    is logged once per process).

    ``forward(fake, real (B, C, H, W) in [0, 1])`` returns ``{"mse", "perceptual", "content"}`` scalars
    (``perceptual`` is the unweighted VGG or substitute term; ``content`` the weighted sum).
    """

    def __init__(
        self,
        feature_extractor: str | os.PathLike[str] | nn.Module | None = None,
        mse_weight: float = 0.5,
        perceptual_weight: float = 0.006,
        structural_weight: float = 0.05,
    ) -> None:
        super().__init__()
        if isinstance(feature_extractor, (str, os.PathLike)):
            feature_extractor = load_vgg19_features(feature_extractor)
        self.features: nn.Module | None = feature_extractor
        if self.features is not None:
            self.features.requires_grad_(False).eval()
        self.structural = StructuralLoss()
        self.mse_weight = mse_weight
        self.perceptual_weight = perceptual_weight
        self.structural_weight = structural_weight
        if self.features is None:
            _warn_substitute_once()

    @property
    def uses_substitute(self) -> bool:
        """True when the perceptual term is the structural substitute (no VGG19 weights)."""
        return self.features is None

    def forward(self, fake: torch.Tensor, real: torch.Tensor) -> dict[str, torch.Tensor]:
        mse = F.mse_loss(fake, real)
        if self.features is not None:
            if fake.shape[1] == 1:  # grayscale: VGG expects RGB
                fake, real = fake.expand(-1, 3, -1, -1), real.expand(-1, 3, -1, -1)
            with torch.no_grad():
                f_real = self.features(real)
            perceptual = F.mse_loss(self.features(fake), f_real)
            weight = self.perceptual_weight
        else:
            perceptual = self.structural(fake, real)
            weight = self.structural_weight
        return {"mse": mse, "perceptual": perceptual, "content": self.mse_weight * mse + weight * perceptual}


# ----------------------------------------------------------------------------------------------
# The trainable wrapper
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeblurGANConfig:
    """Hyper-parameters of :class:`DeblurGANv2` (params group ``baselines.deblurgan``).

    Defaults are the tiny embedded size; paper scale: ``width_mult=1.0, fpn_channels=128, head_channels=64,
    d_channels=64`` (the other values are the authors' already).
    """

    channels: int = 3
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
    seed: int = 0

    ARCH_KEYS = ("channels", "width_mult", "fpn_channels", "head_channels", "norm", "d_channels",
                 "d_local_layers", "d_global_layers")

    def __post_init__(self) -> None:
        def bad(key: str, why: str) -> ParamError:
            return ParamError(f"params: '{PARAM_GROUP}.{key}' {why}, got {getattr(self, key)!r}")

        for key in ("channels", "fpn_channels", "head_channels", "d_channels", "d_local_layers", "d_global_layers"):
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

    def arch(self) -> dict[str, Any]:
        """The architecture-defining subset (must match for a checkpoint to load)."""
        return {k: getattr(self, k) for k in self.ARCH_KEYS}


def _check_images(x: torch.Tensor, channels: int, what: str) -> None:
    if not isinstance(x, torch.Tensor) or x.ndim != 4 or x.shape[1] != channels or not x.is_floating_point():
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ShapeError(f"DeblurGAN-v2 {what}: expected float (B, {channels}, H, W) in [0, 1], got {shape}")


class DeblurGANv2:
    """DeblurGAN-v2 (FPN-MobileNet generator + double-scale RaGAN-LS discriminator), trainable from scratch.

    Attributes: ``generator`` (:class:`FPNMobileNetGenerator`), ``discriminator``
    (:class:`DoubleScaleDiscriminator`), ``content_loss`` (:class:`ContentLoss`), ``opt_g`` / ``opt_d``
    (Adam, ``config.lr``), ``step`` (training steps done). Weights are initialised from ``config.seed``
    without touching the global RNG. ``feature_extractor`` overrides ``config.perceptual_weights``.
    """

    def __init__(
        self,
        config: DeblurGANConfig | None = None,
        feature_extractor: str | os.PathLike[str] | nn.Module | None = None,
        device: str | torch.device = "cpu",
    ) -> None:
        self.config = config or DeblurGANConfig()
        c = self.config
        self.device = torch.device(device)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(c.seed)
            self.generator = FPNMobileNetGenerator(
                c.channels, c.width_mult, c.fpn_channels, c.head_channels, c.norm, c.identity_init
            )
            self.discriminator = DoubleScaleDiscriminator(
                c.channels, c.d_channels, c.d_local_layers, c.d_global_layers, c.norm
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

    # -- construction from params ---------------------------------------------------------------

    @classmethod
    def from_params(
        cls,
        params: dict[str, Any],
        feature_extractor: str | os.PathLike[str] | nn.Module | None = None,
        device: str | torch.device = "cpu",
    ) -> DeblurGANv2:
        """Build from params group ``baselines.deblurgan`` (missing keys take :class:`DeblurGANConfig` defaults;
        ``seed`` defaults to the top-level ``seed``)."""
        return cls(config_from_params(params), feature_extractor=feature_extractor, device=device)

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
        _check_images(blurred, c.channels, "training_step blurred")
        _check_images(sharp, c.channels, "training_step sharp")
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

    # -- inference ------------------------------------------------------------------------------

    @torch.no_grad()
    def enhance(self, blurred: torch.Tensor) -> torch.Tensor:
        """Sharp estimate of ``blurred`` ``(B, C, H, W)`` or ``(C, H, W)`` in [0, 1]; same shape, [0, 1], on the
        input's device. Runs the generator in eval mode (restores the previous mode)."""
        squeeze = blurred.ndim == 3
        x = blurred.unsqueeze(0) if squeeze else blurred
        _check_images(x, self.config.channels, "enhance input")
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
            "config": asdict(self.config),
            "generator": self.generator.state_dict(),
            "discriminator": self.discriminator.state_dict(),
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "pools": {"real": [p.state_dict() for p in self.real_pools],
                      "fake": [p.state_dict() for p in self.fake_pools]},
            "step": self.step,
        }

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write a checkpoint atomically (temp file + fsync + rename)."""
        save_torch_atomic(path, self.state_dict())

    def load(self, path: str | os.PathLike[str]) -> DeblurGANv2:
        """Load a checkpoint written by :meth:`save` into this model (networks, optimisers, step); returns self.

        Raises :class:`DataError` naming the file if it is missing, unreadable, not a DeblurGAN-v2
        checkpoint, or built with a different architecture config (the message lists the differing keys).
        """
        ckpt = _read_checkpoint(path)
        saved = ckpt["config"]
        mine = self.config.arch()
        diff = {k: (saved.get(k), v) for k, v in mine.items() if saved.get(k) != v}
        if diff:
            detail = ", ".join(f"{k}: file {a!r} vs model {b!r}" for k, (a, b) in diff.items())
            raise DataError(
                f"{path}: DeblurGAN-v2 checkpoint has a different architecture ({detail}); set "
                f"{PARAM_GROUP}.<key> to the file's values or build the model with DeblurGANv2.from_checkpoint"
            )
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
            raise DataError(f"{path}: DeblurGAN-v2 checkpoint does not match the model ({exc}); re-train it") from exc
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
        ckpt = _read_checkpoint(path)
        known = {f.name for f in fields(DeblurGANConfig)}
        try:
            config = DeblurGANConfig(**{k: v for k, v in ckpt["config"].items() if k in known})
        except (TypeError, ParamError) as exc:
            raise DataError(f"{path}: invalid DeblurGAN-v2 config in checkpoint ({exc}); re-train it") from exc
        if feature_extractor is None and config.perceptual_weights is not None:
            if not Path(config.perceptual_weights).is_file():  # weights are a loss-only input: not needed to infer
                config = replace(config, perceptual_weights=None)
        return cls(config, feature_extractor=feature_extractor, device=device).load(path)


def _read_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: DeblurGAN-v2 checkpoint not found; train the deblurgan baseline first (dvc repro)")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling/zip error means a bad file
        raise DataError(f"{path}: not a readable DeblurGAN-v2 checkpoint ({exc}); delete it and re-train") from exc
    ok = isinstance(ckpt, dict) and ckpt.get("format") == CHECKPOINT_FORMAT and isinstance(ckpt.get("config"), dict)
    if not ok:
        raise DataError(
            f"{path}: not a DeblurGAN-v2 checkpoint (expected format {CHECKPOINT_FORMAT!r}); delete it and re-train"
        )
    return ckpt


def config_from_params(params: dict[str, Any]) -> DeblurGANConfig:
    from gimbal.models.gimbal import ModelConfig

    """Read :class:`DeblurGANConfig` from params group ``baselines.deblurgan`` (ParamError names a bad key)."""
    defaults = DeblurGANConfig()
    num = (int, float)
    kw: dict[str, Any] = {}
    for f in fields(DeblurGANConfig):
        key = f"{PARAM_GROUP}.{f.name}"
        default = getattr(defaults, f.name)
        if f.name == "channels":  # the models' channels (params model.channels), not a key of this group
            kw["channels"] = ModelConfig.from_params(params).channels
        elif f.name == "seed":
            kw["seed"] = get(params, key, int, get(params, "seed", int, default))
        elif f.name == "perceptual_weights":
            value = get(params, key, None, default)
            if value is not None and not isinstance(value, str):
                raise ParamError(f"params: '{key}' must be a path string or null, got {value!r}")
            kw[f.name] = value
        elif f.name == "norm":
            kw[f.name] = get(params, key, str, default)
        elif isinstance(default, bool):
            kw[f.name] = get(params, key, bool, default)
        elif isinstance(default, float):
            kw[f.name] = float(get(params, key, num, default))
        else:
            kw[f.name] = get(params, key, int, default)
    return DeblurGANConfig(**kw)


def parameter_count(module: nn.Module) -> int:
    """Number of trainable parameters of ``module``."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
