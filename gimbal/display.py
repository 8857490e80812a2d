"""The image space every score is measured in: the target, the display curve and the floors' gain.

Two targets (params ``eval.target``; training and evaluation use the same one):

- ``srgb`` (default, the authors' protocol): the ground truth is the clip's sRGB middle frame itself in
  [0, 1] (cropped, warped, resized and reduced to luma exactly like the burst's reference instant,
  :class:`gimbal.data.augment.AugmentedBatch.gt`), and every image scored goes through the released
  sRGB-like curve :func:`srgb_encode` (released ``transform.apply_gamma_correction``). The network's
  exposure-normalized merge (eq. 14-15) is at the camera's brightness (an sRGB white fills about half the
  ADC at the released light level), so the network learns the gain to the target.
- ``sensor`` (this project's earlier target): the middle instant integrated noise-free over the whole
  budget ``T`` in the camera's DN range, ``K T E_mid / (2^m - 1)``, through a pure 2.2 power curve
  (:func:`power_gamma`); kept to reproduce earlier results.

The floors (the full-exposure image, the exposure-normalized middle frame) are images straight from the
camera. Under ``srgb`` they are brightened by the fixed gain :meth:`Display.for_camera` derives from the
camera and the mean light level (what a camera's fixed exposure gain would do), so a floor is not scored
on a brightness it cannot know; the networks learn their own gain.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from gimbal.errors import ParamError, ShapeError
from gimbal.sensor.camera import CameraSpec

__all__ = [
    "SRGB_A",
    "SRGB_EPS",
    "SRGB_GAMMA",
    "SRGB_MULT",
    "SRGB_THRESHOLD",
    "TARGETS",
    "Display",
    "inverse_power_gamma",
    "power_gamma",
    "sensor_ground_truth",
    "srgb_encode",
]

TARGETS: tuple[str, ...] = ("srgb", "sensor")
"""Values of ``eval.target``."""

# The released sRGB-like curve (transform.py: DEFAULT_THRESHOLD, DEFAULT_A, DEFAULT_MULT, DEFAULT_GAMMA, EPSILON).
SRGB_THRESHOLD = 0.0031308
"""Linear value below which the curve is the linear toe ``mult * x``."""
SRGB_A = 0.055
SRGB_MULT = 12.92
SRGB_GAMMA = 2.4
SRGB_EPS = 1e-3
"""Added to ``x`` inside the power (released code; IEC 61966-2-1 has no such term): it keeps the gradient finite
near the threshold, and makes the curve jump by about 0.012 there and end at 1.0004 for ``x = 1``."""

POWER_GAMMA = 2.2
"""The ``sensor`` target's display curve ``x ** (1 / 2.2)``."""
POWER_EPS = 1e-3
"""Below this linear value :func:`power_gamma` continues as its tangent line (finite gradient)."""


def srgb_encode(linear: torch.Tensor) -> torch.Tensor:
    """The released sRGB-like curve, linear -> display: ``x`` clipped to [0, 1], then
    ``(1 + a) (x + eps) ** (1 / gamma) - a`` above ``threshold`` and ``mult * x`` below it
    (:data:`SRGB_THRESHOLD`, :data:`SRGB_A`, :data:`SRGB_MULT`, :data:`SRGB_GAMMA`, :data:`SRGB_EPS`).

    Any shape; values outside [0, 1] are clipped first, so their gradient is 0 (as in the released code,
    which applies it to the network output).
    """
    x = linear.clamp(0.0, 1.0)
    power = (1.0 + SRGB_A) * (x + SRGB_EPS) ** (1.0 / SRGB_GAMMA) - SRGB_A
    return torch.where(x > SRGB_THRESHOLD, power, x * SRGB_MULT)


def power_gamma(linear: torch.Tensor, g: float = POWER_GAMMA, eps: float = POWER_EPS) -> torch.Tensor:
    """Differentiable gamma ``x ** (1/g)`` (the ``sensor`` target's display curve), any shape.

    ``x ** (1/g)`` has an infinite slope at 0; below ``eps`` the curve continues as its tangent at ``eps``,
    so the gradient is finite everywhere, also for slightly negative network outputs. Exactly inverted by
    :func:`inverse_power_gamma`.
    """
    y0 = eps ** (1.0 / g)
    slope = y0 / (g * eps)
    power = linear.clamp(min=eps) ** (1.0 / g)  # clamp keeps the unused branch's gradient finite
    return torch.where(linear >= eps, power, y0 + (linear - eps) * slope)


def inverse_power_gamma(display: torch.Tensor, g: float = POWER_GAMMA, eps: float = POWER_EPS) -> torch.Tensor:
    """Inverse of :func:`power_gamma`: display values -> linear intensities."""
    y0 = eps ** (1.0 / g)
    slope = y0 / (g * eps)
    power = display.clamp(min=y0) ** g
    return torch.where(display >= y0, power, eps + (display - y0) / slope)


def sensor_ground_truth(irradiance: torch.Tensor, camera: CameraSpec) -> torch.Tensor:
    """The ``sensor`` target: the middle sample ``T_f // 2`` of ``irradiance (B, T_f, C, H, W)`` (e-/s) integrated
    as if static over the full budget ``T`` without noise, ``K E_mid T / (2^m - 1)`` clipped to [0, 1] (the units of
    the exposure-normalized burst, eq. 14), through :func:`power_gamma` -> ``(B, C, H, W)`` display space."""
    if irradiance.dim() != 5:
        raise ShapeError(f"ground truth: expected irradiance (B, T_f, C, H, W), got {tuple(irradiance.shape)}")
    mid = irradiance[:, irradiance.shape[1] // 2]
    return power_gamma((mid * (camera.budget_s * camera.gain_dn_per_e / camera.max_dn)).clamp(0.0, 1.0))


@dataclass(frozen=True)
class Display:
    """How images become the scored display space (see the module docstring).

    Attributes:
        target: ``srgb`` (the authors') or ``sensor``.
        floor_gain: linear gain applied to the floors' camera images (DN in [0, 1]) before the curve: under
            ``srgb`` the DN of an sRGB white at the mean light level, inverted (:meth:`for_camera`); 1 under
            ``sensor``.
    """

    target: Literal["srgb", "sensor"] = "srgb"
    floor_gain: float = 1.0

    def __post_init__(self) -> None:
        if self.target not in TARGETS:
            raise ParamError(f"params: 'eval.target' must be one of {list(TARGETS)}, got {self.target!r}")
        if not self.floor_gain > 0:
            raise ParamError(f"Display: floor_gain must be > 0, got {self.floor_gain}")

    @classmethod
    def for_camera(cls, target: str, camera: CameraSpec, white_level: tuple[float, float]) -> Display:
        """The display of ``target`` for ``camera`` lit at ``white_level`` ``(lo, hi)`` W/m^2 (``augment.white_level``):
        under ``srgb`` the floors' gain is ``(2^m - 1) / (K T r)``, with ``r`` the e-/s of an sRGB white at the mean
        white level (eq. 4), so a static white fully exposed for ``T`` maps to 1."""
        if target != "srgb":
            return cls(target, 1.0)  # type: ignore[arg-type]
        rate = float(camera.electron_rate(0.5 * (white_level[0] + white_level[1])))
        return cls("srgb", camera.max_dn / (camera.gain_dn_per_e * camera.budget_s * rate))

    def encode(self, linear: torch.Tensor) -> torch.Tensor:
        """The display curve of the network's merge (eq. 15 output, any shape): no gain (the network learns it)."""
        return srgb_encode(linear) if self.target == "srgb" else power_gamma(linear)

    def floor(self, dn: torch.Tensor) -> torch.Tensor:
        """A camera image ``dn`` in [0, 1] DN at full-exposure brightness (any shape) -> display space:
        times :attr:`floor_gain`, clipped to [0, 1], through the curve."""
        return self.encode((dn * self.floor_gain).clamp(0.0, 1.0))

    def ground_truth(self, irradiance: torch.Tensor, srgb: torch.Tensor | None, camera: CameraSpec) -> torch.Tensor:
        """The target ``(B, C, H, W)``: ``srgb`` (the scene's sRGB middle frame, ``(B, C, H, W)`` in [0, 1]) under
        the ``srgb`` target, :func:`sensor_ground_truth` of ``irradiance (B, T_f, C, H, W)`` e-/s under ``sensor``."""
        if self.target == "sensor":
            return sensor_ground_truth(irradiance, camera)
        if srgb is None:
            raise ShapeError("ground truth: eval.target 'srgb' needs the scene's sRGB middle frame (Scenes.srgb); "
                             "pass it, or use eval.target: sensor")
        if srgb.dim() != 4 or srgb.shape[0] != irradiance.shape[0] or srgb.shape[-2:] != irradiance.shape[-2:]:
            raise ShapeError(f"ground truth: sRGB frame {tuple(srgb.shape)} does not match irradiance "
                             f"{tuple(irradiance.shape)}")
        return srgb
