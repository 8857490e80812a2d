"""Image-quality metrics: PSNR and SSIM of ``(B, C, H, W)`` images in display space, values in [0, 1], peak 1."""

from __future__ import annotations

import kornia
import torch
import torchmetrics.functional.image as tmf

from gimbal.errors import ParamError, ShapeError

__all__ = ["check_image_pair", "psnr", "ssim"]


def check_image_pair(pred: torch.Tensor, target: torch.Tensor, name: str) -> None:
    """Raise :class:`ShapeError` unless ``pred`` and ``target`` are two ``(B, C, H, W)`` images of one shape."""
    if pred.dim() != 4 or pred.shape != target.shape:
        raise ShapeError(f"{name}: expected two (B, C, H, W) images of equal shape, got {tuple(pred.shape)} "
                         f"and {tuple(target.shape)}")


def psnr(pred: torch.Tensor, target: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """PSNR in dB of ``(B, C, H, W)`` images in [0, 1] (``pred`` clamped to [0, 1]), per image.

    ``reduction='mean'`` averages the per-image PSNRs, ``'none'`` returns ``(B,)``.
    """
    check_image_pair(pred, target, "psnr")
    values = tmf.peak_signal_noise_ratio(pred.clamp(0, 1), target, data_range=1.0, reduction="none",
                                         dim=(1, 2, 3))
    return _reduce(values, reduction)


def ssim(pred: torch.Tensor, target: torch.Tensor, window_size: int = 11, reduction: str = "mean") -> torch.Tensor:
    """SSIM of ``(B, C, H, W)`` images in [0, 1] (``pred`` clamped), Gaussian ``window_size`` window, per image.

    ``reduction='mean'`` averages over the batch, ``'none'`` returns ``(B,)``.
    """
    check_image_pair(pred, target, "ssim")
    ssim_map = kornia.metrics.ssim(pred.clamp(0, 1), target, window_size, max_val=1.0)
    return _reduce(ssim_map.mean(dim=(1, 2, 3)), reduction)


def _reduce(values: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "mean":
        return values.mean()
    if reduction == "none":
        return values
    raise ParamError(f"reduction must be 'mean' or 'none', got {reduction!r}")
