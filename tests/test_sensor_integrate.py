"""Exposure integration of the dense clip (eq. 5)."""

from __future__ import annotations

import pytest
import torch

from gimbal.errors import ShapeError
from gimbal.sensor import exposure_weights, integrate_exposures

T = 2e-3


def _linear_clip(tf: int, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """phi(t) = a + b t sampled at j T / (tf - 1); a, b: (C, H, W) -> (1, tf, C, H, W) float64."""
    t = torch.linspace(0, T, tf, dtype=torch.float64)
    return (a[None] + b[None] * t[:, None, None, None])[None]


def test_linear_irradiance_matches_closed_form() -> None:
    g = torch.Generator().manual_seed(0)
    a = torch.rand(2, 3, 4, generator=g, dtype=torch.float64) * 1e5
    b = (torch.rand(2, 3, 4, generator=g, dtype=torch.float64) - 0.5) * 1e8
    clip = _linear_clip(241, a, b)
    # fractional start and end points, one crossing many samples, one inside a single interval
    t0 = torch.tensor([0.0, 3.3e-6, 1.2345e-3, 1.9e-3], dtype=torch.float64)
    dt = torch.tensor([5.67e-4, 2.1e-6, 3.21e-4, 1.0e-4], dtype=torch.float64)
    out = integrate_exposures(clip, t0, dt, T)
    assert out.shape == (1, 4, 2, 3, 4) and out.dtype == torch.float64
    t1 = t0 + dt
    expected = a[None] * dt[:, None, None, None] + b[None] / 2 * (t1**2 - t0**2)[:, None, None, None]
    torch.testing.assert_close(out[0], expected, rtol=1e-10, atol=1e-9)


def test_constant_irradiance_gives_rate_times_duration_and_weights_sum() -> None:
    f64 = torch.float64
    w = exposure_weights(torch.tensor([0.0, 7e-4], dtype=f64), torch.tensor([T, 3.3e-4], dtype=f64), 241, T)
    torch.testing.assert_close(w.sum(1), torch.tensor([T, 3.3e-4], dtype=torch.float64), rtol=1e-12, atol=0)
    assert (w >= 0).all()
    clip = torch.full((2, 9, 1, 2, 2), 5e5)
    out = integrate_exposures(clip, torch.tensor([1e-4]), torch.tensor([4e-4]), T)
    torch.testing.assert_close(out, torch.full((2, 1, 1, 2, 2), 200.0))


def test_gradcheck_integration() -> None:
    g = torch.Generator().manual_seed(1)
    clip = (torch.rand(1, 6, 1, 2, 2, generator=g, dtype=torch.float64) * 3).requires_grad_()
    # endpoints away from the sample nodes (spacing T/5) where the weights are C^1 anyway
    t0_ms = torch.tensor([0.13, 0.91], dtype=torch.float64, requires_grad=True)
    dt_ms = torch.tensor([0.55, 0.77], dtype=torch.float64, requires_grad=True)

    def f(c: torch.Tensor, a: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
        return integrate_exposures(c, a * 1e-3, d * 1e-3, T) * 1e3  # ms units keep the FD steps sane

    assert torch.autograd.gradcheck(f, (clip, t0_ms, dt_ms), eps=1e-6, atol=1e-6)


def test_derivative_in_time_is_irradiance_at_the_endpoint() -> None:
    clip = _linear_clip(241, torch.tensor([[[1e5]]], dtype=torch.float64), torch.tensor([[[3e7]]], dtype=torch.float64))
    t0 = torch.tensor([4.2e-4], dtype=torch.float64, requires_grad=True)
    dt = torch.tensor([6.1e-4], dtype=torch.float64, requires_grad=True)
    integrate_exposures(clip, t0, dt, T).sum().backward()
    end = 4.2e-4 + 6.1e-4
    assert dt.grad.item() == pytest.approx(1e5 + 3e7 * end, rel=1e-9)
    assert t0.grad.item() == pytest.approx(3e7 * 6.1e-4, rel=1e-9)  # phi(end) - phi(start)


def test_shape_and_dtype_errors() -> None:
    t, d = torch.tensor([0.0]), torch.tensor([1e-4])
    with pytest.raises(ShapeError, match=r"\(B, T_f, C, H, W\)"):
        integrate_exposures(torch.zeros(9, 1, 4, 4), t, d, T)
    with pytest.raises(ShapeError, match="floating"):
        integrate_exposures(torch.zeros(1, 9, 1, 4, 4, dtype=torch.int32), t, d, T)
    with pytest.raises(ShapeError, match="at least 2 time samples"):
        integrate_exposures(torch.zeros(1, 1, 1, 4, 4), t, d, T)
    with pytest.raises(ShapeError, match=r"shape \(n,\)"):
        integrate_exposures(torch.zeros(1, 9, 1, 4, 4), t, torch.tensor([1e-4, 2e-4]), T)


def test_unused_samples_change_neither_burst_nor_gradient() -> None:
    """Zeroing the samples no exposure integrates (readouts, idle) leaves the burst and d burst / d logits."""
    from gimbal.sensor import Sensor
    from gimbal.sensor.integrate import used_samples

    sensor = Sensor("synthetic", n=3, slots=4, init_exposures_us=[700, 300, 500]).eval()
    g = torch.Generator().manual_seed(0)
    clip = torch.rand(1, 41, 1, 4, 4, generator=g, dtype=torch.float64) * 1e6
    used = used_samples(sensor.exposure.starts(torch.float64), sensor.exposure.durations(torch.float64), 41,
                        sensor.camera.budget_s)
    assert 0 < int(used.sum()) < 41  # the three readouts (1200 of 3000 us) and the idle time are unused
    zeroed = clip * used.view(1, -1, 1, 1, 1)
    results = []
    for c in (clip, zeroed):
        sensor.exposure.logits.grad = None
        dt = sensor.exposure.durations(torch.float64)
        mean = integrate_exposures(c, sensor.exposure.starts(torch.float64), dt, sensor.camera.budget_s)
        mean.sum().backward()
        results.append((mean.detach(), sensor.exposure.logits.grad.clone()))
    torch.testing.assert_close(results[0][0], results[1][0])
    torch.testing.assert_close(results[0][1], results[1][1])
