"""DeblurGAN-v2 generator: FPN over a MobileNetV2 encoder (the authors' ``models/fpn_mobilenet.py``,
``models/mobilenet_v2.py``).

:class:`FPNMobileNetGenerator` maps ``(B, C, H, W)`` float32 images in ``[0, 1]`` to a sharp estimate of the
same shape in ``[0, 1]``: a MobileNetV2 encoder (inverted residual blocks, width multiplier) cut into five
stages at strides 2..32, FPN lateral 1x1 convs + top-down path, a two-conv head per pyramid level, heads
upsampled to stride 4 and concatenated, two smoothing convs, and the global residual
``out = clamp(x_pm + tanh(f(x_pm)), -1, 1)`` on ``x_pm = 2 x - 1`` in ``[-1, 1]`` (the residual in ``[0, 1]``
units is ``tanh(f) / 2``); any H, W work (replicate-padded to a multiple of :data:`PAD_MULTIPLE` = 32 px and
cropped back). The helpers shared with the discriminator and the wrapper live here too: ``_norm_layer``,
``_check_images`` and :data:`PARAM_GROUP`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from gimbal.errors import ParamError, ShapeError

__all__ = [
    "FPN",
    "FPNHead",
    "FPNMobileNetGenerator",
    "InvertedResidual",
    "PAD_MULTIPLE",
    "PARAM_GROUP",
    "mobilenet_v2_stages",
]

PAD_MULTIPLE = 32  # the encoder's total stride; inputs are padded up to it and cropped back
PARAM_GROUP = "baselines.deblurgan"


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


def _check_images(x: torch.Tensor, channels: int, what: str) -> None:
    if not isinstance(x, torch.Tensor) or x.ndim != 4 or x.shape[1] != channels or not x.is_floating_point():
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ShapeError(f"DeblurGAN-v2 {what}: expected float (B, {channels}, H, W) in [0, 1], got {shape}")


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
