"""Exposure parametrization (eqs. 12-13), shutter schedule (Fig. 3) and camera presets."""

from __future__ import annotations

import math

import pytest
import torch

from gimbal.errors import ParamError
from gimbal.sensor import CameraSpec, Exposure, get_camera, logits_from_schedule, uniform_schedule_us
from gimbal.sensor.camera import PLANCK_J_S, SPEED_OF_LIGHT_M_S, camera_names, get_experiment

T, DT_MIN, DT_RO = 2e-3, 10e-6, 100e-6


def _exposure(n: int = 3, slots: int | None = None, logits: list[float] | None = None) -> Exposure:
    e = Exposure(n, T, DT_MIN, DT_RO, slots=slots)
    if logits is not None:
        with torch.no_grad():
            e.logits.copy_(torch.tensor(logits, dtype=e.logits.dtype))
    return e


@pytest.mark.parametrize("logits", [[0.0, 0.0, 0.0], [3.0, -1.0, 0.5], [-40.0, 0.0, 40.0]])
def test_budget_fully_used_with_n_slots(logits: list[float]) -> None:
    e = _exposure(3, logits=logits)
    dt = e.durations(torch.float64)
    assert dt.shape == (3,)
    total = dt.sum().item() + 3 * DT_RO
    assert total == pytest.approx(T, rel=1e-12, abs=0)
    assert total <= T * (1 + 1e-12)
    assert (dt >= DT_MIN * (1 - 1e-12)).all()
    assert e.idle_s() == 0.0


@pytest.mark.parametrize("logits", [[0.0, 0.0, 0.0, 0.0], [1.0, -2.0, 0.3, 2.0], [0.0, 0.0, 0.0, -30.0]])
def test_idle_slot_absorbs_the_rest(logits: list[float]) -> None:
    e = _exposure(3, slots=4, logits=logits)
    dt = e.durations(torch.float64)
    alpha = torch.softmax(torch.tensor(logits, dtype=torch.float64), 0)
    idle = e.idle_s()
    assert idle == pytest.approx(alpha[-1].item() * (T - 3 * (DT_MIN + DT_RO)), rel=1e-12)
    used = dt.sum().item() + 3 * DT_RO
    assert used < T
    assert used + idle == pytest.approx(T, rel=1e-12, abs=0)


def test_schedule_is_back_to_back_with_readouts() -> None:
    e = _exposure(4, logits=[0.2, -1.0, 1.5, 0.0])
    dt, t = e.durations(torch.float64), e.starts(torch.float64)
    assert t[0].item() == 0.0
    torch.testing.assert_close(t[1:], t[:-1] + dt[:-1] + DT_RO, rtol=1e-12, atol=0)
    assert (t[-1] + dt[-1] + DT_RO).item() == pytest.approx(T, rel=1e-12)


def test_durations_follow_eq13() -> None:
    logits = [0.7, -0.3, 1.1]
    e = _exposure(3, logits=logits)
    alpha = torch.softmax(torch.tensor(logits, dtype=torch.float64), 0)
    expected = DT_MIN + alpha * (T - 3 * (DT_MIN + DT_RO))
    torch.testing.assert_close(e.durations(torch.float64), expected, rtol=1e-12, atol=0)
    assert e.durations().dtype == torch.float32


def test_paper_schedule_round_trips_with_idle_slot() -> None:
    e = Exposure(3, T, DT_MIN, DT_RO, slots=4, init_us=[872, 234, 583])
    us = e.to_us()
    assert us["durations_us"] == pytest.approx([872.0, 234.0, 583.0], abs=1e-6)
    assert us["starts_us"] == pytest.approx([0.0, 972.0, 1306.0], abs=1e-6)
    assert us["idle_us"] == pytest.approx(2000 - 1689 - 300, abs=1e-6)
    assert us["budget_us"] == 2000.0 and us["readout_us"] == 100.0 and us["min_exposure_us"] == 10.0
    assert us["readout_starts_us"] == pytest.approx([872.0, 1206.0, 1889.0], abs=1e-6)


def test_uniform_init_and_logits_from_schedule() -> None:
    uni = uniform_schedule_us(3, T, DT_MIN, DT_RO)
    assert uni == pytest.approx([(2000 - 300) / 3] * 3)
    logits = logits_from_schedule(uni, T, DT_MIN, DT_RO)
    torch.testing.assert_close(logits, torch.zeros(3, dtype=torch.float64))
    assert Exposure(3, T, DT_MIN, DT_RO).to_us()["durations_us"] == pytest.approx(uni, abs=1e-6)
    # default with an idle slot: equal softmax shares, so the idle slot's gradient is not ~0
    idle = Exposure(3, T, DT_MIN, DT_RO, slots=4)
    free_us = 2000 - 3 * (10 + 100)
    assert idle.to_us()["durations_us"] == pytest.approx([10 + free_us / 4] * 3, abs=1e-6)
    assert idle.to_us()["idle_us"] == pytest.approx(free_us / 4, abs=1e-6)
    # a schedule at the minimum exposure maps to a (clamped) very negative logit, not -inf
    lg = Exposure.logits_from_schedule([10.0, 845.0, 845.0], T, DT_MIN, DT_RO)
    assert torch.isfinite(lg).all() and lg[0] < lg[1] - 10


def test_schedule_errors_are_clear() -> None:
    with pytest.raises(ParamError, match="more than the budget"):
        logits_from_schedule([900, 900, 900], T, DT_MIN, DT_RO, slots=4)
    with pytest.raises(ParamError, match="below dt_min"):
        logits_from_schedule([5, 500, 500], T, DT_MIN, DT_RO, slots=4)
    with pytest.raises(ParamError, match="idle slot"):
        logits_from_schedule([872, 234, 583], T, DT_MIN, DT_RO)  # 11 us unused but slots = n
    with pytest.raises(ParamError, match="too short"):
        Exposure(20, T, DT_MIN, DT_RO)
    with pytest.raises(ParamError, match="slots"):
        Exposure(3, T, DT_MIN, DT_RO, slots=5)
    with pytest.raises(ParamError, match="n=3 durations"):
        Exposure(3, T, DT_MIN, DT_RO, init_us=[500, 500])


def test_frozen_exposure_is_a_buffer() -> None:
    learned = Exposure(3, T, DT_MIN, DT_RO, learn=True)
    frozen = Exposure(3, T, DT_MIN, DT_RO, learn=False)
    assert [n for n, _ in learned.named_parameters()] == ["logits"]
    assert list(frozen.parameters()) == []
    assert set(frozen.state_dict()) == set(learned.state_dict()) == {"logits"}
    frozen.load_state_dict(learned.state_dict())


def test_gradient_reaches_logits() -> None:
    e = _exposure(3, slots=4)
    (e.durations() * torch.tensor([1.0, 2.0, 3.0])).sum().backward()
    assert e.logits.grad is not None and torch.isfinite(e.logits.grad).all() and e.logits.grad.abs().sum() > 0


def test_camera_presets_and_aliases() -> None:
    jet = get_camera("jetcam19m")
    flir = get_camera("FLIR-BFS-U3-16S2M")
    # the authors' calibration (released config.ini [model])
    assert (jet.read_noise_e, jet.bits, jet.gain_dn_per_e, jet.prnu) == (17.9, 10, 0.067616, 0.022762)
    assert (jet.full_well_e, jet.dark_current_e_per_s, jet.quantum_efficiency) == (12273.8087, 9.1723, 0.528236)
    assert jet.pixel_area_m2 == pytest.approx(1e-10) and jet.wavelength_m == 520e-9
    # supplement Table 1 experiments: camera + timing (T, dt_min, dt_ro) + idle slot
    syn, ind, out = (get_experiment(x) for x in ("synthetic", "indoor", "outdoor"))
    assert get_camera("synthetic") == syn.spec() and syn.camera == "jetcam19m" and syn.idle_slot
    assert (syn.budget_s, syn.min_exposure_s, syn.readout_s) == (3e-3, 0.0, 400e-6)
    assert (ind.budget_s, ind.min_exposure_s, ind.readout_s, ind.idle_slot) == (5e-3, 500e-6, 400e-6, False)
    assert out.camera == "flir_bfs_u3_16s2m" and get_camera("outdoor").name == flir.name
    assert (out.budget_s, out.min_exposure_s, out.readout_s, out.idle_slot) == (5e-3, 4e-6, 400e-6, False)
    # the published synthetic schedule fits T = 3 ms with 400 us readouts and an idle slot
    s = syn.spec()
    Exposure(3, s.budget_s, s.min_exposure_s, s.readout_s, slots=4, init_us=[872, 234, 583])
    for cam in (jet, flir):
        assert cam.tau1 == pytest.approx(0.9 * cam.full_well_e)
        assert cam.max_dn == 2**cam.bits - 1
    assert {"jetcam19m", "flir_bfs_u3_16s2m", "synthetic", "indoor", "outdoor"} <= set(camera_names())
    with pytest.raises(ParamError, match="unknown camera"):
        get_camera("nikon")
    with pytest.raises(ParamError, match="unknown experiment"):
        get_experiment("lab")
    with pytest.raises(ParamError, match="unknown field"):
        get_camera("jetcam19m", budget=1.0)
    with pytest.raises(ParamError, match="quantum_efficiency"):
        get_camera("jetcam19m", quantum_efficiency=1.5)
    assert get_camera("jetcam19m", budget_s=4e-3).budget_s == 4e-3


def test_irradiance_to_electrons() -> None:
    cam: CameraSpec = get_camera("jetcam19m")
    # 1 W/m^2 at 520 nm on a 10 um pixel: A / (h c / lambda) photons/s, times QE
    photons_per_s = 10e-6**2 / (PLANCK_J_S * SPEED_OF_LIGHT_M_S / 520e-9)
    assert cam.electron_rate(1.0) == pytest.approx(cam.quantum_efficiency * photons_per_s, rel=1e-12)
    assert math.isclose(photons_per_s, 2.6178e8, rel_tol=1e-4)  # 1e-10 m^2 / 3.8200e-19 J
    assert cam.photons_to_electrons(1000.0) == pytest.approx(1000.0 * cam.quantum_efficiency)


# -- the timing control: equal exposures with the reference centred on T/2 ------------------------------------------
def test_centred_schedule_hand_computed_layout() -> None:
    """T 3000 us, 400 us readouts, n 3: the uniform schedule's reference is [1000, 1600] us (centred 200 us early);
    the centred one is 400 us idle, then 466.67 us exposures, its reference [1266.67, 1733.33] us around 1500 us."""
    from gimbal.sensor.exposure import centred_schedule_us

    t, ro = 3000e-6, 400e-6
    uniform = Exposure(3, t, 0.0, ro, learn=False).to_us()
    assert uniform["starts_us"][1] == pytest.approx(1000.0) and uniform["durations_us"][1] == pytest.approx(600.0)
    durations, idle = centred_schedule_us(3, t, 0.0, ro)
    assert durations == pytest.approx([1400 / 3] * 3) and idle == pytest.approx(400.0)
    e = Exposure(3, t, 0.0, ro, slots=4, learn=False, init_us=durations, idle_first=True)
    sched = e.to_us()
    assert sched["starts_us"] == pytest.approx([400.0, 400 + 1400 / 3 + 400, 400 + 2 * (1400 / 3 + 400)], abs=1e-6)
    assert sched["durations_us"] == pytest.approx([1400 / 3] * 3, abs=1e-6)
    assert sched["idle_us"] == pytest.approx(400.0, abs=1e-6) and sched["idle_first"] is True
    ref = sched["starts_us"][1], sched["starts_us"][1] + sched["durations_us"][1]
    assert ref == pytest.approx((3800 / 3, 5200 / 3), abs=1e-6)  # [1266.67, 1733.33]: centred on T/2 = 1500 us
    assert sched["readout_starts_us"][-1] + 400.0 == pytest.approx(3000.0, abs=1e-6)  # the last readout ends at T


def test_centred_schedule_other_timings_and_errors() -> None:
    from gimbal.sensor.exposure import centred_schedule_us

    # n 5, T 5000 us, readout 250 us: (5000 - 6 x 250) / 5 = 700 us each after 250 us idle; frame 2 at [2150, 2850]
    durations, idle = centred_schedule_us(5, 5000e-6, 4e-6, 250e-6)
    assert durations == pytest.approx([700.0] * 5) and idle == pytest.approx(250.0)
    e = Exposure(5, 5000e-6, 4e-6, 250e-6, slots=6, learn=False, init_us=durations, idle_first=True)
    assert float(e.starts(torch.float64)[2]) * 1e6 == pytest.approx(2150.0, abs=1e-6)
    with pytest.raises(ParamError, match="odd exposure.n"):  # even n: the reference would need idle time after
        centred_schedule_us(2, 3000e-6, 0.0, 400e-6)
    with pytest.raises(ParamError, match="idle slot"):
        Exposure(3, 3000e-6, 0.0, 400e-6, learn=False, idle_first=True)


def test_idle_first_shifts_the_starts_by_the_idle_time() -> None:
    """The same logits with the idle time first: every start moves later by the idle time, the durations stay."""
    late = _exposure(3, slots=4, logits=[0.3, -0.2, 0.1, 0.5])
    first = Exposure(3, T, DT_MIN, DT_RO, slots=4, idle_first=True)
    with torch.no_grad():
        first.logits.copy_(late.logits)
    assert torch.equal(first.durations(torch.float64), late.durations(torch.float64))
    shift = first.starts(torch.float64) - late.starts(torch.float64)
    assert shift.tolist() == pytest.approx([late.idle_s()] * 3, abs=1e-15)
    assert late.idle_s() > 0 and "idle_first" not in late.to_us()


def test_centre_reference_param_builds_the_centred_sensor() -> None:
    from gimbal.sensor.exposure import ExposureConfig
    from gimbal.sensor.model import Sensor, SensorConfig

    cfg = ExposureConfig(n=3, idle_slot=True, centre_reference=True)
    sensor = Sensor.from_config(SensorConfig(), cfg, learn_exposure=False)
    sched = sensor.exposure.to_us()
    centre = sched["starts_us"][1] + sched["durations_us"][1] / 2
    assert centre == pytest.approx(sched["budget_us"] / 2, abs=1e-6)
    assert sched["idle_us"] == pytest.approx(sched["readout_us"], abs=1e-6) and sched["starts_us"][0] > 0
    with pytest.raises(ParamError, match="learn_exposure"):
        Sensor.from_config(SensorConfig(), cfg, learn_exposure=True)
    with pytest.raises(ParamError, match="centre_reference"):
        ExposureConfig(n=3, init_us=(500.0, 500.0, 500.0), centre_reference=True)
