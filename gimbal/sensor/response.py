"""Sensor response, dark subtraction and quantization (paper eqs. 9-11), and eq. 14.

* Eq. (9): the response is linear up to tau1 (default 0.9 FWC) and saturates softly to the
  full well above it: ``f(x) = tau1 + (FWC - tau1) * (1 - exp(-(x - tau1) / (FWC - tau1)))``
  for ``x > tau1``. It is C^1 at tau1 (slope 1) and never exceeds FWC. (The supplement's
  exact soft-saturation formula was not available offline; this is a standard choice with
  the properties the paper states.)
* Eq. (10): the mean dark signal ``I0 * dt`` is subtracted (dark-frame subtraction).
* Eq. (11): ``DN = clamp(round(K * x), 0, 2^m - 1)`` with a straight-through estimator for
  the rounding (identity gradient inside the ADC range).
"""

from __future__ import annotations

import torch


def soft_saturation(electrons: torch.Tensor, tau1_e: float, full_well_e: float) -> torch.Tensor:
    """Eq. (9): identity below ``tau1_e``, smooth approach to ``full_well_e`` above; electrons in and out."""
    span = full_well_e - tau1_e
    excess = (electrons - tau1_e).clamp_min(0)
    saturated = tau1_e + span * (-torch.expm1(-excess / span))
    return torch.where(electrons > tau1_e, saturated, electrons)


def ste_round(x: torch.Tensor) -> torch.Tensor:
    """Round to the nearest integer in the forward pass, identity gradient (straight-through)."""
    return x + (torch.round(x) - x).detach()


def quantize(electrons: torch.Tensor, gain_dn_per_e: float, bits: int) -> torch.Tensor:
    """Eq. (11): electrons -> digital numbers in ``[0, 2^m - 1]`` (float tensor of integers), STE rounding."""
    max_dn = float((1 << bits) - 1)
    return ste_round(electrons * gain_dn_per_e).clamp(0.0, max_dn)


def normalize_exposure(burst: torch.Tensor, durations_s: torch.Tensor, budget_s: float) -> torch.Tensor:
    """Eq. (14): scale frame i of ``burst (B, n, C, H, W)`` by ``T / dt_i`` (``durations_s (n,)``)."""
    scale = (budget_s / durations_s).to(device=burst.device, dtype=burst.dtype)
    return burst * scale.view(1, -1, 1, 1, 1)
