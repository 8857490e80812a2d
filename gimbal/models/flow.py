"""Pyramid optical-flow network of the Digital Gimbal (Section 5, Fig. 4).

One small sub-CNN (four 5x5 convolutions, ``n -> 100 -> 50 -> 25 -> 2(n-1)``, ReLU after all
but the last) is shared by every level of a Gaussian pyramid of the exposure-normalized burst
(eq. (14)). It runs coarse to fine: at the coarsest level on the raw burst; at each finer level
the flow so far is upsampled (x2 in size, x2 in value), the non-reference frames are warped
with it, and the sub-CNN predicts a residual flow that is added.

Colour: motion is the same in every colour channel, so the flow is estimated once per burst
on the mean over the colour channels (a luminance proxy) and shared by all channels when
warping; the sub-CNN therefore sees exactly ``n`` input channels as in the paper.

Flow convention: ``flows[:, j]`` is ``(dx, dy)`` in pixels for the ``j``-th non-reference frame
(frames ``0..n-1`` without the reference ``n // 2``, in order); the aligned frame is
``aligned_j(x, y) = frame_j(x + dx(x, y), y + dy(x, y))`` (backward warping, bilinear,
border padding), i.e. it is resampled onto the pixel grid of the reference (middle) frame.
"""

from __future__ import annotations

from collections.abc import Sequence

import kornia
import torch
import torch.nn.functional as F
from torch import nn

from gimbal.errors import ShapeError

__all__ = ["FlowNet", "reference_index", "split_reference", "warp"]


def reference_index(n: int) -> int:
    """Index of the reference (middle) frame of an ``n``-frame burst (``n // 2``)."""
    return n // 2


def split_reference(burst: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Split ``(B, n, ...)`` into the reference frame ``(B, ...)`` and the others ``(B, n-1, ...)``."""
    r = reference_index(burst.shape[1])
    others = torch.cat([burst[:, :r], burst[:, r + 1 :]], dim=1)
    return burst[:, r], others


def warp(frames: torch.Tensor, flows: torch.Tensor) -> torch.Tensor:
    """Backward-warp frames with per-pixel flows (bilinear, border padding).

    Args:
        frames: ``(B, F, C, H, W)`` images.
        flows: ``(B, F, 2, H, W)`` displacements ``(dx, dy)`` in pixels; output pixel ``(x, y)``
            samples ``frames`` at ``(x + dx, y + dy)``.

    Returns:
        ``(B, F, C, H, W)`` warped frames. A zero flow is the identity up to the float rounding
        of grid_sample's coordinate normalisation (< 1e-5 for images in [0, 1] up to 256 px).
    """
    if frames.dim() != 5 or flows.dim() != 5 or flows.shape[2] != 2:
        raise ShapeError(f"warp: expected frames (B,F,C,H,W) and flows (B,F,2,H,W), got {tuple(frames.shape)} "
                         f"and {tuple(flows.shape)}")
    b, f, c, h, w = frames.shape
    if flows.shape[:2] != (b, f) or flows.shape[-2:] != (h, w):
        raise ShapeError(f"warp: flows {tuple(flows.shape)} do not match frames {tuple(frames.shape)}")
    # normalized base grid in [-1, 1] (align_corners=True: -1 and +1 are the border pixel centres)
    # plus the flow converted from pixels; grid_sample's coordinate arithmetic makes a zero flow
    # an identity only up to float rounding (~1e-7 per pixel of size, e.g. < 4e-6 at 128 px)
    base = kornia.geometry.create_meshgrid(h, w, normalized_coordinates=True, device=frames.device,
                                           dtype=frames.dtype)  # (1, H, W, 2) as (x, y)
    scale = torch.tensor([2.0 / max(w - 1, 1), 2.0 / max(h - 1, 1)], device=frames.device, dtype=frames.dtype)
    grid = base + flows.reshape(b * f, 2, h, w).permute(0, 2, 3, 1) * scale
    out = F.grid_sample(frames.reshape(b * f, c, h, w), grid, mode="bilinear", padding_mode="border",
                        align_corners=True)
    return out.reshape(b, f, c, h, w)


class FlowNet(nn.Module):
    """Coarse-to-fine pyramid flow estimator (Fig. 4) with one sub-CNN shared across levels.

    Args:
        n: burst length (number of frames, reference is ``n // 2``), ``n >= 2``.
        levels: number of pyramid levels (1 = full resolution only). Inputs must have ``H`` and
            ``W`` divisible by ``2 ** (levels - 1)`` (:class:`~gimbal.models.net.GimbalNet`
            pads for you).
        channels: hidden widths of the sub-CNN (paper: ``(100, 50, 25)``).
        kernel_size: convolution size (paper: 5).

    The last convolution is initialised to zero, so an untrained network outputs exactly zero
    flow (identity warp) and training starts from "no alignment".
    """

    def __init__(self, n: int, levels: int = 3, channels: Sequence[int] = (100, 50, 25), kernel_size: int = 5):
        super().__init__()
        if n < 2:
            raise ShapeError(f"FlowNet: need a burst of n >= 2 frames, got n={n}")
        if levels < 1:
            raise ShapeError(f"FlowNet: levels must be >= 1, got {levels}")
        self.n = n
        self.levels = levels
        widths = [n, *channels, 2 * (n - 1)]
        layers: list[nn.Module] = []
        for i in range(len(widths) - 1):
            layers.append(nn.Conv2d(widths[i], widths[i + 1], kernel_size, padding=kernel_size // 2,
                                    padding_mode="replicate"))
            if i < len(widths) - 2:
                layers.append(nn.ReLU(inplace=True))
        self.sub_cnn = nn.Sequential(*layers)
        last = self.sub_cnn[-1]
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)

    @property
    def multiple(self) -> int:
        """Spatial sizes must be divisible by this (``2 ** (levels - 1)``)."""
        return 2 ** (self.levels - 1)

    def _residual(self, gray: torch.Tensor) -> torch.Tensor:
        """Sub-CNN on ``(B, n, h, w)`` luminance frames -> residual flows ``(B, n-1, 2, h, w)``."""
        b, n, h, w = gray.shape
        return self.sub_cnn(gray).reshape(b, n - 1, 2, h, w)

    def forward(self, burst: torch.Tensor) -> torch.Tensor:
        """Estimate flows aligning every non-reference frame to the middle frame.

        Args:
            burst: ``(B, n, C, H, W)`` exposure-normalized burst (eq. (14)), linear units.

        Returns:
            ``(B, n-1, 2, H, W)`` flows ``(dx, dy)`` in full-resolution pixels (see :func:`warp`).
        """
        if burst.dim() != 5 or burst.shape[1] != self.n:
            raise ShapeError(f"FlowNet: expected a burst (B, {self.n}, C, H, W), got {tuple(burst.shape)}")
        b, n, _, h, w = burst.shape
        m = self.multiple
        if h % m or w % m:
            raise ShapeError(f"FlowNet: H={h}, W={w} must be divisible by 2**(flow_levels-1)={m}; "
                             "pad the burst (GimbalNet does this) or lower model.flow_levels")
        gray = burst.mean(dim=2)  # (B, n, H, W): one flow for all colour channels
        pyramid = kornia.geometry.transform.build_pyramid(gray, self.levels, border_type="replicate")
        flows: torch.Tensor | None = None
        for level in reversed(pyramid):  # coarse -> fine
            if flows is None:
                flows = self._residual(level)
                continue
            lh, lw = level.shape[-2:]
            up = F.interpolate(flows.reshape(b, 2 * (n - 1), lh // 2, lw // 2), size=(lh, lw), mode="bilinear",
                               align_corners=False) * 2.0
            flows = up.reshape(b, n - 1, 2, lh, lw)
            ref, others = split_reference(level.unsqueeze(2))
            warped = warp(others, flows)
            r = reference_index(n)
            stacked = torch.cat([warped[:, :r], ref.unsqueeze(1), warped[:, r:]], dim=1).squeeze(2)
            flows = flows + self._residual(stacked)
        assert flows is not None
        return flows

    def align(self, burst: torch.Tensor, flows: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Warp the non-reference frames of ``burst (B, n, C, H, W)`` onto the middle frame.

        Returns ``(aligned (B, n-1, C, H, W), flows (B, n-1, 2, H, W))``; flows are estimated
        with :meth:`forward` unless given.
        """
        if flows is None:
            flows = self(burst)
        _, others = split_reference(burst)
        return warp(others, flows), flows
