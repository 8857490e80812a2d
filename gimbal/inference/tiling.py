"""Tiled inference with bounded memory: merge a large burst in overlapping tiles.

The network (:class:`~gimbal.models.net.GimbalNet`) has no global operation: no
normalization layer, no global pooling, no attention. The flow pyramid (Gaussian blur +
bilinear 2x down-sampling, 5x5 convolutions, bilinear up-sampling, bilinear warps) and the KPN
U-Net (3x3 convolutions, 2x average pooling, bilinear up-sampling, per-pixel ``k x k``
kernels) are all local, and the exposure normalization (eq. 14) and the display curve are per pixel. So an
output pixel depends only on the input within a finite radius (:func:`receptive_radius`; it
grows with the flow magnitude because a warp reads the frame ``flow`` pixels away). Hence:

* a tile whose origin is a multiple of ``GimbalNet.multiple`` sees the same pooling /
  pyramid grid as the whole image (avg-pool and pyramid cells do not straddle differently);
* a tile that reaches the bottom / right image edge is padded by the network exactly as the
  whole image is (replicate padding up to the same multiple);
* every output pixel at least ``margin >= receptive_radius`` away from a tile edge that is
  inside the image is therefore the untiled value, up to float rounding (grid_sample's
  coordinate normalization depends on the tile size: ~1e-6).

Adjacent tiles overlap by ``overlap = 2 * margin + feather``; each tile's output is weighted
by a separable window that is 0 in the margin, rises as a raised cosine over the ``feather``
band and is 1 elsewhere (and 1 up to an image edge); the weighted sum is normalized. With
exact margins the blend averages equal values; if flows exceed the margin's allowance the
feathering hides the (small) seam, and a warning names ``--max-flow-px``.
"""

from __future__ import annotations

import logging
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from tqdm import tqdm

from gimbal.errors import ParamError, ShapeError
from gimbal.models.net import GimbalNet

log = logging.getLogger("gimbal.inference.tiling")

__all__ = ["BYTES_PER_FLOAT_PEAK", "MAX_FLOW_PX", "FEATHER_PX", "TilePlan", "TiledOutput", "bytes_per_pixel",
           "plan_tiles", "receptive_radius", "reconstruct_tiled", "tile_margin", "tile_starts"]

MAX_FLOW_PX = 16.0
"""Default flow magnitude (pixels) the tile margin allows for. The paper's shake (yaw/pitch std
1e-2 deg per frame at fx ~ 5480 px) moves ~1 px per frame; 16 px leaves room for real handheld
bursts. Larger measured flows trigger a warning naming ``--max-flow-px``."""

FEATHER_PX = 16
"""Width (pixels) of the raised-cosine blend between adjacent tiles, beyond the two margins."""

BYTES_PER_FLOAT_PEAK = 4 * 1.25
"""Peak resident bytes per live float of :func:`_live_floats_per_pixel` (float32 = 4 bytes, x1.25).

Measured on a 2-core CPU (torch 2.x, fp32, inference mode, n = 3) as the growth of the process's
peak RSS (``resource.getrusage(...).ru_maxrss`` after one forward minus ``VmRSS`` before it) per
input pixel, on random bursts of 512x512 and 1024x1024 (``benchmarks/bench_infer.py --calibrate``):

=========================  ======  ======  =============  ============
network                    C       B/px    live floats/px  bytes/float
=========================  ======  ======  =============  ============
embedded (8 ch, depth 2)   1       1643    385 (kernels)   4.3
embedded                   3       4836    1155            4.2
paper (64 ch, depth 4)     1       3098    640 (U-Net)     4.8
paper                      3       8933    1920            4.7
=========================  ======  ======  =============  ============

1.25 x 4 = 5 bytes per live float bounds all four (the excess over 4 is oneDNN's re-ordered
copies of convolution inputs and the allocator's slack); the estimate is 3-20 % high.
"""


def receptive_radius(net: GimbalNet, max_flow_px: float = MAX_FLOW_PX) -> int:
    """Conservative radius (input pixels) beyond which the input cannot change an output pixel.

    Sums, along the longest dependency path, every layer's reach in full-resolution pixels
    (a layer at pyramid / U-Net level ``l`` reaches ``2**l`` times its own radius):

    * KPN: three 3x3 convolutions per encoder and decoder block (``3 * 2**l``), average pooling
      (``2**l``), bilinear up-sampling (``2**(l+1)``), the 3x3 head (1); then the ``k x k``
      kernels (``k // 2``) read the frames around the pixel.
    * Flow: the Gaussian pyramid (5x5 blur + bilinear down: ``3 * (2**l - 1)`` to level ``l``),
      the sub-CNN (``convs * (ks // 2) * 2**l``), the up-sampled coarser flow (``2**(l+1)``) and
      each level's warp (``max_flow_px + 2**l``); the final warp reads ``max_flow_px + 1`` away.

    Args:
        net: the network.
        max_flow_px: the largest flow magnitude (full-resolution pixels) to allow for.
    Returns:
        radius in pixels (an int >= 0).
    """
    if not (max_flow_px >= 0 and math.isfinite(max_flow_px)):
        raise ParamError(f"--max-flow-px must be a non-negative number of pixels, got {max_flow_px}")
    r_kpn = receptive_radius_kpn(net)
    r_kernel = net.kpn.kernel_size // 2
    if net.flow is None:
        return int(math.ceil(r_kpn + r_kernel))
    flow = net.flow
    convs = [m for m in flow.sub_cnn if isinstance(m, torch.nn.Conv2d)]
    r_sub = sum(c.kernel_size[0] // 2 for c in convs)
    levels = flow.levels
    reach = 0.0
    for lv in reversed(range(levels)):  # coarse -> fine, as FlowNet.forward
        s = 2**lv
        pyramid = 3 * (s - 1)
        if lv == levels - 1:
            reach = r_sub * s + pyramid
        else:
            reach = r_sub * s + reach + 2 * s + max_flow_px + s + pyramid
    warped = reach + max_flow_px + 1  # the aligned frames fed to the KPN
    return int(math.ceil(r_kpn + warped))


def tile_margin(net: GimbalNet, max_flow_px: float = MAX_FLOW_PX) -> int:
    """:func:`receptive_radius` rounded up to a multiple of ``net.multiple`` (pixels)."""
    m = net.multiple
    return -(-receptive_radius(net, max_flow_px) // m) * m


def _live_floats_per_pixel(net: GimbalNet) -> float:
    """Floats per input pixel alive at the network's memory peak (see :data:`BYTES_PER_FLOAT_PEAK`).

    Two candidate peaks: applying the kernels (unfolded patches, kernels and their product,
    ``3 F k^2`` per colour channel, plus the frames) and the U-Net's full-resolution decoder
    (up-sampled ``w1``, skip ``w0``, their concatenation and its re-ordered copy, the block's
    output: ``3 w1 + 4 w0`` per colour channel); and the flow network's first two layers on the
    luminance (``n + 2 * (c1 + c2)``).
    """
    c, kpn = net.channels, net.kpn
    f, kk = kpn.frames, kpn.kernel_size**2
    w0 = kpn.encoders[0][0].out_channels
    w1 = kpn.encoders[1][0].out_channels if kpn.depth > 0 else 0
    kpn_peak = c * max(3 * f * kk + 2 * f, 3 * w1 + 4 * w0 + f * kk)
    flow_peak = 0.0
    if net.flow is not None:
        widths = [m.out_channels for m in net.flow.sub_cnn if isinstance(m, torch.nn.Conv2d)]
        flow_peak = net.n * (c + 1) + 2 * sum(sorted(widths)[-2:])
    return float(max(kpn_peak, flow_peak) + net.n * c)


def bytes_per_pixel(net: GimbalNet) -> float:
    """Estimated peak memory (bytes) of one forward pass per input pixel (CPU, fp32)."""
    return _live_floats_per_pixel(net) * BYTES_PER_FLOAT_PEAK


@dataclass(frozen=True)
class TilePlan:
    """How :func:`reconstruct_tiled` cuts an image.

    Attributes:
        tile: ``(th, tw)`` tile size in pixels (multiples of ``net.multiple``, or the whole image).
        overlap: pixels shared by adjacent tiles (``2 * margin + feather``).
        margin: pixels discarded at a tile edge inside the image.
        batch: tiles run together in one forward pass.
        estimated_bytes: estimated peak memory of one pass (bytes).
    """

    tile: tuple[int, int]
    overlap: int
    margin: int
    batch: int
    estimated_bytes: float


def plan_tiles(net: GimbalNet, size: tuple[int, int], max_memory_bytes: float,
               max_flow_px: float = MAX_FLOW_PX, feather: int = FEATHER_PX) -> TilePlan:
    """Choose the largest tiles whose forward pass fits ``max_memory_bytes`` (see :func:`bytes_per_pixel`).

    The whole image is one tile when it fits. Otherwise square tiles (multiples of
    ``net.multiple``) of at least ``2 * overlap`` pixels a side; when even those exceed the
    budget (a network with a large receptive field) the plan uses them and logs a warning.

    Args:
        net: the network.
        size: ``(H, W)`` of the image.
        max_memory_bytes: budget for one forward pass.
        max_flow_px, feather: see :func:`tile_margin` and :data:`FEATHER_PX`.
    """
    h, w = size
    if not (max_memory_bytes > 0 and math.isfinite(max_memory_bytes)):
        raise ParamError(f"--max-memory-gb must be a positive number, got {max_memory_bytes / 1e9:g}")
    m = net.multiple
    bpp = bytes_per_pixel(net)
    margin = tile_margin(net, max_flow_px)
    overlap = -(-(2 * margin + max(feather, 0)) // m) * m
    hp, wp = -(-h // m) * m, -(-w // m) * m
    if hp * wp * bpp <= max_memory_bytes:
        return TilePlan((hp, wp), overlap, margin, 1, hp * wp * bpp)
    pixels = max_memory_bytes / bpp
    side = int(math.isqrt(int(pixels))) // m * m
    smallest = 2 * overlap
    if side < smallest:
        side = smallest
        log.warning("--max-memory-gb %.2f is below the %.2f GB of the smallest tile (%dx%d, twice the "
                    "%d-pixel overlap this network's receptive field needs); using it anyway",
                    max_memory_bytes / 1e9, side * side * bpp / 1e9, side, side, overlap)
    th, tw = min(side, hp), min(side, wp)
    if th < side:  # a short image: widen the tiles instead
        tw = min(max(int(pixels // th) // m * m, smallest), wp)
    elif tw < side:
        th = min(max(int(pixels // tw) // m * m, smallest), hp)
    batch = max(1, int(pixels // (th * tw)))
    return TilePlan((th, tw), overlap, margin, batch, batch * th * tw * bpp)


def tile_starts(size: int, tile: int, overlap: int) -> list[int]:
    """Origins ``0, s, 2s, ...`` (stride ``s = tile - overlap``) until a tile reaches ``size``."""
    if tile >= size:
        return [0]
    stride = tile - overlap
    if stride <= 0:
        raise ParamError(f"tile size {tile} must exceed the overlap {overlap}; raise --max-memory-gb")
    starts = [0]
    while starts[-1] + tile < size:
        starts.append(starts[-1] + stride)
    return starts


def _window(length: int, lead: bool, trail: bool, margin: int, ramp: int, dtype: torch.dtype) -> torch.Tensor:
    """1-D blend weights ``(length,)``: 0 in a margin, raised cosine over ``ramp``, else 1.

    ``lead`` / ``trail``: whether the tile's start / end edge lies inside the image (an edge at
    the image border keeps weight 1 up to it).
    """
    wt = torch.ones(length, dtype=dtype)
    if ramp > 0:
        t = (torch.arange(ramp, dtype=torch.float64) + 0.5) / ramp
        rise = (0.5 - 0.5 * torch.cos(math.pi * t)).to(dtype)  # rise[i] + rise[ramp-1-i] == 1
    else:
        rise = torch.ones(0, dtype=dtype)
    if lead:
        wt[:margin] = 0
        wt[margin : margin + ramp] = rise
    if trail:
        wt[length - margin :] = 0
        wt[length - margin - ramp : length - margin] = torch.minimum(wt[length - margin - ramp : length - margin],
                                                                     rise.flip(0))
    return wt


@dataclass
class TiledOutput:
    """Result of :func:`reconstruct_tiled`.

    Attributes:
        image: ``(B, C, H, W)`` display-space merge (``net.encode`` of ``linear``).
        linear: ``(B, C, H, W)`` linear eq. (15) merge.
        max_flow_px: the largest flow magnitude (pixels) seen where it can reach kept pixels,
            or 0 without a flow network.
        tiles: number of tiles run.
    """

    image: torch.Tensor
    linear: torch.Tensor
    max_flow_px: float
    tiles: int


@torch.inference_mode()
def reconstruct_tiled(system: torch.nn.Module, burst: torch.Tensor, durations_s: torch.Tensor | None,
                      tile: int | Sequence[int], overlap: int, margin: int | None = None, batch: int = 1,
                      max_flow_px: float = MAX_FLOW_PX, progress: bool = False) -> TiledOutput:
    """Run ``system.reconstruct`` on overlapping tiles of ``burst`` and blend them.

    Args:
        system: a :class:`~gimbal.system.GimbalSystem` (eval mode) on any device.
        burst: ``(B, n, C, H, W)`` raw burst in [0, 1] DN, on the system's device (or CPU: tiles
            are moved one pass at a time, so a CPU burst bounds GPU memory too).
        durations_s: ``(n,)`` exposure durations in seconds (float64), or None for the system's.
        tile: tile size ``T`` or ``(Th, Tw)`` in pixels, multiples of ``system.net.multiple``.
        overlap: pixels shared by adjacent tiles, a multiple of ``system.net.multiple``,
            ``>= 2 * margin``.
        margin: pixels dropped at inner tile edges (default ``overlap // 2``, no feathering).
        batch: tiles of equal size per forward pass.
        max_flow_px: the flow allowance the margin was derived with; larger flows log a warning.
        progress: show a progress bar over the tiles on stderr (tqdm) when there is more than one.
    Returns:
        :class:`TiledOutput` with ``(B, C, H, W)`` tensors on the burst's device.
    """
    if burst.dim() != 5:
        raise ShapeError(f"reconstruct_tiled: expected a burst (B, n, C, H, W), got {tuple(burst.shape)}")
    net: GimbalNet = system.net
    m = net.multiple
    th, tw = (tile, tile) if isinstance(tile, int) else (int(tile[0]), int(tile[1]))
    if margin is None:
        margin = overlap // 2
    for name, v in (("tile height", th), ("tile width", tw), ("overlap", overlap)):
        if v % m:
            raise ParamError(f"reconstruct_tiled: {name} {v} is not a multiple of the network's {m}")
    if not 0 <= 2 * margin <= overlap:
        raise ParamError(f"reconstruct_tiled: margin {margin} must be in [0, overlap / 2 = {overlap / 2:g}]")
    b, n, c, h, w = burst.shape
    dev = next(system.parameters()).device
    out_dev = burst.device
    ramp = overlap - 2 * margin
    ys, xs = tile_starts(h, th, overlap), tile_starts(w, tw, overlap)
    acc = torch.zeros(b, c, h, w, dtype=torch.float32, device=out_dev)
    weight = torch.zeros(h, w, dtype=torch.float32, device=out_dev)
    reach = receptive_radius_kpn(net)
    worst = 0.0
    boxes = [(y, min(y + th, h), x, min(x + tw, w)) for y in ys for x in xs]
    groups: dict[tuple[int, int], list[tuple[int, int, int, int]]] = {}
    for box in boxes:
        groups.setdefault((box[1] - box[0], box[3] - box[2]), []).append(box)
    d = durations_s.to(dev) if durations_s is not None else None
    scale = system.input_scale(burst, durations_s).to(dev)  # the whole image's: every tile is scaled alike
    bar = tqdm(total=len(boxes), desc="merge", unit="tile", file=sys.stderr, disable=not progress or len(boxes) < 2)
    try:
        for group in groups.values():
            for i in range(0, len(group), batch):
                chunk = group[i : i + batch]
                x_in = torch.cat([burst[..., y0:y1, x0:x1] for y0, y1, x0, x1 in chunk]).to(dev)
                out = system.reconstruct(x_in, d, scale.repeat(len(chunk)))
                for j, (y0, y1, x0, x1) in enumerate(chunk):
                    wy = _window(y1 - y0, y0 > 0, y1 < h, margin, ramp, torch.float32).to(out_dev)
                    wx = _window(x1 - x0, x0 > 0, x1 < w, margin, ramp, torch.float32).to(out_dev)
                    wt = wy[:, None] * wx[None, :]
                    lin = out.linear[j * b : (j + 1) * b].to(out_dev, torch.float32)
                    acc[..., y0:y1, x0:x1] += lin * wt
                    weight[y0:y1, x0:x1] += wt
                    if out.flows is not None:  # flows that can reach kept pixels: kept area dilated by the KPN reach
                        ky = torch.nonzero(wy > 0)
                        kx = torch.nonzero(wx > 0)
                        fy0, fy1 = max(int(ky[0]) - reach, 0), int(ky[-1]) + 1 + reach
                        fx0, fx1 = max(int(kx[0]) - reach, 0), int(kx[-1]) + 1 + reach
                        fl = out.flows[j * b : (j + 1) * b, ..., fy0:fy1, fx0:fx1]
                        worst = max(worst, float(fl.norm(dim=2).max()) if fl.numel() else 0.0)
                bar.update(len(chunk))
    finally:
        bar.close()  # its last line ends before any message that follows
    linear = acc / weight
    if len(boxes) > 1 and worst > max_flow_px:
        log.warning("flows up to %.1f px exceed the %.1f px the tile margin allows for; seams may differ "
                    "slightly from an untiled run: pass --max-flow-px %d (or a larger --max-memory-gb)",
                    worst, max_flow_px, math.ceil(worst))
    return TiledOutput(image=system.net.encode(linear), linear=linear, max_flow_px=worst, tiles=len(boxes))


def receptive_radius_kpn(net: GimbalNet) -> int:
    """Radius (pixels) over which the KPN (and its kernels) read the frames it merges."""
    d = net.kpn.depth
    r = sum(3 * 2**lv for lv in range(d + 1)) + sum(2**lv for lv in range(1, d + 1))
    r += sum(2 ** (lv + 1) + 3 * 2**lv for lv in range(d)) + 1
    return max(r, net.kpn.kernel_size // 2)
