"""The whole sensor forward model: photon-transfer statistics, gradients, determinism, API."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gimbal.config import parse_config
from gimbal.errors import ParamError, ShapeError
from gimbal.sensor import Sensor, SensorConfig, SensorOutput, get_camera, min_bins
from gimbal.sensor.plot import plot_schedule
from gimbal.system import build_sensor

STEP_TAU_MIN = 10**7  # training step at which the GenGS temperature has reached its floor 0.1


def _flat_clip(sensor: Sensor, mean_electrons: float, shape: tuple[int, ...] = (1, 2, 1, 96, 96)) -> torch.Tensor:
    """Constant irradiance giving ``mean_electrons`` in the first exposure (uniform schedule: in all)."""
    dt = sensor.exposure.durations(torch.float64)[0].item()
    return torch.full(shape, mean_electrons / dt)


def _photon_transfer(sensor: Sensor, mean_e: float, step: int = 0) -> tuple[float, float, float, float]:
    """Measured and EMVA-predicted mean / variance in DN of a flat-field burst."""
    cam = sensor.camera
    with torch.no_grad():
        burst = sensor(_flat_clip(sensor, mean_e), step=step).burst.double() * cam.max_dn
    dt = sensor.exposure.durations(torch.float64)[0].item()
    k = cam.gain_dn_per_e
    mean_pred = k * mean_e
    var_pred = k**2 * (mean_e + cam.dark_current_e_per_s * dt + cam.read_noise_e**2) + 1 / 12
    var = burst.var(dim=(0, 2, 3, 4)).mean().item()  # per-frame spatial variance, averaged over frames
    return burst.mean().item(), mean_pred, var, var_pred


@pytest.mark.parametrize(
    ("mean_e", "mode", "hard", "var_range"),
    [
        (200.0, "eval", False, (0.96, 1.04)),  # exact Poisson
        (200.0, "train", True, (0.96, 1.04)),  # GenGS path, straight-through (exact values)
        (200.0, "train", False, (0.82, 0.96)),  # GenGS path, soft relaxation at tau = 0.1 (~0.90 measured)
        (5000.0, "eval", False, (0.96, 1.04)),
        (5000.0, "train", False, (0.96, 1.04)),  # Gaussian path
    ],
)
def test_photon_transfer_statistics(mean_e: float, mode: str, hard: bool, var_range: tuple[float, float]) -> None:
    # EMVA photon transfer without PRNU (its variance is not in this formula; see test_forward_model_monte_carlo)
    cam = get_camera("jetcam19m", prnu=0.0, budget_s=2e-3, readout_s=100e-6, min_exposure_s=10e-6)
    sensor = Sensor(cam, n=3, gengs_max_electrons=1000, n_bins=1200, seed=5, gengs_hard=hard)
    sensor.train(mode == "train")
    mean, mean_pred, var, var_pred = _photon_transfer(sensor, mean_e, STEP_TAU_MIN)
    assert mean == pytest.approx(mean_pred, rel=0.005)
    assert var_range[0] < var / var_pred < var_range[1], f"var {var:.3f} vs EMVA {var_pred:.3f}"


def _monte_carlo(cam, mean_e: float, dt_s: float, pixels: int, seed: int) -> tuple[float, float]:
    """Per-frame mean and variance in DN of a flat field, by a numpy Monte Carlo of the forward model as the
    authors write it: dark add, Poisson, read noise, dark subtract, response, gain, PRNU, round, clip."""
    rng = np.random.default_rng(seed)
    e0 = cam.dark_current_e_per_s * dt_s
    e = rng.poisson(mean_e + e0, pixels).astype(np.float64)
    e += rng.normal(0.0, cam.read_noise_e, pixels)
    e -= e0
    tau1, fwc = cam.tau1, cam.full_well_e
    e = np.where(e > tau1, tau1 + (fwc - tau1) * (1 - np.exp(-(e - tau1) / (fwc - tau1))), e)
    dn = e * cam.gain_dn_per_e * (1 + cam.prnu * rng.uniform(-0.5, 0.5, pixels))
    dn = np.clip(np.round(dn), 0, 2**cam.bits - 1)
    return float(dn.mean()), float(dn.var())


@pytest.mark.parametrize(
    ("mean_e", "dark_e_per_s"),
    [(3.0, None), (30.0, None), (300.0, None), (3000.0, None), (11000.0, None),  # the calibrated camera
     (300.0, 2e5), (11000.0, 4e6)],  # a strong dark signal: subtraction, and its order before the response
)
def test_forward_model_monte_carlo(mean_e: float, dark_e_per_s: float | None) -> None:
    """Sensor.capture (eval) matches a Monte Carlo of the released forward model from 3 to 11000 e-.

    Low signals are dominated by the 17.9 e- read noise, 11000 e- by PRNU (2.3 %, ~45 % of the variance);
    the strong-dark cases fail if the dark mean is not subtracted, or subtracted after the response."""
    cam = get_camera("jetcam19m")
    if dark_e_per_s is not None:
        cam = cam.replace(dark_current_e_per_s=dark_e_per_s)
    sensor = Sensor(cam, n=3, seed=11).eval()
    dt = sensor.exposure.durations(torch.float64)[0].item()
    with torch.no_grad():
        burst = sensor(_flat_clip(sensor, mean_e, (1, 2, 1, 128, 128))).burst.double() * cam.max_dn
    mc_mean, mc_var = _monte_carlo(cam, mean_e, dt, 400_000, seed=3)
    for i in range(3):
        frame = burst[0, i]
        assert frame.mean().item() == pytest.approx(mc_mean, rel=0.02), f"frame {i} mean"
        assert frame.var().item() == pytest.approx(mc_var, rel=0.12), f"frame {i} variance"


def test_prnu_is_a_fixed_pattern_across_the_burst() -> None:
    """PRNU scales each pixel by the same factor in every frame of a burst (only the noise differs)."""
    cam = get_camera("jetcam19m", read_noise_e=0.0, prnu=0.5)
    sensor = Sensor(cam, n=3, seed=2).eval()
    with torch.no_grad():
        burst = sensor(_flat_clip(sensor, 8000.0, (1, 2, 1, 64, 64))).burst.double()
    # the frames share the pattern: their pixelwise correlation is far above the shot noise's 0
    a, b = burst[0, 0].flatten(), burst[0, 2].flatten()
    corr = torch.corrcoef(torch.stack([a, b]))[0, 1].item()
    assert corr > 0.9


def test_saturation_clips_at_the_full_well() -> None:
    # the calibrated JetCam19M: K * FWC = 830 DN < 1023, so the full well (not the ADC) limits the signal
    cam = get_camera("jetcam19m", prnu=0.0)
    sensor = Sensor(cam, n=3, gengs_max_electrons=0, n_bins=2, seed=0).eval()
    burst = sensor(_flat_clip(sensor, 50 * cam.full_well_e, (1, 2, 1, 8, 8))).burst
    fwc_level = round(cam.gain_dn_per_e * cam.full_well_e) / cam.max_dn
    assert burst.max().item() <= fwc_level + 1e-6
    assert burst.min().item() >= fwc_level - 1.5 / cam.max_dn
    # a gain above ADC full scale: saturates at 2^m - 1 -> 1.0
    sensor2 = Sensor(cam.replace(gain_dn_per_e=0.2), n=3, gengs_max_electrons=0, n_bins=2).eval()
    assert sensor2(_flat_clip(sensor2, 1e6, (1, 2, 1, 4, 4))).burst.max().item() == pytest.approx(1.0, abs=1e-6)


def _expected_logit_grad(sensor: Sensor, rate: float, weights: torch.Tensor) -> torch.Tensor:
    """d/dDelta of sum_i w_i * E[mean burst_i] = sum_i w_i K rate / max_dn * d dt_i / dDelta (linear range)."""
    cam = sensor.camera
    logits = sensor.exposure.logits.detach().clone().requires_grad_()
    alpha = torch.softmax(logits, 0)[: sensor.n]
    dt = cam.min_exposure_s + alpha * sensor.exposure.free_s
    (weights.double() * dt * (cam.gain_dn_per_e * rate / cam.max_dn)).sum().backward()
    return logits.grad


@pytest.mark.parametrize("mean_e", [80.0, 3000.0], ids=["gengs", "gaussian"])
@pytest.mark.parametrize("slots", [3, 4])
def test_gradients_reach_exposure_logits(mean_e: float, slots: int) -> None:
    sensor = Sensor("jetcam19m", n=3, slots=slots, gengs_max_electrons=100, n_bins=min_bins(100), seed=1)
    sensor.train()
    clip = _flat_clip(sensor, mean_e, (2, 5, 1, 48, 48))
    weights = torch.tensor([1.0, -2.0, 0.5])
    out = sensor(clip, step=STEP_TAU_MIN)
    loss = (out.burst.mean(dim=(0, 2, 3, 4)) * weights).sum()
    loss.backward()
    grad = sensor.exposure.logits.grad
    assert grad is not None and grad.shape == (slots,)
    assert torch.isfinite(grad).all() and grad.abs().max() > 0
    expected = _expected_logit_grad(sensor, clip[0, 0, 0, 0, 0].item(), weights)
    # the reparametrized noise is unbiased: the stochastic gradient matches the mean's gradient
    assert torch.allclose(grad, expected, rtol=0.05, atol=0.05 * expected.abs().max().item())


def test_gradient_flows_to_irradiance_and_burst_in_range() -> None:
    sensor = build_sensor(parse_config({"seed": 0}))
    g = torch.Generator().manual_seed(0)
    clip = (torch.rand(2, 9, 3, 8, 8, generator=g) * 4e5).requires_grad_()
    out = sensor(clip)
    assert isinstance(out, SensorOutput)
    assert out.burst.shape == (2, 3, 3, 8, 8) and out.burst.dtype == torch.float32
    assert out.durations_s.shape == out.starts_s.shape == (3,)
    assert 0 <= out.burst.min().item() and out.burst.max().item() <= 1
    out.burst.sum().backward()
    assert torch.isfinite(clip.grad).all() and (clip.grad > 0).any()


def test_determinism_with_seed() -> None:
    clip = torch.rand(1, 5, 1, 16, 16) * 3e5
    for train in (True, False):
        a = Sensor("jetcam19m", seed=7, gengs_max_electrons=100, n_bins=170).train(train)
        b = Sensor("jetcam19m", seed=7, gengs_max_electrons=100, n_bins=170).train(train)
        c = Sensor("jetcam19m", seed=8, gengs_max_electrons=100, n_bins=170).train(train)
        with torch.no_grad():
            first = a(clip).burst
            assert torch.equal(first, b(clip).burst)
            assert not torch.equal(first, c(clip).burst)
            second = a(clip).burst
            assert not torch.equal(first, second)  # the generator advances
            a.set_seed(7)
            assert torch.equal(first, a(clip).burst)


def test_shape_and_dtype_errors() -> None:
    sensor = Sensor("jetcam19m", gengs_max_electrons=100, n_bins=170)
    with pytest.raises(ShapeError, match=r"\(B, T_f, C, H, W\)"):
        sensor(torch.zeros(9, 1, 8, 8))
    with pytest.raises(ShapeError, match="floating"):
        sensor(torch.zeros(1, 9, 1, 8, 8, dtype=torch.uint8))
    with pytest.raises(ShapeError, match="n = 3"):
        sensor.normalize(torch.zeros(1, 2, 1, 8, 8))
    with pytest.raises(ParamError, match="n_bins"):
        Sensor("jetcam19m", gengs_max_electrons=1000, n_bins=256)


def test_normalization_makes_frames_comparable() -> None:
    sensor = Sensor("jetcam19m", n=3, slots=4, init_exposures_us=[872, 234, 583], seed=2).eval()
    clip = torch.full((1, 3, 1, 64, 64), 4e6)  # 872 us -> 3488 e-, linear range
    with torch.no_grad():
        out = sensor(clip)
        norm = sensor.normalize(out.burst)
    dt = out.durations_s.double()
    budget = sensor.camera.budget_s
    torch.testing.assert_close(norm.double(), out.burst.double() * (budget / dt).view(1, 3, 1, 1, 1))
    means = norm.mean(dim=(0, 2, 3, 4))
    expected = sensor.camera.gain_dn_per_e * 4e6 * budget / sensor.camera.max_dn  # K * rate * T
    torch.testing.assert_close(means, torch.full((3,), expected), rtol=0.01, atol=0)


def test_full_exposure() -> None:
    sensor = Sensor("jetcam19m", n=3, seed=3).eval()
    clip = torch.full((2, 5, 3, 16, 16), 2e6)
    with torch.no_grad():
        img = sensor.full_exposure(clip)
    assert img.shape == (2, 3, 16, 16)
    cam = sensor.camera
    expected = cam.gain_dn_per_e * 2e6 * cam.budget_s / cam.max_dn  # one exposure of the whole budget T
    assert img.mean().item() == pytest.approx(expected, rel=0.01)


def test_from_params() -> None:
    params = {
        "seed": 4,
        "sensor": {"experiment": "outdoor", "overrides": {"budget_s": 0.004}, "gengs_max_electrons": 50,
                   "n_bins": 120},
        "exposure": {"n": 4, "idle_slot": True, "init_us": [400, 500, 600, 700]},
        "model": {"learn_exposure": False},
        "variants": {"gimbal": {}},  # the default variants include the centred timing control, which needs odd n
    }
    s = build_sensor(parse_config(params), learn_exposure=False)
    assert s.camera.name == "flir_bfs_u3_16s2m" and s.camera.budget_s == 0.004
    assert s.n == 4 and s.exposure.slots == 5 and s.seed == 4 and s.n_bins == 120
    assert list(s.parameters()) == []  # frozen exposures
    assert s.schedule_us()["durations_us"] == pytest.approx([400, 500, 600, 700], abs=1e-6)
    default = build_sensor(parse_config({}))
    assert default.n == 3 and default.exposure.learn and default.n_bins == SensorConfig().n_bins
    assert default.exposure.slots == 4  # the synthetic experiment has an idle slot (supplement Table 1)
    with pytest.raises(ParamError, match="exposure.n"):
        build_sensor(parse_config({"exposure": {"n": "three"}}))
    with pytest.raises(ParamError, match="unknown key 'bogus' in 'sensor.overrides'"):
        build_sensor(parse_config({"sensor": {"overrides": {"bogus": 1}}}))
    with pytest.raises(ParamError, match="did you mean 'experiment'"):
        build_sensor(parse_config({"sensor": {"experimnt": "indoor"}}))


def test_plot_schedule(tmp_path) -> None:
    from PIL import Image

    learned = Sensor("jetcam19m", n=3, slots=4, init_exposures_us=[872, 234, 583])
    uniform = Sensor("jetcam19m", n=3)
    path = plot_schedule([learned.exposure, uniform.schedule_us()], tmp_path / "plots" / "schedule.png",
                         labels=["learned", "uniform"])
    assert path.is_file()
    with Image.open(path) as im:
        assert im.format == "PNG" and im.size[0] > 400
    assert not list(path.parent.glob(".*tmp*"))  # atomic write left no temp file
    with pytest.raises(ParamError):
        plot_schedule({"durations_us": [1.0]}, tmp_path / "bad.png")


def _plotted_bars(monkeypatch, draw) -> dict[tuple[int, str], list[tuple[float, float]]]:
    """Run ``draw()`` (a :func:`plot_schedule` call) and read back the bars it drew: ``(row, kind) -> [(start, end)]``
    in microseconds, kind ``open`` / ``readout`` / ``idle`` by colour, row 0 at the bottom of the figure."""
    import matplotlib
    from matplotlib.colors import to_hex
    from matplotlib.figure import Figure

    matplotlib.use("Agg")
    figures = []
    real = Figure.savefig
    monkeypatch.setattr(Figure, "savefig", lambda fig, *a, **k: (figures.append(fig), real(fig, *a, **k))[1])
    draw()
    (ax,) = [a for a in figures[0].axes if a.collections]
    kinds = {"#f2b134": "open", "#7a7a7a": "readout", "#d9d9d9": "idle"}
    bars: dict[tuple[int, str], list[tuple[float, float]]] = {}
    for coll in ax.collections:
        kind = kinds[to_hex(coll.get_facecolor()[0])]
        for path in coll.get_paths():
            xs, ys = path.vertices[:, 0], path.vertices[:, 1]
            bars.setdefault((round(float(ys.mean())), kind), []).append((float(xs.min()), float(xs.max())))
    return {key: sorted(v) for key, v in bars.items()}


def test_plot_schedule_draws_the_schedule_it_is_given(tmp_path, monkeypatch) -> None:
    """The bars of the figure are the schedules: exposures as given (the learned one) or the budget shared equally
    (the uniform one, (T - n t_r) / n each), each followed by its readout, back to back from 0, idle time to T."""
    budget, readout = 3000.0, 400.0  # the synthetic experiment's JetCam19M timing, microseconds
    learned_us = [872.0, 234.0, 583.0]
    learned = Sensor("jetcam19m", n=3, slots=4, init_exposures_us=learned_us)
    uniform = Sensor("jetcam19m", n=3)
    assert learned.camera.budget_s * 1e6 == pytest.approx(budget) and learned.camera.readout_s * 1e6 == readout

    def expected(durations: list[float]) -> dict[str, list[tuple[float, float]]]:
        t, opened, read = 0.0, [], []
        for d in durations:
            opened.append((t, t + d))
            read.append((t + d, t + d + readout))
            t += d + readout
        return {"open": opened, "readout": read, "idle": [(t, budget)] if budget - t > 1e-6 else []}

    path = tmp_path / "schedule.png"
    bars = _plotted_bars(monkeypatch, lambda: plot_schedule([learned.exposure, uniform.schedule_us()], path,
                                                            labels=["learned", "uniform"]))
    equal = (budget - 3 * readout) / 3
    for row, durations in ((1, learned_us), (0, [equal] * 3)):  # the first schedule is the top row
        for kind, spans in expected(durations).items():
            got = bars.get((row, kind), [])
            assert len(got) == len(spans), (row, kind, got)
            for (a, b), (c, d) in zip(got, spans, strict=True):
                assert a == pytest.approx(c, abs=0.01) and b == pytest.approx(d, abs=0.01), (row, kind, got)
    assert bars[(1, "idle")] == [pytest.approx((2889.0, 3000.0), abs=0.01)]  # 3000 - (872 + 234 + 583 + 3 * 400)
    with open(path, "rb") as fh:
        assert fh.read(8) == b"\x89PNG\r\n\x1a\n"
