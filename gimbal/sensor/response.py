"""Sensor response, PRNU and quantization (paper eqs. (9)-(10)), and the exposure normalization of eq. (14).

* Eq. (9): the response r is linear up to tau1 (0.9 FWC: the authors' 10 % response tail)
  and saturates softly to the full well above it:
  ``r(x) = tau1 + (FWC - tau1) * (1 - exp(-(x - tau1) / (FWC - tau1)))`` for ``x > tau1``
  (C^1 at tau1, never above FWC; the form of the authors' released forward model).
* Eq. (10): the quantizer Q: the gain K, then ``clamp(round(.), 0, 2^m - 1)`` with a straight-through
  estimator for the rounding (identity gradient inside the ADC range).
* Eq. (11), composed in :meth:`gimbal.sensor.model.Sensor.capture`: ``Y = Q(r(e - e0))``, the mean dark
  signal ``e0 = I0 dt`` subtracted before the response.
* PRNU: each pixel's signal is scaled by ``1 + prnu * U(-0.5, 0.5)`` (the authors' calibration).
"""

from __future__ import annotations

import torch


def soft_saturation(electrons: torch.Tensor, tau1_e: float, full_well_e: float) -> torch.Tensor:
    """Eq. (9): identity below ``tau1_e``, smooth approach to ``full_well_e`` above; electrons in and out."""
    span = full_well_e - tau1_e
    excess = (electrons - tau1_e).clamp_min(0)
    saturated = tau1_e + span * (-torch.expm1(-excess / span))
    return torch.where(electrons > tau1_e, saturated, electrons)


def prnu_pattern(shape: tuple[int, ...], prnu: float, generator: torch.Generator | None = None,
                 device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Per-pixel response factors ``1 + prnu * U(-0.5, 0.5)`` of ``shape`` (dimensionless)."""
    u = torch.rand(shape, generator=generator, device=device, dtype=dtype)
    return 1.0 + prnu * (u - 0.5)


def ste_round(x: torch.Tensor) -> torch.Tensor:
    """Round to the nearest integer in the forward pass, identity gradient (straight-through; eq. (10)'s rounding)."""
    return x + (torch.round(x) - x).detach()


def quantize(electrons: torch.Tensor, gain_dn_per_e: float, bits: int) -> torch.Tensor:
    """Eq. (10), the quantizer Q: electrons -> digital numbers in ``[0, 2^m - 1]`` (float tensor of integers).

    The gain ``gain_dn_per_e`` (DN/e-), rounding with a straight-through gradient (:func:`ste_round`), clipping.
    """
    max_dn = float((1 << bits) - 1)
    return ste_round(electrons * gain_dn_per_e).clamp(0.0, max_dn)


def normalize_exposure(burst: torch.Tensor, durations_s: torch.Tensor, budget_s: float) -> torch.Tensor:
    """Eq. (14): scale frame i of ``burst (B, n, C, H, W)`` by ``T / dt_i`` (``durations_s (n,)``)."""
    scale = (budget_s / durations_s).to(device=burst.device, dtype=burst.dtype)
    return burst * scale.view(1, -1, 1, 1, 1)
