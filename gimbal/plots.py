"""Evaluation figures: per-method score bars (Table 1 as a chart) and example grids (paper Fig. 7).

Matplotlib with the Agg backend; every figure is written atomically (temp file + rename). The
shutter-schedule timeline lives in :mod:`gimbal.sensor.plot`.
"""

from __future__ import annotations

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


def _save(fig, path: str | os.PathLike[str]) -> Path:  # type: ignore[no-untyped-def]
    out = Path(path)
    with atomic_path(out, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", bbox_inches="tight")
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
    panel_inches: float = 2.0,
) -> Path:
    """One row of labelled images (paper Fig. 7 style), written as PNG.

    Args:
        panels: ``(caption, image (C, H, W) in [0, 1] display space)`` left to right.
        path: output ``.png``.
        title: figure title.
        panel_inches: width of each panel.
    """
    plt = _pyplot()
    if not panels:
        raise ShapeError("plot_example_grid: no panels")
    fig, axes = plt.subplots(1, len(panels), figsize=(panel_inches * len(panels), panel_inches + 0.9), dpi=120,
                             squeeze=False)
    for ax, (caption, image) in zip(axes[0], panels, strict=True):
        ax.imshow(image_to_numpy(image), interpolation="nearest")
        ax.set_title(caption, fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, path)
