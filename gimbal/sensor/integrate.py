"""Exposure integration of a dense irradiance clip (paper eq. (5)).

The clip's ``T_f`` samples span the budget ``[0, T]`` uniformly: sample ``j`` is the
irradiance at time ``j * T / (T_f - 1)`` (so the middle sample is the ground-truth instant
``T / 2``). Between samples the irradiance is taken as linear in time, which makes the
exact integral over ``[t_i, t_i + dt_i]`` the trapezoid rule with fractional end intervals.

It is written as a weight matrix ``W (n, T_f)`` times the clip: ``W[i, j]`` is the integral
of sample j's hat (linear-interpolation) basis function over exposure i. ``W`` is a
closed-form, piecewise-quadratic function of ``t_i`` and ``dt_i``, so the result is
differentiable in both (its derivative is the interpolated irradiance at the endpoints),
and no copy of the clip is made. Hand-written because no library integrates a sampled
signal over differentiable, fractional limits.
"""

from __future__ import annotations

import torch

from gimbal.errors import ShapeError


def _hat_cdf(t: torch.Tensor, n_samples: int, h: float) -> torch.Tensor:
    """Integral from 0 to ``t`` of every hat basis function; ``t (n,)`` -> ``(n, n_samples)`` seconds."""
    j = torch.arange(n_samples, dtype=t.dtype, device=t.device)
    s = t[:, None] / h - j[None, :]  # position relative to node j, in sample intervals
    a = (s + 1).clamp(0, 1)  # rising half of the hat
    b = s.clamp(0, 1)  # falling half of the hat
    return h * (0.5 * a * a + b - 0.5 * b * b)


def exposure_weights(
    starts_s: torch.Tensor, durations_s: torch.Tensor, n_samples: int, budget_s: float
) -> torch.Tensor:
    """Trapezoid weights ``W (n, n_samples)`` in seconds, ``electrons_i = sum_j W[i, j] * phi_j`` (eq. (5)'s rule).

    ``starts_s`` and ``durations_s`` are ``(n,)`` tensors in seconds; computed in float64
    and returned in that precision (differentiable in both inputs).
    """
    if n_samples < 2:
        raise ShapeError(f"irradiance clip needs at least 2 time samples to integrate, got {n_samples}")
    h = budget_s / (n_samples - 1)
    t0 = starts_s.to(torch.float64)
    t1 = t0 + durations_s.to(torch.float64)
    return _hat_cdf(t1, n_samples, h) - _hat_cdf(t0, n_samples, h)


def used_samples(starts_s: torch.Tensor, durations_s: torch.Tensor, n_samples: int, budget_s: float) -> torch.Tensor:
    """``(n_samples,)`` bool: the samples some exposure integrates (a non-zero weight in :func:`exposure_weights`).

    The others (readouts, the idle time) have no effect on the burst nor on its gradient with respect to
    the schedule (the derivative at an exposure's end is the interpolated irradiance there, built from
    samples whose weights are non-zero), so they need not be computed.
    """
    with torch.no_grad():
        w = exposure_weights(starts_s.detach(), durations_s.detach(), n_samples, budget_s)
    return (w > 0).any(dim=0).cpu()


def check_irradiance(irradiance: torch.Tensor, name: str = "irradiance") -> None:
    """Raise :class:`ShapeError` unless ``irradiance`` is a floating ``(B, T_f, C, H, W)`` tensor with T_f >= 2."""
    if not isinstance(irradiance, torch.Tensor):
        raise ShapeError(f"{name} must be a torch.Tensor of shape (B, T_f, C, H, W), got {type(irradiance).__name__}")
    if irradiance.dim() != 5:
        raise ShapeError(
            f"{name} must have shape (B, T_f, C, H, W) (a dense clip in electrons/s), got {tuple(irradiance.shape)}"
        )
    if not irradiance.is_floating_point():
        raise ShapeError(
            f"{name} must be a floating tensor (float32/float64, electrons/s), got dtype {irradiance.dtype}"
        )
    if irradiance.shape[1] < 2:
        raise ShapeError(f"{name} needs at least 2 time samples on dim 1 (T_f), got shape {tuple(irradiance.shape)}")


def integrate_exposures(
    irradiance: torch.Tensor, starts: torch.Tensor, durations: torch.Tensor, budget_s: float
) -> torch.Tensor:
    """Eq. (5): mean photo-electrons of each exposure.

    Args:
        irradiance: ``(B, T_f, C, H, W)`` photo-electrons per second per pixel; sample j at
            time ``j * budget_s / (T_f - 1)``.
        starts: ``(n,)`` exposure start times t_i in seconds, within ``[0, budget_s]``.
        durations: ``(n,)`` exposure durations dt_i in seconds.
        budget_s: the time span T of the clip in seconds.

    Returns:
        ``(B, n, C, H, W)`` mean electrons, dtype of ``irradiance``; differentiable w.r.t.
        ``irradiance``, ``starts`` and ``durations``.
    """
    check_irradiance(irradiance)
    if starts.dim() != 1 or durations.shape != starts.shape:
        raise ShapeError(
            f"starts and durations must both have shape (n,), got {tuple(starts.shape)} and {tuple(durations.shape)}"
        )
    b, tf, c, hh, ww = irradiance.shape
    w = exposure_weights(starts, durations, tf, budget_s)  # (n, T_f), float64
    w = w.to(device=irradiance.device, dtype=irradiance.dtype)
    out = torch.matmul(w, irradiance.reshape(b, tf, c * hh * ww))  # (B, n, C*H*W)
    return out.reshape(b, -1, c, hh, ww)
