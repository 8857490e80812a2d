"""`gimbal calibrate`: EMVA 1288 release 4.0 estimates, the camera preset, its use by the sensor, and bad data.

Expected values come from the constants a data set was simulated with (gimbal's numpy simulation, or the
independent `emva1288` package's camera simulator) or from `emva1288`'s own analysis, never from the
estimator's formulas.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from gimbal.calibration import calibrate, calibrate_files, fit_line, read_descriptor
from gimbal.calibration.simulate import simulate_dataset, write_raw_image
from gimbal.cli import main
from gimbal.errors import DataError, ParamError
from gimbal.sensor.camera import get_camera, get_experiment

REPO = Path(__file__).resolve().parents[1]

# Constants unlike jetcam19m's (K 0.0676 DN/e-, 17.9 e-, 9.17 e-/s, QE 0.528, FWC 12274 e-, prnu 0.0228, 10 bits)
CAMERA = get_camera("jetcam19m").replace(
    name="simulated", gain_dn_per_e=0.3, read_noise_e=6.0, dark_current_e_per_s=400.0, quantum_efficiency=0.62,
    full_well_e=11_000.0, prnu=0.05, bits=12, tau1_e=None)


def rel_err(estimate: float, truth: float) -> float:
    return abs(estimate - truth) / abs(truth)


@pytest.fixture(scope="module")
def simulated(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """A 64 x 64 exposure-time series (40 pairs, 16-image stacks) of CAMERA with a 3 e- DSNU, as 16-bit PNG."""
    return simulate_dataset(tmp_path_factory.mktemp("sim") / "data", CAMERA, dsnu_e=3.0, image_format="png", seed=3)


@pytest.fixture(scope="module")
def small_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small valid data set (16 x 16, 12 exposure times, no stacks, .npy) that the bad-data tests break."""
    return simulate_dataset(tmp_path_factory.mktemp("small") / "data", CAMERA, steps=12, stack_images=0, width=16,
                            height=16, image_format="npy", seed=5).descriptor.parent


@pytest.fixture
def broken(small_set: Path, tmp_path: Path) -> Path:
    """A fresh copy of ``small_set`` to break; returns its descriptor."""
    shutil.copytree(small_set, tmp_path / "data")
    return tmp_path / "data" / "EMVA1288descriptor.txt"


# ----------------------------------------------------------------------------- recovery
def test_fit_line_known_values() -> None:
    x = np.array([1.0, 2.0, 3.0, 4.0])
    f = fit_line(x, 2.5 * x + 1.0)
    assert f.slope == pytest.approx(2.5) and f.intercept == pytest.approx(1.0) and f.r2 == pytest.approx(1.0)
    g = fit_line(x, np.array([2.0, 4.0, 6.0, 9.0]), through_origin=True)
    assert g.slope == pytest.approx(64.0 / 30.0) and g.intercept == 0.0 and g.n == 4 and g.r2 < 1.0


def test_round_trip_recovers_the_simulated_constants(simulated) -> None:  # type: ignore[no-untyped-def]
    cal = calibrate(read_descriptor(simulated.descriptor))
    truth = simulated.truth
    assert rel_err(cal.gain_dn_per_e, truth["gain_dn_per_e"]) < 0.03
    assert rel_err(cal.read_noise_e, truth["read_noise_e"]) < 0.05
    assert rel_err(cal.dark_current_e_per_s, truth["dark_current_e_per_s"]) < 0.05
    assert rel_err(cal.quantum_efficiency, truth["quantum_efficiency"]) < 0.03
    assert rel_err(cal.saturation_e, truth["saturation_e"]) < 0.10
    assert rel_err(cal.spatial.prnu, truth["prnu_std"]) < 0.10
    assert rel_err(cal.spatial.dsnu_e, truth["dsnu_e"]) < 0.10
    assert cal.bits == 12 and cal.saturation_reached and cal.gain.r2 > 0.99 and cal.gain.n >= 5
    assert not cal.read_noise_upper_limit and cal.notes == ()


def test_round_trip_without_stacks_uses_a_pair(tmp_path: Path) -> None:
    sim = simulate_dataset(tmp_path / "data", CAMERA, stack_images=0, image_format="tif", seed=4)
    cal = calibrate(read_descriptor(sim.descriptor))
    assert cal.spatial.images == 2 and any("L = 2" in n for n in cal.notes)
    assert rel_err(cal.spatial.prnu, sim.truth["prnu_std"]) < 0.25
    assert rel_err(cal.gain_dn_per_e, sim.truth["gain_dn_per_e"]) < 0.03


@pytest.mark.parametrize(("gain", "sigma_d", "upper"), [(0.1, 6.0, False), (0.05, 4.0, True)])
def test_quantization_limited_dark_noise(tmp_path: Path, gain: float, sigma_d: float, upper: bool) -> None:
    """K^2 sigma_d^2 of 0.36 DN^2 is comparable to the 1/12 DN^2 of quantization, which must come off; at
    0.04 DN^2 quantization dominates and the standard gives only an upper limit (from 0.24 DN^2)."""
    cam = CAMERA.replace(gain_dn_per_e=gain, read_noise_e=sigma_d)
    sim = simulate_dataset(tmp_path / "data", cam, steps=20, stack_images=0, image_format="npy", seed=6)
    cal = calibrate(read_descriptor(sim.descriptor))
    assert cal.read_noise_upper_limit is upper
    if upper:
        assert cal.read_noise_e > sigma_d and rel_err(cal.read_noise_e, np.sqrt(0.24 - 1 / 12) / gain) < 0.05
        assert any("upper limit" in n for n in cal.notes)
    else:
        assert rel_err(cal.read_noise_e, sigma_d) < 0.05


def test_written_preset_has_the_camera_constants(simulated, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    res = calibrate_files(simulated.descriptor, tmp_path / "out" / "cam.yaml", pixel_um=5.0)
    preset = yaml.safe_load(res.preset_path.read_text())
    truth = simulated.truth
    assert preset["name"] == "cam" and preset["bits"] == 12
    assert preset["pixel_area_m2"] == pytest.approx(25e-12) and preset["wavelength_m"] == pytest.approx(525e-9)
    assert rel_err(preset["gain_dn_per_e"], CAMERA.gain_dn_per_e) < 0.03
    assert rel_err(preset["read_noise_e"], CAMERA.read_noise_e) < 0.05
    assert rel_err(preset["dark_current_e_per_s"], CAMERA.dark_current_e_per_s) < 0.05
    assert rel_err(preset["quantum_efficiency"], CAMERA.quantum_efficiency) < 0.03
    assert rel_err(preset["full_well_e"], truth["saturation_e"]) < 0.10
    assert rel_err(preset["prnu"], CAMERA.prnu) < 0.10  # the sensor model's uniform width, not the EMVA std
    assert not {"budget_s", "readout_s", "min_exposure_s"} & set(preset)  # timing is the experiment's
    for png in (res.ptc_path, res.snr_path):
        assert png.parent == res.preset_path.parent and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert png.stat().st_size > 20_000


def test_cli_prints_the_table_and_writes_the_files(simulated, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "camera.yaml"
    assert main(["calibrate", str(simulated.descriptor), "--pixel-um", "5", "--wavelength-nm", "520",
                 "-o", str(out)]) == 0
    text = capsys.readouterr().out
    for key in ("gain_dn_per_e", "read_noise_e", "dark_current_e_per_s", "full_well_e", "prnu",
                "quantum_efficiency", "R^2"):
        assert key in text
    assert out.is_file() and (tmp_path / "camera_ptc.png").is_file() and (tmp_path / "camera_snr.png").is_file()
    assert yaml.safe_load(out.read_text())["wavelength_m"] == pytest.approx(520e-9)
    assert main(["calibrate", str(simulated.descriptor), "--pixel-um", "-1", "-o", str(out)]) == 2
    assert capsys.readouterr().err.strip().startswith("error: --pixel-um")


# ----------------------------------------------------------------------------- independent reference
EMVA = {"K": 0.25, "sigma2_dark_0": 49.0, "dark_current": 300.0, "qe": 0.6, "u_esat": 12_000.0, "prnu": 0.02,
        "dark_signal_0": 10.0}


@pytest.fixture(scope="module")
def emva_set(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """A data set from emva1288's camera simulator (exposure-time series, 50 points, 16-image stacks, TIFF)."""
    generator = pytest.importorskip("emva1288.camera.dataset_generator", reason="pip install emva1288==1.0.2")
    from emva1288.camera.routines import Qe

    h = w = 64
    rng = np.random.default_rng(7)
    prnu = 1.0 + EMVA["prnu"] * rng.standard_normal((h, w))
    prnu /= prnu.mean()
    qe = Qe(qe=np.full((h, w, 1), EMVA["qe"]), wavelength=np.array([525.0]), width=w, height=h)
    gen = generator.DatasetGenerator(
        steps=50, L=16, image_format="tif", outdir=str(tmp_path_factory.mktemp("emva") / "data"),
        width=w, height=h, bit_depth=12, K=EMVA["K"], K_min=EMVA["K"], K_max=1.0,
        blackoffset=40, blackoffset_min=0, blackoffset_max=255, blackoffset_steps=256, qe=qe,
        temperature=30, temperature_ref=30, dark_current_ref=EMVA["dark_current"],
        dark_signal_0=EMVA["dark_signal_0"], sigma2_dark_0=EMVA["sigma2_dark_0"], u_esat=EMVA["u_esat"],
        prnu=prnu, exposure_min=1e6, exposure_max=50e6, seed=11)
    assert gen.cam.K == EMVA["K"]  # the simulator snaps K to its grid; K_min makes it exact
    return Path(gen.descriptor_path), float(prnu.std())


def test_recovers_the_constants_of_emva1288s_simulator(emva_set) -> None:  # type: ignore[no-untyped-def]
    descriptor, prnu_std = emva_set
    cal = calibrate(read_descriptor(descriptor))
    assert rel_err(cal.gain_dn_per_e, EMVA["K"]) < 0.05
    assert rel_err(cal.read_noise_e, np.sqrt(EMVA["sigma2_dark_0"])) < 0.10
    assert rel_err(cal.quantum_efficiency, EMVA["qe"]) < 0.05
    assert rel_err(cal.dark_current_e_per_s, EMVA["dark_current"]) < 0.20
    assert rel_err(cal.saturation_e, EMVA["u_esat"] - EMVA["dark_signal_0"]) < 0.10
    assert rel_err(cal.spatial.prnu, prnu_std) < 0.25


def test_agrees_with_emva1288s_analysis(emva_set, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    process = pytest.importorskip("emva1288.process", reason="pip install emva1288==1.0.2")
    # emva1288 1.0.2 calls np.asfarray, which NumPy 2 removed
    monkeypatch.setattr(np, "asfarray", lambda a, dtype=float: np.asarray(a, dtype=dtype), raising=False)
    descriptor, _ = emva_set
    parser = process.ParseEmvaDescriptorFile(str(descriptor), loglevel=logging.WARNING)
    loaded = process.LoadImageData(parser.images, loglevel=logging.WARNING)
    data = process.Data1288(loaded.data, loglevel=logging.WARNING)
    ref = process.Results1288(data.data, loglevel=logging.WARNING)
    cal = calibrate(read_descriptor(descriptor))
    assert rel_err(cal.gain_dn_per_e, ref.K) < 0.005
    assert rel_err(cal.read_noise_e, ref.sigma_d) < 0.01
    assert rel_err(cal.quantum_efficiency, ref.QE / 100) < 0.01


# ----------------------------------------------------------------------------- the preset in a training config
def _params_with_camera(path: str) -> dict:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["sensor"]["camera"] = path
    return params


def test_a_preset_parses_through_the_config_and_builds_the_sensor(simulated, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from gimbal.config import parse_config
    from gimbal.sensor import Sensor

    res = calibrate_files(simulated.descriptor, tmp_path / "camera.yaml", pixel_um=5.0)
    cfg = parse_config(_params_with_camera(str(res.preset_path)))
    sensor = Sensor.from_config(cfg.sensor, cfg.exposure)
    cam, exp = sensor.camera, get_experiment(cfg.sensor.experiment)
    assert cam.name == "camera" and cam.bits == 12
    assert rel_err(cam.gain_dn_per_e, CAMERA.gain_dn_per_e) < 0.03
    assert rel_err(cam.read_noise_e, CAMERA.read_noise_e) < 0.05
    assert rel_err(cam.quantum_efficiency, CAMERA.quantum_efficiency) < 0.03
    assert rel_err(cam.dark_current_e_per_s, CAMERA.dark_current_e_per_s) < 0.05
    assert rel_err(cam.prnu, CAMERA.prnu) < 0.10
    assert cam.pixel_area_m2 == pytest.approx(25e-12)
    assert (cam.budget_s, cam.min_exposure_s, cam.readout_s) == (exp.budget_s, exp.min_exposure_s, exp.readout_s)
    assert sensor.exposure.slots == cfg.exposure.n + (1 if exp.idle_slot else 0)
    assert cam != get_camera(cfg.sensor.experiment)  # not the experiment's own camera


VALID = {"name": "cam", "gain_dn_per_e": 0.3, "read_noise_e": 6.0, "dark_current_e_per_s": 400.0,
         "full_well_e": 11000.0, "prnu": 0.05, "quantum_efficiency": 0.62, "bits": 12, "pixel_area_m2": 2.5e-11,
         "wavelength_m": 5.25e-07}


@pytest.mark.parametrize(
    ("content", "hint"),
    [(None, "not found"), ("name: [unclosed\n", "invalid YAML"), ("- 1\n- 2\n", "mapping"),
     ({k: v for k, v in VALID.items() if k != "bits"}, r"missing key\(s\) \['bits'\]"),
     ({**VALID, "gain_dn_per_e": "fast"}, "'gain_dn_per_e' must be a number"),
     ({**VALID, "gain": 0.3}, r"unknown key\(s\) \['gain'\]"),
     ({**VALID, "budget_s": 0.004}, "timing"),
     ({**VALID, "quantum_efficiency": 1.5}, "quantum_efficiency must be in")],
)
def test_a_missing_or_malformed_preset_names_sensor_camera(tmp_path: Path, content: str | dict | None,
                                                           hint: str) -> None:
    from gimbal.config import parse_config

    path = tmp_path / "cam.yaml"
    if content is not None:
        path.write_text(content if isinstance(content, str) else yaml.safe_dump(content))
    with pytest.raises(ParamError, match=hint) as info:
        parse_config(_params_with_camera(str(path)))
    assert "sensor.camera" in str(info.value) and str(path) in str(info.value)


def test_a_valid_preset_file_parses(tmp_path: Path) -> None:
    from gimbal.config import parse_config

    path = tmp_path / "cam.yaml"
    path.write_text(yaml.safe_dump(VALID))
    cam = parse_config(_params_with_camera(str(path))).sensor.spec()
    assert {k: getattr(cam, k) for k in VALID} == VALID


# ----------------------------------------------------------------------------- bad data
def _image_lines(descriptor: Path) -> list[str]:
    return [ln for ln in descriptor.read_text().splitlines() if ln.startswith("i ")]


def _image(descriptor: Path, line: str) -> Path:
    return descriptor.parent / line[2:].replace("\\", "/")


def test_a_missing_image_is_named(broken: Path) -> None:
    victim = _image(broken, _image_lines(broken)[5])
    victim.unlink()
    with pytest.raises(DataError, match="image not found") as info:
        calibrate(read_descriptor(broken))
    assert victim.name in str(info.value)


def test_mixed_image_sizes_are_named(broken: Path) -> None:
    victim = _image(broken, _image_lines(broken)[9])
    write_raw_image(victim, np.full((15, 16), 100), 12)
    with pytest.raises(DataError, match="16 x 15 pixels") as info:
        calibrate(read_descriptor(broken))
    assert victim.name in str(info.value) and "16 x 16" in str(info.value)


def test_no_dark_pairs(broken: Path) -> None:
    lines, keep = broken.read_text().splitlines(), []
    dark = False
    for ln in lines:
        if ln[:2] in ("b ", "d "):
            dark = ln.startswith("d ")
        if not (dark and ln[:2] in ("d ", "i ")):
            keep.append(ln)
    broken.write_text("\n".join(keep) + "\n")
    with pytest.raises(DataError, match="no dark pairs") as info:
        calibrate(read_descriptor(broken))
    assert str(broken) in str(info.value)


def test_fewer_than_five_bright_points_below_saturation(tmp_path: Path) -> None:
    sim = simulate_dataset(tmp_path / "data", CAMERA, steps=8, stack_images=0, width=16, height=16,
                           saturate_at=0.4, image_format="npy")
    with pytest.raises(DataError, match=r"only \d of 8 bright pairs lie below saturation") as info:
        calibrate(read_descriptor(sim.descriptor))
    assert str(sim.descriptor) in str(info.value)


def test_saturated_dark_frames(broken: Path) -> None:
    lines = broken.read_text().splitlines()
    at = next(i for i, ln in enumerate(lines) if ln.startswith("d "))
    for ln in lines[at + 1:at + 3]:
        write_raw_image(_image(broken, ln), np.full((16, 16), 4095), 12)
    with pytest.raises(DataError, match="is saturated") as info:
        calibrate(read_descriptor(broken))
    assert _image(broken, lines[at + 1]).name in str(info.value) and "4095 DN" in str(info.value)


def test_a_descriptor_of_another_release(broken: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    broken.write_text(broken.read_text().replace("v 4.0", "v 3.1"))
    with pytest.raises(DataError, match="release 3.1") as info:
        read_descriptor(broken)
    assert str(broken) in str(info.value)
    assert main(["calibrate", str(broken), "--pixel-um", "5", "-o", str(broken.parent / "c.yaml")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "release 3.1" in err[0]
