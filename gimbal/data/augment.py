"""Training-time augmentation of dense clips (Section 6.2).

For a batch of interpolated clips ``(B, T, C, H, W)`` (sRGB, [0, 1]):

1. a smooth random 3D camera rotation per frame (integrated random walk of angular
   velocities, anchored to the identity at the middle frame and scaled per clip so the largest
   rotation equals a random angle in ``[min_rotation_deg, max_rotation_deg]``);
2. a random ``crop x crop`` window (same for all frames of a clip), warped by the homography
   ``H_t = K R_t K^-1`` (pinhole intrinsics ``K``: focal ``focal_px`` in pixels of the crop,
   principal point at the crop centre) and cut to its central ``center x center`` part, in
   one kornia ``warp_perspective`` call (border padding);
3. an antialiased resize to ``out_size x out_size`` (kornia);
4. inverse gamma to linear intensities (:func:`gimbal.models.gimbal.inverse_gamma`, the exact
   inverse of the network's output gamma).

The ground truth is the middle frame of the augmented clip in sRGB (before inverse gamma): the
loss (eq. 16/18) compares the network output after its gamma against it in display space, as
the paper does. :func:`scale_to_electrons` then turns the linear clip into irradiance
(electrons per second) for the sensor simulation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

import kornia
import torch

from gimbal.errors import ParamError, ShapeError
from gimbal.models.gimbal import inverse_gamma
from gimbal.params import get

__all__ = [
    "AugmentConfig",
    "AugmentedBatch",
    "augment_clips",
    "intrinsic_matrix",
    "random_rotation_trajectory",
    "rotation_homographies",
    "scale_to_electrons",
]


@dataclass(frozen=True)
class AugmentConfig:
    """Augmentation parameters (params group ``augment``).

    Attributes:
        crop: side in pixels of the random window cut from each input frame (paper: 512).
        center: side of its central part kept after warping (paper: 256).
        out_size: final side after antialiased resizing (paper: 128).
        max_rotation_deg: upper bound of the per-clip maximal camera rotation (degrees).
        min_rotation_deg: lower bound of it.
        focal_px: focal length of the virtual camera in pixels of the crop (None: ``crop``,
            i.e. a ~53 degree field of view across the crop).
        smoothness: ratio of random-walk angular-acceleration noise to initial angular
            velocity; larger = more wiggly trajectories.
    """

    crop: int = 512
    center: int = 256
    out_size: int = 128
    max_rotation_deg: float = 3.0
    min_rotation_deg: float = 0.0
    focal_px: float | None = None
    smoothness: float = 0.1

    def __post_init__(self) -> None:
        if not 0 < self.out_size <= self.center <= self.crop:
            raise ParamError(f"augment: need 0 < out_size ({self.out_size}) <= center ({self.center}) <= crop "
                             f"({self.crop}); fix augment.out_size/center/crop in params.yaml")
        if not 0 <= self.min_rotation_deg <= self.max_rotation_deg:
            raise ParamError(f"augment: need 0 <= min_rotation_deg ({self.min_rotation_deg}) <= max_rotation_deg "
                             f"({self.max_rotation_deg})")
        if self.focal_px is not None and self.focal_px <= 0:
            raise ParamError(f"augment: focal_px must be > 0, got {self.focal_px}")
        if self.smoothness < 0:
            raise ParamError(f"augment: smoothness must be >= 0, got {self.smoothness}")

    @property
    def focal(self) -> float:
        """Focal length in pixels of the crop."""
        return float(self.focal_px) if self.focal_px is not None else float(self.crop)

    @classmethod
    def from_params(cls, params: dict[str, Any], group: str = "augment") -> AugmentConfig:
        """Read every field from params group ``group``; missing keys keep the paper defaults."""
        values: dict[str, Any] = {}
        for f in fields(cls):
            value = get(params, f"{group}.{f.name}", None, default=None)
            if value is None:
                continue
            typ = int if f.type == "int" else (int, float)
            if not isinstance(value, typ) or isinstance(value, bool):
                name = "an int" if typ is int else "a number"
                raise ParamError(f"params: '{group}.{f.name}' must be {name}, got {value!r}")
            values[f.name] = value
        return cls(**values)


@dataclass
class AugmentedBatch:
    """Output of :func:`augment_clips`.

    Attributes:
        linear: ``(B, T, C, out, out)`` augmented clip, linear intensities in [0, 1].
        gt: ``(B, C, out, out)`` its middle frame ``T // 2`` in sRGB [0, 1] (loss target).
        rotations: ``(B, T, 3)`` camera rotations (axis-angle, radians) applied per frame.
        origins: ``(B, 2)`` top-left ``(x0, y0)`` of each clip's ``crop`` window in the input frames.
    """

    linear: torch.Tensor
    gt: torch.Tensor
    rotations: torch.Tensor
    origins: torch.Tensor


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


def augment_clips(clips: torch.Tensor, config: AugmentConfig, generator: torch.Generator | None = None
                  ) -> AugmentedBatch:
    """Augment a batch of dense sRGB clips (see the module docstring).

    Args:
        clips: ``(B, T, C, H, W)`` float in [0, 1] or uint8 in [0, 255] (sRGB), ``H, W >= config.crop``.
        config: :class:`AugmentConfig`.
        generator: CPU ``torch.Generator``; the same seed gives the same output.

    Returns:
        :class:`AugmentedBatch` (linear clip, sRGB ground-truth middle frame, rotations).
    """
    if clips.dim() != 5 or not (clips.is_floating_point() or clips.dtype == torch.uint8):
        raise ShapeError(f"augment_clips: expected a float or uint8 (B, T, C, H, W) clip batch, got {tuple(clips.shape)} "
                         f"{clips.dtype}")
    b, t, c, h, w = clips.shape
    s = config.crop
    if h < s or w < s:
        raise ShapeError(f"augment_clips: frames are {w}x{h}, smaller than augment.crop={s}; lower augment.crop "
                         "(and center/out_size) in params.yaml")
    lo, hi = math.radians(config.min_rotation_deg), math.radians(config.max_rotation_deg)
    max_angle = lo + (hi - lo) * torch.rand(b, generator=generator)
    rotations = random_rotation_trajectory(b, t, max_angle, config.smoothness, generator)
    y0 = torch.randint(0, h - s + 1, (b,), generator=generator)
    x0 = torch.randint(0, w - s + 1, (b,), generator=generator)

    crops = torch.stack([clips[i, :, :, y0[i] : y0[i] + s, x0[i] : x0[i] + s] for i in range(b)])
    if crops.dtype == torch.uint8:  # 8-bit clips are converted after cropping: 4x less memory for the full frames
        crops = crops.float() / 255.0
    homog = rotation_homographies(rotations.to(crops.device, crops.dtype), config.focal, s)  # (B, T, 3, 3)
    offset = (s - config.center) / 2.0  # crop coordinates -> centre-window coordinates
    shift = torch.eye(3, device=crops.device, dtype=crops.dtype)
    shift[0, 2] = shift[1, 2] = -offset
    warped = kornia.geometry.transform.warp_perspective(
        crops.reshape(b * t, c, s, s), (shift @ homog).reshape(b * t, 3, 3), (config.center, config.center),
        mode="bilinear", padding_mode="border", align_corners=True)
    if config.out_size != config.center:
        warped = kornia.geometry.transform.resize(warped, (config.out_size, config.out_size),
                                                  interpolation="bilinear", antialias=True)
    srgb = warped.clamp(0, 1).reshape(b, t, c, config.out_size, config.out_size)
    return AugmentedBatch(linear=inverse_gamma(srgb), gt=srgb[:, t // 2].clone(), rotations=rotations,
                         origins=torch.stack([x0, y0], dim=1))


def scale_to_electrons(linear: torch.Tensor, full_exposure_s: float, electrons_range: tuple[float, float],
                       generator: torch.Generator | None = None) -> torch.Tensor:
    """Scale linear clips to irradiance in electrons per second for the sensor (Section 6.2).

    Per clip a target mean electron count ``e`` is drawn log-uniformly in ``electrons_range``
    and the clip is scaled so that ``mean(irradiance) * full_exposure_s == e`` (i.e. a single
    exposure over the full budget collects ``e`` electrons per pixel on average).

    Args:
        linear: ``(B, T, C, H, W)`` linear intensities (>= 0, not all zero per clip).
        full_exposure_s: the full exposure budget ``T`` in seconds.
        electrons_range: ``(lo, hi)`` mean electrons at full exposure, ``0 < lo <= hi``.
        generator: CPU ``torch.Generator``.

    Returns:
        ``(B, T, C, H, W)`` irradiance in electrons per second.
    """
    lo, hi = electrons_range
    if not 0 < lo <= hi:
        raise ParamError(f"scale_to_electrons: electrons_range must satisfy 0 < lo <= hi, got {electrons_range}")
    if full_exposure_s <= 0:
        raise ParamError(f"scale_to_electrons: full_exposure_s must be > 0, got {full_exposure_s}")
    if linear.dim() != 5:
        raise ShapeError(f"scale_to_electrons: expected (B, T, C, H, W), got {tuple(linear.shape)}")
    b = linear.shape[0]
    u = torch.rand(b, generator=generator, dtype=torch.float64)
    target = torch.exp(math.log(lo) + u * (math.log(hi) - math.log(lo)))  # log-uniform electrons
    mean = linear.detach().mean(dim=(1, 2, 3, 4)).double().clamp(min=1e-12)
    scale = (target.to(mean.device) / (mean * full_exposure_s)).to(linear.dtype)
    return linear * scale[:, None, None, None, None]
