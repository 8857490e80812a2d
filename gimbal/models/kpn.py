"""Kernel-prediction network (Section 5, Fig. 5; noise-blind variant of Mildenhall et al. 2018).

A U-Net (encoder-decoder with skip connections, every block three 3x3 convolutions + ReLU,
average-pool down, bilinear up) predicts one ``k x k`` kernel per pixel for each input frame.

Colour: as in the paper the network sees "2n-1 frames per colour channel": the colour
channels are folded into the batch, so one set of weights processes each channel
separately and predicts separate kernels per colour channel (kernels ``(B, F, C, k*k, H, W)``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from gimbal.errors import ShapeError

__all__ = ["KPN", "apply_kernels"]


def apply_kernels(frames: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
    """Filter every pixel of every frame with its own ``k x k`` kernel (the filtering inside eq. (15)).

    Hand-written with ``F.unfold`` because neither kornia nor torch offers a spatially varying
    (per-pixel) convolution.

    Args:
        frames: ``(B, F, C, H, W)``.
        kernels: ``(B, F, C, k*k, H, W)`` per-pixel kernels in row-major order (``C`` may be 1 to
            share a kernel across colour channels). Borders are replicate-padded.

    Returns:
        ``(B, F, C, H, W)`` filtered frames: ``out[p] = sum_q kernels[q, p] * frames[p + q]``.
    """
    if frames.dim() != 5 or kernels.dim() != 6:
        raise ShapeError(f"apply_kernels: expected frames (B,F,C,H,W) and kernels (B,F,C,k*k,H,W), got "
                         f"{tuple(frames.shape)} and {tuple(kernels.shape)}")
    b, f, c, h, w = frames.shape
    kk = kernels.shape[3]
    k = int(round(kk**0.5))
    if k * k != kk or k % 2 == 0:
        raise ShapeError(f"apply_kernels: kernel dimension {kk} is not k*k for an odd k")
    if kernels.shape[:2] != (b, f) or kernels.shape[2] not in (1, c) or kernels.shape[-2:] != (h, w):
        raise ShapeError(f"apply_kernels: kernels {tuple(kernels.shape)} do not match frames {tuple(frames.shape)}")
    padded = F.pad(frames.reshape(b * f * c, 1, h, w), (k // 2,) * 4, mode="replicate")
    patches = F.unfold(padded, k).reshape(b, f, c, kk, h, w)  # (B, F, C, k*k, H, W)
    return (patches * kernels).sum(dim=3)


def _block(cin: int, cout: int) -> nn.Sequential:
    """Three 3x3 convolutions, each followed by ReLU (Fig. 5)."""
    layers: list[nn.Module] = []
    for i in range(3):
        layers += [nn.Conv2d(cin if i == 0 else cout, cout, 3, padding=1), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


class KPN(nn.Module):
    """U-Net kernel-prediction network.

    Args:
        frames: number of input frames ``F`` per colour channel (``2n-1`` with flow, ``n`` without).
        kernel_size: ``k`` of the predicted per-pixel kernels (paper: 5).
        base_channels: width of the first level; level ``l`` has ``base * 2**min(l, 3)`` channels
            (Mildenhall et al.: 64, 128, 256, 512, 512 for ``base_channels=64, depth=4``).
        depth: number of 2x down-samplings; inputs need ``H`` and ``W`` divisible by ``2**depth``.

    Initialisation of the trunk (every convolution but the output one): ``trunk_init="he"`` draws its weights from
    He et al. (2015)'s normal distribution for ReLU (std ``sqrt(2 / fan_in)``) with zero biases, so the input's
    variation reaches the output layer; ``"pytorch"`` keeps PyTorch's default (the authors' released KPN), whose
    weights shrink the input's variation by about 0.4 per layer while the biases add constants, so after the U-Net's
    layers the features hardly depend on the input (measured: docs/results.md). The paper does not say.

    Initialisation of the output convolution: it gets small weights and a bias that makes every
    kernel a centred delta, so an untrained network returns each frame unchanged (the merge of
    eq. (15) then starts as the plain mean of the frames) while gradients still reach all layers.
    With ``init_reference=r`` the bias is instead a delta of weight ``F`` on frame ``r`` and zero
    on the others, so the merge starts as the (exposure-normalized) reference frame itself and
    training only has to learn what the other frames add. ``identity_init=False`` keeps PyTorch's
    default initialisation of the output convolution (the authors' released KPN: kernels start near 0).
    """

    def __init__(self, frames: int, kernel_size: int = 5, base_channels: int = 64, depth: int = 4,
                 init_scale: float = 0.1, init_reference: int | None = None, identity_init: bool = True,
                 trunk_init: str = "pytorch"):
        super().__init__()
        if frames < 1 or kernel_size < 1 or kernel_size % 2 == 0 or base_channels < 1 or depth < 0:
            raise ShapeError(f"KPN: invalid config frames={frames}, kernel_size={kernel_size} (odd), "
                             f"base_channels={base_channels}, depth={depth}")
        self.frames = frames
        self.kernel_size = kernel_size
        self.depth = depth
        widths = [base_channels * 2 ** min(level, 3) for level in range(depth + 1)]
        self.encoders = nn.ModuleList()
        cin = frames
        for wd in widths:
            self.encoders.append(_block(cin, wd))
            cin = wd
        self.decoders = nn.ModuleList(_block(widths[level + 1] + widths[level], widths[level])
                                      for level in reversed(range(depth)))
        kk = kernel_size * kernel_size
        self.head = nn.Conv2d(widths[0], frames * kk, 3, padding=1)
        if trunk_init not in ("he", "pytorch"):
            raise ShapeError(f"KPN: trunk_init must be 'he' or 'pytorch', got {trunk_init!r}")
        if trunk_init == "he":
            for m in self.modules():
                if isinstance(m, nn.Conv2d) and m is not self.head:
                    nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                    nn.init.zeros_(m.bias)
        if not identity_init:
            return
        with torch.no_grad():
            self.head.weight.mul_(init_scale)
            bias = torch.zeros(frames, kk)
            if init_reference is None:
                bias[:, kk // 2] = 1.0
            else:
                if not 0 <= init_reference < frames:
                    raise ShapeError(f"KPN: init_reference={init_reference} not in [0, {frames})")
                bias[init_reference, kk // 2] = float(frames)
            self.head.bias.copy_(bias.reshape(-1))

    @property
    def multiple(self) -> int:
        """Spatial sizes must be divisible by this (``2 ** depth``)."""
        return 2**self.depth

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """Predict per-pixel kernels.

        Args:
            frames: ``(B, F, C, H, W)`` input frames (normalized burst then aligned frames).

        Returns:
            ``(B, F, C, k*k, H, W)`` kernels, one per pixel, frame and colour channel.
        """
        if frames.dim() != 5 or frames.shape[1] != self.frames:
            raise ShapeError(f"KPN: expected (B, {self.frames}, C, H, W) frames, got {tuple(frames.shape)}")
        b, f, c, h, w = frames.shape
        m = self.multiple
        if h % m or w % m:
            raise ShapeError(f"KPN: H={h}, W={w} must be divisible by 2**kpn_depth={m}; pad the input "
                             "(GimbalNet does this) or lower model.kpn_depth")
        x = frames.transpose(1, 2).reshape(b * c, f, h, w)  # colour channels folded into the batch
        skips: list[torch.Tensor] = []
        for level, enc in enumerate(self.encoders):
            if level > 0:
                x = F.avg_pool2d(x, 2)
            x = enc(x)
            skips.append(x)
        for dec, skip in zip(self.decoders, reversed(skips[:-1]), strict=True):
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = dec(torch.cat([x, skip], dim=1))
        kk = self.kernel_size**2
        out = self.head(x).reshape(b, c, f, kk, h, w)
        return out.transpose(1, 2)
