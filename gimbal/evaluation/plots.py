"""Evaluation figures: per-method score bars (Table 1 as a chart) and example grids (paper Fig. 7).

Matplotlib with the Agg backend; every figure is written atomically (temp file + rename). The
shutter-schedule timeline lives in :mod:`gimbal.sensor.plot`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from gimbal.errors import ShapeError
from gimbal.io import atomic_path

__all__ = ["image_to_numpy", "plot_example_grid", "plot_method_scores"]


def _pyplot():  # type: ignore[no-untyped-def]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str | os.PathLike[str], tight: bool = True) -> Path:  # type: ignore[no-untyped-def]
    """Write ``fig`` atomically as PNG; ``tight``: crop to the drawn content (``False`` keeps the figure's
    exact size and dpi, e.g. for pixel-exact image tiles)."""
    out = Path(path)
    with atomic_path(out, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", bbox_inches="tight" if tight else None)
    _pyplot().close(fig)
    return out


def image_to_numpy(image: torch.Tensor | np.ndarray) -> np.ndarray:
    """``(C, H, W)`` (C = 1 or 3) display-space image in [0, 1] -> ``(H, W, 3)`` float array for ``imshow``."""
    arr = image.detach().float().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image, np.float32)
    if arr.ndim != 3 or arr.shape[0] not in (1, 3):
        raise ShapeError(f"expected a (C, H, W) image with C = 1 or 3, got {arr.shape}")
    arr = np.clip(arr, 0.0, 1.0).transpose(1, 2, 0)
    return np.repeat(arr, 3, axis=2) if arr.shape[2] == 1 else arr


def plot_method_scores(
    scores: Mapping[str, Mapping[str, Sequence[float]]],
    path: str | os.PathLike[str],
    labels: Mapping[str, str] | None = None,
    title: str | None = None,
) -> Path:
    """Mean PSNR (dB) and SSIM per method as horizontal bars, each clip as a dot; written as PNG.

    Args:
        scores: ``scores[method]["psnr" | "ssim"]`` per-clip values (methods drawn top to bottom in order).
        path: output ``.png``.
        labels: display names of the methods (default: the keys).
        title: figure title.
    """
    plt = _pyplot()
    methods = list(scores)
    names = [(labels or {}).get(m, m) for m in methods]
    fig, axes = plt.subplots(1, 2, figsize=(10, 0.45 * len(methods) + 1.6), dpi=120, sharey=True)
    y = np.arange(len(methods))[::-1]
    for ax, metric, unit in zip(axes, ("psnr", "ssim"), ("PSNR [dB]", "SSIM"), strict=True):
        values = [np.asarray(scores[m][metric], dtype=float) for m in methods]
        means = np.array([v.mean() if v.size else np.nan for v in values])
        colors = ["tab:orange" if m.startswith("gimbal") else "tab:blue" for m in methods]
        ax.barh(y, means, color=colors, alpha=0.75, height=0.6)
        for yi, v in zip(y, values, strict=True):
            ax.plot(v, np.full(v.shape, yi), "k.", markersize=3, alpha=0.6)
        finite = np.concatenate([v for v in values if v.size]) if any(v.size for v in values) else np.zeros(1)
        lo, hi = float(np.nanmin(finite)), float(np.nanmax(finite))
        pad = max(0.05 * (hi - lo), 1e-3)
        ax.set_xlim(lo - 4 * pad if metric == "psnr" else max(0.0, lo - 4 * pad), hi + 4 * pad)
        for yi, m, v in zip(y, means, values, strict=True):  # label right of the bar and of its dots
            x = max(m, float(v.max())) if v.size else m
            ax.text(x, yi, f"  {m:.2f}" if metric == "psnr" else f"  {m:.3f}", va="center", fontsize=8)
        ax.set_xlabel(unit)
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(y)
    axes[0].set_yticklabels(names)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


def plot_example_grid(
    panels: Sequence[tuple[str, torch.Tensor | np.ndarray]],
    path: str | os.PathLike[str],
    title: str | None = None,
    min_tile_px: int = 256,
    columns: int = 4,
) -> Path:
    """Labelled images in a grid (paper Fig. 7 style), written as PNG.

    Every image is drawn at an integer nearest-neighbour zoom, the smallest that makes its shorter side at least
    ``min_tile_px`` pixels of the PNG, so single pixels (noise, blur, misalignment) stay visible and unblurred.

    Args:
        panels: ``(caption, image (C, H, W) in [0, 1] display space)``, left to right, top to bottom; all images
            the same size.
        path: output ``.png``.
        title: figure title.
        min_tile_px: the shorter side of each drawn image, at least, in PNG pixels.
        columns: panels per row.
    """
    plt = _pyplot()
    if not panels:
        raise ShapeError("plot_example_grid: no panels")
    images = [image_to_numpy(image) for _, image in panels]
    h, w = images[0].shape[:2]
    if any(im.shape[:2] != (h, w) for im in images):
        raise ShapeError(f"plot_example_grid: panels differ in size: {sorted({im.shape[:2] for im in images})}")
    dpi = 100
    zoom = max(1, math.ceil(min_tile_px / min(h, w)))
    tile_w, tile_h = zoom * w / dpi, zoom * h / dpi  # inches: one image pixel = zoom PNG pixels
    cols = min(columns, len(panels))
    rows = math.ceil(len(panels) / cols)
    cap, gap, head = 0.42, 0.08, (0.35 if title else 0.0)  # caption height, spacing, title height (inches)
    fig_w = cols * tile_w + (cols + 1) * gap
    fig_h = rows * (tile_h + cap) + (rows + 1) * gap + head
    fig = plt.figure(figsize=(fig_w, fig_h), dpi=dpi)
    for i, ((caption, _), image) in enumerate(zip(panels, images, strict=True)):
        r, c = divmod(i, cols)
        left = gap + c * (tile_w + gap)
        bottom = fig_h - head - (r + 1) * (tile_h + cap + gap)
        ax = fig.add_axes((left / fig_w, bottom / fig_h, tile_w / fig_w, tile_h / fig_h))
        ax.imshow(image, interpolation="nearest", aspect="auto")
        ax.set_title(caption, fontsize=9, pad=3)
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title, fontsize=11, y=1 - 0.12 / fig_h)
    return _save(fig, path, tight=False)  # no cropping: the tile sizes stay exact
