"""Camera rotations of the augmentation (Section 6.2; :mod:`gimbal.data.augment` applies them): the released
per-frame Euler random walk (``motion: shake``), a smooth random rotation (``motion: smooth``) and the homographies
``K R K^-1`` of pure rotations.
"""

from __future__ import annotations

import math

import kornia
import torch

__all__ = ["intrinsic_matrix", "random_rotation_trajectory", "rotation_homographies", "shake_rotations"]


def random_rotation_trajectory(batch: int, frames: int, max_angle_rad: torch.Tensor, smoothness: float = 0.1,
                               generator: torch.Generator | None = None) -> torch.Tensor:
    """Smooth random camera rotations, identity at the middle frame ``frames // 2``.

    Angular velocity is a random walk (initial velocity + cumulative accelerations of relative
    size ``smoothness``); its integral is the rotation (axis-angle). Each clip is scaled so that
    its largest rotation angle equals ``max_angle_rad[b]``.

    Args:
        batch, frames: ``B`` and ``T``.
        max_angle_rad: ``(B,)`` per-clip largest rotation angle (radians).
        smoothness: acceleration noise relative to the initial velocity.
        generator: torch generator (CPU) for reproducibility.

    Returns:
        ``(B, T, 3)`` axis-angle rotation vectors in radians (CPU, float32).
    """
    v0 = torch.randn(batch, 1, 3, generator=generator)
    accel = torch.randn(batch, frames, 3, generator=generator) * smoothness
    velocity = v0 + accel.cumsum(dim=1)
    angles = velocity.cumsum(dim=1)
    angles = angles - angles[:, frames // 2 : frames // 2 + 1]
    peak = angles.norm(dim=2).amax(dim=1).clamp(min=1e-12)
    return angles * (max_angle_rad.to(angles) / peak)[:, None, None]


def intrinsic_matrix(focal_px: float, size: int, device: torch.device | None = None,
                     dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Pinhole ``K`` (3, 3): focal ``focal_px`` pixels, principal point at the centre of a ``size`` square."""
    c = (size - 1) / 2.0
    return torch.tensor([[focal_px, 0.0, c], [0.0, focal_px, c], [0.0, 0.0, 1.0]], device=device, dtype=dtype)


def rotation_homographies(rotations: torch.Tensor, focal_px: float, size: int) -> torch.Tensor:
    """Homographies ``H = K R K^-1`` of pure camera rotations.

    Args:
        rotations: ``(..., 3)`` axis-angle vectors (radians).
        focal_px: focal length in pixels; ``size``: side of the (square) image the ``K`` refers to.

    Returns:
        ``(..., 3, 3)`` homographies mapping source pixel coordinates to rotated-view coordinates.
    """
    shape = rotations.shape[:-1]
    r = kornia.geometry.conversions.axis_angle_to_rotation_matrix(rotations.reshape(-1, 3))
    k = intrinsic_matrix(focal_px, size, rotations.device, rotations.dtype)
    return (k @ r @ torch.linalg.inv(k)).reshape(*shape, 3, 3)


def shake_rotations(batch: int, frames: int, std_deg: tuple[float, float, float],
                    generator: torch.Generator | None = None) -> torch.Tensor:
    """The released camera shake: a per-frame random walk of Euler angles, zero at the middle frame.

    Each frame adds independent N(0, std^2) increments to (roll, pitch, yaw), accumulated outward from
    the middle frame ``frames // 2`` (frames after it sum the increments from the middle on, frames
    before it the increments back to the middle), so the middle frame is unrotated.

    Args:
        batch, frames: ``B`` and ``T``.
        std_deg: per-frame std of roll (about the optical axis z), pitch (about x) and yaw (about y), degrees.
        generator: CPU generator.

    Returns:
        ``(B, T, 3, 3)`` rotation matrices ``R = Rz(roll) Rx(pitch) Ry(yaw)`` (float32, CPU).
    """
    std = torch.tensor([math.radians(x) for x in std_deg])
    steps = torch.randn(batch, frames, 3, generator=generator) * std
    m = frames // 2
    angles = torch.zeros(batch, frames, 3)
    angles[:, m + 1 :] = steps[:, m + 1 :].cumsum(dim=1)
    angles[:, :m] = steps[:, :m].flip(1).cumsum(dim=1).flip(1)
    axes = torch.eye(3)[[2, 0, 1]]  # roll about z, pitch about x, yaw about y
    r = kornia.geometry.conversions.axis_angle_to_rotation_matrix((angles[..., :, None] * axes).reshape(-1, 3))
    r = r.reshape(batch, frames, 3, 3, 3)
    return r[:, :, 0] @ r[:, :, 1] @ r[:, :, 2]
