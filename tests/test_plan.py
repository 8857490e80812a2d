"""`gimbal plan` (gimbal.planning.plan): the unit conversions against independent computations, the interpolation on a
small hand-written grid (by hand, monotone, within the budget), and the refusals."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gimbal.cli import main
from gimbal.errors import DataError, ParamError
from gimbal.planning.plan import PlanError, dbar_from_vibration, ebar_from_light, load_grid, luminosity, plan, summary
from gimbal.sensor.camera import get_camera

BUDGET_US, READOUT_US = 3000.0, 400.0


def test_lux_to_electrons_by_hand() -> None:
    """JetCam19M (10 um pixel, QE 0.528236, 520 nm where V = 0.710): 1 lux at the sensor is 1 / (683 x 0.710) =
    2.0621e-3 W/m^2; a photon of 520 nm carries 3.8201e-19 J, so a 1e-10 m^2 pixel receives 5.3980e5 photons/s,
    2.8514e5 e-/s, and 855.4 e- over 3 ms."""
    cam = get_camera("synthetic")
    assert ebar_from_light(cam, 3e-3, lux=1.0) == pytest.approx(855.4, rel=2e-3)
    assert ebar_from_light(cam, 3e-3, lux=10.0) == pytest.approx(8554, rel=2e-3)
    assert ebar_from_light(cam, 3e-3, ebar=123.0) == 123.0
    # a scene of 1000 cd/m^2 through f/2 and a lens transmitting 90 %: pi x 0.9 x 1000 / 16 = 176.71 lux
    assert ebar_from_light(cam, 3e-3, luminance_cd_m2=1000.0, f_number=2.0, transmission=0.9) == pytest.approx(
        176.71 * 855.4, rel=2e-3)
    assert luminosity(520e-9) == pytest.approx(0.710) and luminosity(525e-9) == pytest.approx(0.786)


def test_light_refusals() -> None:
    cam = get_camera("synthetic")
    with pytest.raises(PlanError, match="exactly one of --ebar, --lux or --luminance"):
        ebar_from_light(cam, 3e-3, ebar=10.0, lux=1.0)
    with pytest.raises(PlanError, match="exactly one"):
        ebar_from_light(cam, 3e-3)
    with pytest.raises(PlanError, match="--luminance needs the lens's --f-number"):
        ebar_from_light(cam, 3e-3, luminance_cd_m2=100.0)
    with pytest.raises(PlanError, match="--lux must be a number > 0"):
        ebar_from_light(cam, 3e-3, lux=-1.0)
    with pytest.raises(PlanError, match="outside the visible"):
        ebar_from_light(cam.replace(wavelength_m=900e-9), 3e-3, lux=1.0)


def test_gyro_rate_to_blur_against_a_simulated_walk() -> None:
    """An independent simulation (numpy): the camera turns about pitch and yaw in a Gaussian random walk of 240
    steps over T = 3 ms whose total angle over T has std omega x T (omega = 40 deg/s: 0.12 deg); the image moves by
    f tan(angle) on each axis (f = 700 px). d-bar is the mean over walks of the largest distance between two
    positions."""
    omega, t, frames, f = 40.0, 3e-3, 241, 700.0
    rng = np.random.default_rng(0)
    steps = rng.normal(0.0, math.radians(omega * t) / math.sqrt(frames - 1), (600, frames - 1, 2))
    paths = f * np.tan(np.concatenate([np.zeros((600, 1, 2)), np.cumsum(steps, axis=1)], axis=1))
    diam = np.mean([np.sqrt(((p[:, None] - p[None]) ** 2).sum(-1)).max() for p in paths])
    got = dbar_from_vibration(gyro_dps=omega, focal_px=f, budget_s=t, frames=frames)
    assert got == pytest.approx(diam, rel=0.05)
    assert dbar_from_vibration(angle_std_deg=omega * t, focal_px=f, budget_s=t, frames=frames) == pytest.approx(got)
    assert dbar_from_vibration(dbar=3.0, budget_s=t, frames=frames) == 3.0
    with pytest.raises(PlanError, match="needs the lens's focal length"):
        dbar_from_vibration(gyro_dps=omega, budget_s=t, frames=frames)
    with pytest.raises(PlanError, match="exactly one of --dbar, --gyro-dps or --angle-std-deg"):
        dbar_from_vibration(dbar=1.0, gyro_dps=1.0, focal_px=f, budget_s=t, frames=frames)


def _record(light: float, dbar: float, seed: int, ebar: float, dbar_px: float, durations: list[float],
            psnr: float, camera: str = "jetcam19m") -> dict[str, Any]:
    starts, t = [], 0.0
    for d in durations:
        starts.append(t)
        t += d + READOUT_US
    return {"white_level_scale": light, "dbar_target": dbar, "seed": seed, "camera": camera,
            "mean_electrons": ebar, "blur_diameter_px": dbar_px, "exposures_us": durations, "starts_us": starts,
            "idle_us": BUDGET_US - t, "budget_us": BUDGET_US, "readout_us": READOUT_US, "psnr": psnr,
            "window_frames": 241, "model": f"light{light:g}_dbar{dbar:g}_seed{seed}/model.pt"}


# the middle exposure falls with light and with shake; seeds 20 us apart
MIDDLE = {(0.25, 2.0): 900.0, (0.25, 8.0): 500.0, (1.0, 2.0): 600.0, (1.0, 8.0): 300.0}
PSNR = {(0.25, 2.0): 24.0, (0.25, 8.0): 22.0, (1.0, 2.0): 28.0, (1.0, 8.0): 26.0}
EBAR = {0.25: 100.0, 1.0: 400.0}


def _grid(path: Path, drop: tuple[float, float] | None = None, camera: str = "jetcam19m") -> Path:
    cells = {}
    for (light, dbar), middle in MIDDLE.items():
        if (light, dbar) == drop:
            continue
        for seed in (0, 1):
            r = _record(light, dbar, seed, EBAR[light], dbar, [300.0, middle + 20 * seed, 200.0],
                        PSNR[(light, dbar)] + 0.2 * seed, camera)
            cells[Path(r["model"]).parent.name] = r
    path.write_text(json.dumps(cells))
    return path


def test_plan_at_the_grids_centre_by_hand(tmp_path: Path) -> None:
    """At (sqrt(100 x 400), sqrt(2 x 8)) = (200 e-, 4 px) the four cells weigh 1/4 each: the middle exposure is the
    mean of the cells' seed means, (910 + 510 + 610 + 310) / 4 = 585 us, the PSNR (24.1 + 22.1 + 28.1 + 26.1) / 4 =
    25.1 dB; the schedule fits the budget."""
    grid = load_grid(_grid(tmp_path / "cells.json"))
    out = plan(grid, 200.0, 4.0, get_camera("synthetic"))
    s = out["schedule"]
    assert s["durations_us"] == pytest.approx([300.0, 585.0, 200.0])
    assert out["expected_psnr_db"] == pytest.approx(25.1)
    assert s["starts_us"] == pytest.approx([0.0, 700.0, 1685.0]) and s["capture_order"] == [1, 2, 3]
    assert sum(s["durations_us"]) + 3 * READOUT_US + s["idle_us"] == pytest.approx(BUDGET_US)
    assert out["distance"]["inside_grid"] and out["distance"]["seed_spread_us"] == pytest.approx([0.0, 20.0, 0.0])
    # the nearest cell's network (lowest seed), named by its path
    near = plan(grid, 120.0, 7.0)
    assert near["merge_model"]["cell"] == "light0.25_dbar8_seed0"
    assert near["merge_model"]["path"] == (tmp_path / "cells/light0.25_dbar8_seed0/model.pt").as_posix()
    assert near["distance"]["e_bar_ratio_to_nearest"] == pytest.approx(1.2)
    # its network learned the brightness of its cell's light (100 e-): a burst at 120 e- is dimmed to it
    assert near["merge_model"]["gain"] == pytest.approx(100 / 120, abs=1e-4)
    # where the merge may be fine-tuned instead: the light scale whose e-bar is 120 e- (the cells' e-bar per light
    # scale, 400 e- at x1), and the point's d-bar
    assert near["merge_model"]["finetune_at"] == {"light": pytest.approx(120 / 400, abs=1e-5), "dbar": 7.0}
    text = summary(out)
    assert "585.0" in text and "expected PSNR 25.10 dB" in text and len(text.splitlines()) <= 20


def test_plan_is_monotone_where_the_grid_is(tmp_path: Path) -> None:
    grid = load_grid(_grid(tmp_path / "cells.json"))
    ebars = np.geomspace(100, 400, 25)
    dbars = np.geomspace(2, 8, 25)
    for d in dbars:
        middles = [plan(grid, e, d)["schedule"]["durations_us"][1] for e in ebars]
        assert all(a >= b for a, b in zip(middles, middles[1:])), d  # darker -> longer, as every cell pair
    for e in ebars:
        middles = [plan(grid, e, d)["schedule"]["durations_us"][1] for d in dbars]
        assert all(a >= b for a, b in zip(middles, middles[1:])), e  # shakier -> shorter
    # on a cell, the cell's own seed mean
    assert plan(grid, 400.0, 2.0)["schedule"]["durations_us"][1] == pytest.approx(610.0)


def test_plan_refuses_what_the_grid_cannot_answer(tmp_path: Path) -> None:
    grid = load_grid(_grid(tmp_path / "cells.json"))
    with pytest.raises(PlanError, match=r"e-bar 800 e- is outside the trained 100-400 e-.*--clamp"):
        plan(grid, 800.0, 4.0)
    with pytest.raises(PlanError, match=r"d-bar 1 px is outside the trained 2-8 px"):
        plan(grid, 200.0, 1.0)
    edge = plan(grid, 800.0, 4.0, clamp=True)  # at the edge, and said so
    assert edge["distance"]["extrapolated"] and edge["working_point"]["e_bar_used"] == 400.0
    assert edge["schedule"]["durations_us"][1] == pytest.approx((610 + 310) / 2)
    assert "EXTRAPOLATED" in summary(edge)
    with pytest.raises(PlanError, match="trained for camera 'jetcam19m', not 'flir_bfs_u3_16s2m'"):
        plan(grid, 200.0, 4.0, get_camera("outdoor"))
    with pytest.raises(DataError, match=r"no cell at \(light, d-bar\) \[\(1.0, 8.0\)\]"):
        load_grid(_grid(tmp_path / "holes.json", drop=(1.0, 8.0)))
    old = tmp_path / "old.json"
    old.write_text(json.dumps({"light1_shake1": {"white_level_scale": 1, "shake_scale": 1}}))
    with pytest.raises(DataError, match="older sweep"):
        load_grid(old)
    with pytest.raises(DataError, match="no trained grid there"):
        load_grid(tmp_path / "none.json")


def test_cli_json_summary_and_one_line_refusals(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cells = _grid(tmp_path / "cells.json")
    base = ["plan", "--camera", "jetcam19m", "--grid", str(cells)]
    assert main([*base, "--lux", "0.2338", "--dbar", "4", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["working_point"]["e_bar"] == pytest.approx(200.0, rel=1e-3)
    assert out["schedule"]["durations_us"][1] == pytest.approx(585.0, abs=0.5)
    assert out["inputs"] == {"lux": 0.2338, "dbar_px": 4.0}
    assert main([*base, "--ebar", "200", "--gyro-dps", "30", "--focal-px", "1500"]) == 0
    text = capsys.readouterr().out
    assert "merge model:" in text and "expected PSNR" in text
    for argv, status, words in (
        ([*base, "--ebar", "5000", "--dbar", "4"], 2, "outside the trained"),
        (["plan", "--camera", "nosuchcam", "--grid", str(cells), "--ebar", "200", "--dbar", "4"], 2,
         "unknown camera 'nosuchcam'"),
        (["plan", "--camera", "jetcam19m", "--grid", str(tmp_path / "none.json"), "--ebar", "200", "--dbar", "4"], 1,
         "no trained grid there"),
        ([*base, "--ebar", "200", "--gyro-dps", "30"], 2, "needs the lens's focal length"),
    ):
        assert main(argv) == status, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: ") and words in err[0], err


def test_a_preset_file_camera(tmp_path: Path) -> None:
    """A `gimbal calibrate` preset names its camera: a grid trained for it answers, another refuses."""
    preset = tmp_path / "mycam.yaml"
    preset.write_text("name: mycam\nwavelength_m: 5.25e-7\npixel_area_m2: 1.0e-11\nquantum_efficiency: 0.6\n"
                      "dark_current_e_per_s: 1.0\nread_noise_e: 2.0\ngain_dn_per_e: 0.3\nfull_well_e: 10000.0\n"
                      "bits: 12\n")
    from gimbal.planning.plan import resolve_camera

    cam = resolve_camera(str(preset))
    assert cam.name == "mycam"
    assert plan(load_grid(_grid(tmp_path / "mine.json", camera="mycam")), 200.0, 4.0, cam)["camera"] == "mycam"
    with pytest.raises(PlanError, match="trained for camera 'jetcam19m', not 'mycam'"):
        plan(load_grid(_grid(tmp_path / "cells.json")), 200.0, 4.0, cam)
    with pytest.raises(ParamError):
        resolve_camera(str(tmp_path / "missing.yaml"))
