"""Paper Fig. 9 (noise x blur): d-bar against random-walk theory, e-bar and clipping by hand, the trends against the
seed spread, the report, and the sweep's stages end to end on a tiny grid."""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import math
import re
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from PIL import Image
from shard_fixtures import make_interp, training_shards

from gimbal.config import load_config, parse_config
from gimbal.data.augment import AugmentConfig, to_irradiance
from gimbal.data.irradiance import Scenes
from gimbal.data.shards import ShardConfig, build_shards
from gimbal.errors import ParamError
from gimbal.planning.fig9 import (
    blur_diameter_px,
    cell_config,
    cell_name,
    fig9_report,
    read_grid,
    score_cell,
    trend,
)
from gimbal.planning.working_point import clipped_fraction
from gimbal.sensor.camera import get_camera
from gimbal.system import GimbalSystem, save_system

REPO = Path(__file__).resolve().parents[1]
SIEGMUND = 2 * -1.4603545 / math.sqrt(2 * math.pi)  # the discrete correction of a random walk's expected range


def test_blur_diameter_matches_the_expected_range_of_a_random_walk() -> None:
    """Yaw only: the principal point moves by fx tan(yaw) along x, and yaw is a Gaussian random walk of F - 1 steps
    of std s. The expected range of such a walk is s (sqrt(8 n / pi) + 2 zeta(1/2) / sqrt(2 pi)) for large n
    (Siegmund's correction of the Brownian sqrt(8 t / pi); zeta(1/2) = -1.4603545)."""
    aug = AugmentConfig(crop=128, center=64, out_size=32, shake_std_deg=(0.0, 0.0, 0.01), shake_focal_net_px=None)
    frames, s = 241, math.radians(0.01)
    rng = s * (math.sqrt(8 * (frames - 1) / math.pi) + SIEGMUND)
    fx = 5480.68 * 128 / 1920  # the crop-scaled focal length (released intrinsics)
    expected = fx * math.tan(rng) * 32 / 64
    assert blur_diameter_px(aug, frames, draws=4000, seed=3) == pytest.approx(expected, rel=0.03)
    # the focal length set in network pixels (the default: the authors' training crop's, 730.76 px)
    net = dataclasses.replace(aug, shake_focal_net_px=730.76)
    assert blur_diameter_px(net, frames, draws=4000, seed=3) == pytest.approx(730.76 * math.tan(rng), rel=0.03)
    # twice the shake, twice the blur; no shake, no blur
    doubled = dataclasses.replace(aug, shake_std_deg=(0.0, 0.0, 0.02))
    assert blur_diameter_px(doubled, frames, draws=4000, seed=3) == pytest.approx(2 * expected, rel=0.03)
    assert blur_diameter_px(dataclasses.replace(aug, shake_std_deg=(0.0, 0.0, 0.0)), frames) == 0.0


def _params() -> dict[str, Any]:
    return yaml.safe_load((REPO / "params.yaml").read_text())


def test_cell_config_sets_light_blur_and_seed_only() -> None:
    cfg = parse_config(_params())
    cell = cell_config(cfg, 0.25, 16.0, 1, frames=241)
    assert cell.augment.white_level == pytest.approx(tuple(0.25 * w for w in cfg.augment.white_level))
    assert cell.seed == 1
    assert blur_diameter_px(cell.augment, 241) == pytest.approx(16.0, rel=1e-9)  # the axis is d-bar itself
    assert cell.augment.shake_std_deg == cfg.augment.shake_std_deg  # the angles stay the authors'
    back = dataclasses.replace(cell, augment=dataclasses.replace(
        cell.augment, white_level=cfg.augment.white_level, shake_focal_net_px=cfg.augment.shake_focal_net_px), seed=0)
    assert back == cfg
    assert cell_name(0.25, 2.5, 0) == "light0.25_dbar2.5_seed0" and cell_name(1.0, 16.0) == "light1_dbar16"
    with pytest.raises(ParamError, match="d-bar must be > 0"):
        cell_config(cfg, 1.0, 0.0, 0, 241)
    with pytest.raises(ParamError, match="light scale must be > 0"):
        cell_config(cfg, 0.0, 2.0, 0, 241)


def test_cell_config_focal_length_against_random_walk_theory() -> None:
    """Yaw only, F = 241 frames: d-bar = f tan(range of the yaw walk); the focal length the cell sets for a d-bar of
    10 px is 10 / tan(the expected range) (Siegmund's formula), whatever the focal length it started from."""
    aug = AugmentConfig(shake_std_deg=(0.0, 0.0, 0.01), shake_focal_net_px=None)
    cfg = dataclasses.replace(parse_config(_params()), augment=aug)
    rng = math.radians(0.01) * (math.sqrt(8 * 240 / math.pi) + SIEGMUND)
    assert cell_config(cfg, 1.0, 10.0, 0, 241).augment.shake_focal_net_px == pytest.approx(10 / math.tan(rng),
                                                                                          rel=0.05)


def test_the_committed_grid_spans_the_papers_regime_without_clipping() -> None:
    """sweeps/fig9/params.yaml: d-bar from about 1 to about 16 px in 4 levels or more, the default's d-bar (241
    frames) inside; 2 seeds or more; and at every light level a full exposure of an sRGB white (the brightest pixel
    a scene has) at the top of the white level stays in the sensor's linear range; 4x light would not."""
    grid = read_grid(REPO / "sweeps/fig9/params.yaml")
    assert len(grid.dbars) >= 4 and min(grid.dbars) <= 1.2 and max(grid.dbars) >= 14
    assert len(grid.seeds) >= 2 and len(grid.cells()) == len(grid.lights) * len(grid.dbars) * len(grid.seeds)
    cfg = parse_config(_params())
    default = blur_diameter_px(cfg.augment, 241)
    assert min(grid.dbars) < default < max(grid.dbars) and 5 < default < 6
    camera = cfg.sensor.spec()
    white = torch.ones(1, 241, 1, 2, 2)
    for light in grid.lights:
        lit = (light * cfg.augment.white_level[1],) * 2
        assert clipped_fraction([to_irradiance(white, camera, lit)], camera) == 0.0, light
    lit = (4 * cfg.augment.white_level[1],) * 2
    assert clipped_fraction([to_irradiance(white, camera, lit)], camera) == 1.0
    assert set(grid.heldout) and all(min(grid.lights) < li < max(grid.lights) and
                                     min(grid.dbars) < d < max(grid.dbars) for li, d, _ in grid.heldout.values())


def test_read_grid_refuses_a_bad_file(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    path.write_text("lights: [1, 1]\ndbars: [1]\nseeds: [0]\n")
    with pytest.raises(ParamError, match=r"params.yaml: 'lights' must be a list of distinct numbers"):
        read_grid(path)
    path.write_text("lights: [1]\ndbars: [1]\nseeds: [0.5]\n")
    with pytest.raises(ParamError, match="'seeds' must be integers"):
        read_grid(path)
    with pytest.raises(ParamError, match="missing"):
        read_grid(tmp_path / "none.yaml")
    path.write_text("lights: [1]\ndbars: [1]\nseeds: [0]\nfinetune_step: 200\n")
    with pytest.raises(ParamError, match=r"unknown key\(s\) \['finetune_step'\]"):
        read_grid(path)
    path.write_text("lights: [1]\ndbars: [1]\nseeds: [0]\nfinetune_steps: 0\n")
    with pytest.raises(ParamError, match="'finetune_steps' must be an integer >= 1"):
        read_grid(path)
    path.write_text("lights: [1]\ndbars: [1]\nseeds: [0]\nfinetune_steps: 200\n")
    assert read_grid(path).finetune_steps == 200


def test_clipped_fraction_by_hand() -> None:
    """JetCam19M over 3 ms: tau1 = 0.9 x 12273.8 = 11046 e-. A pixel at 3e6 e-/s collects 9000 e- (in range), one at
    4e6 e-/s 12000 e- (past tau1): one of four pixels clips."""
    cam = get_camera("synthetic")
    irr = torch.full((1, 5, 1, 2, 2), 3e6)
    irr[..., 0, 0] = 4e6
    assert clipped_fraction([irr], cam) == 0.25
    assert clipped_fraction([torch.full((1, 5, 1, 2, 2), 3e6)], cam) == 0.0


def _cell(light: float, dbar: float, seed: int, middle: float) -> dict[str, Any]:
    return {"white_level_scale": light, "dbar_target": dbar, "seed": seed, "exposures_us": [500.0, middle, 500.0]}


def test_trend_is_tested_against_the_seed_spread() -> None:
    lights, dbars = (0.0625, 0.25, 1.0), (1.0, 2.5, 6.0, 16.0)
    # middle exposure = 1000 / light^0.5 / dbar^0.5, seeds 10 us apart: both trends far beyond the seed spread
    cells = [_cell(li, d, s, 1000 / math.sqrt(li * d) + 10 * s) for li in lights for d in dbars for s in (0, 1)]
    out = trend(cells)
    assert out["darker_longer"]["verdict"] == "holds" and out["shakier_shorter"]["verdict"] == "holds"
    assert out["seed_spread_us"]["max"] == pytest.approx(10.0)
    assert out["darker_longer"]["pairs"] == [8, 8] and out["shakier_shorter"]["pairs"] == [9, 9]
    assert len(out["darker_longer"]["changes_us"]) == 8  # 4 d-bar levels x 2 seeds, each paired
    # the seeds disagree by more than the change across the light axis: not shown
    noisy = [_cell(li, d, s, 1000 / math.sqrt(d) + (0.1 / li + 3000 * s)) for li in lights for d in dbars
             for s in (0, 1)]
    assert trend(noisy)["darker_longer"]["verdict"] == "within seed spread"
    assert trend(noisy)["shakier_shorter"]["verdict"] == "within seed spread"
    # brighter -> longer, beyond the spread: reversed
    rev = [_cell(li, d, s, 1000 * li + s) for li in lights for d in dbars for s in (0, 1)]
    assert trend(rev)["darker_longer"]["verdict"] == "reversed"
    # one seed per cell: no spread, no test
    assert trend([c for c in cells if c["seed"] == 0])["darker_longer"]["verdict"] == "untested"


def test_score_cell_counts_electrons_and_clipping_at_full_exposure() -> None:
    """A flat scene of 1e5 e-/s over the 3 ms budget: e-bar = 300 e- (by hand), nothing clips; at 1e7 e-/s (30000
    e-) every pixel does."""
    params = _params()
    params["model"].update(kpn_depth=1, flow_levels=2)
    system = GimbalSystem.from_params(params)
    cfg = parse_config(params)
    irr = torch.full((2, 9, 1, 16, 16), 1e5)
    out = score_cell(system, cfg, [Scenes(irr, torch.full((2, 1, 16, 16), 0.5))], seed=1)
    assert out["mean_electrons"] == pytest.approx(1e5 * 3e-3, rel=1e-6) and out["clipped_fraction"] == 0.0
    assert math.isfinite(out["psnr"]) and math.isfinite(out["psnr_full_exposure"])
    assert set(out["images"]) == {"full_exposure", "output", "ground_truth"}
    bright = score_cell(system, cfg, [Scenes(100 * irr, torch.full((2, 1, 16, 16), 0.5))], seed=1)
    assert bright["clipped_fraction"] == 1.0


def test_report_writes_one_object_per_cell_and_the_figures(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    index, _ = make_interp(tmp_path / "interp", {"a": "train", "b": "val", "c": "test"}, clips_per_video=2,
                           frames=9, h=48, w=48)
    build_shards(index, tmp_path / "shards", ShardConfig(clips_per_shard=2), progress=False)
    params = _params()
    params["augment"].update(crop=32, center=16, out_size=16)
    params["model"].update(kpn_depth=1, flow_levels=2)
    params["train"].update(loader="torch", device="cpu")
    params["eval"].update(clips=2, batch_size=2)
    cells = [(0.25, 1.0, 0), (0.25, 1.0, 1), (1.0, 1.0, 0), (1.0, 4.0, 0)]
    for light, dbar, seed in cells:
        save_system(tmp_path / "cells" / cell_name(light, dbar, seed) / "model.pt", GimbalSystem.from_params(params),
                    params, "gimbal")
    monkeypatch.chdir(tmp_path)  # the stage's paths: relative to the repository root, two folders down
    sweep = Path("sweeps/fig9")
    out = fig9_report(parse_config(params), cells, tmp_path / "shards", tmp_path / "cells",
                      metrics_path=sweep / "metrics.json", figure=sweep / "fig9.png",
                      heatmaps=sweep / "heatmaps.png", report=sweep / "report.md", progress=False)
    written = json.loads((sweep / "metrics.json").read_text())
    assert written == out and len(written) == 4
    keys = {"white_level_scale", "dbar_target", "seed", "mean_electrons", "blur_diameter_px", "clipped_fraction",
            "psnr", "exposures_us", "starts_us", "idle_us", "model", "camera", "window_frames"}
    assert all(keys <= set(c) for c in written)
    by = {(c["white_level_scale"], c["dbar_target"], c["seed"]): c for c in written}
    # four times the light, four times the electrons (same scenes, same seed); d-bar is the cell's, over 9 frames
    assert by[(1.0, 1.0, 0)]["mean_electrons"] == pytest.approx(4 * by[(0.25, 1.0, 0)]["mean_electrons"], rel=0.02)
    assert by[(1.0, 4.0, 0)]["blur_diameter_px"] == pytest.approx(4.0, rel=1e-3)
    assert by[(0.25, 1.0, 1)]["blur_diameter_px"] == pytest.approx(1.0, rel=1e-3)
    assert all(c["window_frames"] == 9 and c["clipped_fraction"] == 0.0 for c in written)
    for png in ("fig9.png", "heatmaps.png"):
        with Image.open(sweep / png) as im:
            assert im.size[0] > 400 and im.size[1] > 200
    report = (sweep / "report.md").read_text()
    assert "seed spread" in report and "| x0.25 | 1.00 | 1 |" in report
    links = re.findall(r"!\[[^]]*\]\(([^)]+)\)", report)  # the figures, linked from the report's own folder
    assert len(links) == 2 and all((sweep / link).is_file() for link in links), links


def _stage(name: str) -> Any:
    spec = importlib.util.spec_from_file_location(f"stage_{name}", REPO / "stages" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(name: str, **args: Any) -> None:
    """Stage ``name``'s ``main`` on the params file of the current folder, with ``args`` as its command line gives."""
    module = _stage(name)
    module.main(load_config("params.yaml", module.USES), argparse.Namespace(**args))


def test_the_sweep_end_to_end_on_a_tiny_grid(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The stages as dvc.yaml runs them, on the tiny shards: a 2 x 1 grid (one seed) and a held-out point between its
    cells trained a step each, the report, the held-out validation and `gimbal plan` on the report's cells.json."""
    shards = training_shards(tmp_path / "data")
    params = _params()
    params["augment"].update(crop=24, center=16, out_size=16)
    params["model"].update(flow_levels=2, kpn_base_channels=4, kpn_depth=1)
    params["train"].update(steps=1, batch_size=2, val_every=1, val_clips=2, checkpoint_every=1, samples_per_clip=1,
                           loader="torch", device="cpu")
    params["eval"].update(clips=2, batch_size=2)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    grid = {"camera": "", "lights": [0.25, 1], "dbars": [2], "seeds": [0],
            "heldout": {"a": {"light": 0.5, "dbar": 2, "seed": 0}}, "finetune_steps": 1}
    (sweep / "params.yaml").write_text(yaml.safe_dump(grid))
    monkeypatch.chdir(tmp_path)
    for light in grid["lights"]:
        for dbar in grid["dbars"]:
            _run("fig9_train", light=light, dbar=dbar, seed=0, camera="", shards=shards, cells="sweep/cells",
                 init_model="", exposures_us=None, steps=None)
    _run("fig9_train", light=0.5, dbar=2, seed=0, camera="", shards=shards, cells="sweep/heldout", init_model="",
         exposures_us=None, steps=None)
    _run("fig9_report", grid="sweep/params.yaml", shards=shards, cells="sweep/cells", metrics="sweep/metrics.json",
         by_cell="sweep/cells.json", figure="sweep/fig9.png", heatmaps="sweep/heatmaps.png", report="sweep/report.md")
    cells = json.loads((sweep / "cells.json").read_text())
    assert sorted(cells) == [cell_name(0.25, 2, 0), cell_name(1, 2, 0)]
    _run("fig9_finetune", light=0.5, dbar=2, seed=0, steps=1, camera="", shards=shards, cells_json="sweep/cells.json",
         cells="sweep/cells", out="sweep/finetuned")
    tuned_plan = json.loads((sweep / "finetuned" / cell_name(0.5, 2, 0) / "plan.json").read_text())
    assert tuned_plan["merge_model"]["cell"] in cells
    _run("fig9_validate", grid="sweep/params.yaml", shards=shards, cells_json="sweep/cells.json", cells="sweep/cells",
         heldout="sweep/heldout", out="sweep/validation.json", report="sweep/validation.md", finetuned="sweep/finetuned")
    val = json.loads((sweep / "validation.json").read_text())
    (point,) = val["points"]
    assert point["merge_model"] in cells and len(point["planned_exposures_us"]) == 3
    assert point["psnr_checked"] == "fine-tuned merge" and [d["seed"] for d in point["finetuned"]] == [0]
    assert point["planned_exposures_us"] == pytest.approx(tuned_plan["schedule"]["durations_us"], abs=0.11)
    # the grid's e-bar at x0.5 light (from the cells' e-bar per light scale) is the one measured on the point's scenes
    from gimbal.planning.plan import ebar_at_light, load_grid

    assert ebar_at_light(load_grid(sweep / "cells.json"), 0.5) == pytest.approx(point["e_bar"], rel=1e-3)
    assert isinstance(point["psnr_within_0_5_db"], bool) and "| x0.5 |" in (sweep / "validation.md").read_text()
    from gimbal.cli import main

    ebars = sorted(c["mean_electrons"] for c in cells.values())
    assert main(["plan", "--camera", "jetcam19m", "--grid", "sweep/cells.json", "--ebar", str(ebars[0] * 1.5),
                 "--dbar", "2", "--json"]) == 0
    assert main(["plan", "--camera", "jetcam19m", "--grid", "sweep/cells.json", "--ebar", str(ebars[0] / 2),
                 "--dbar", "2"]) == 2  # outside the grid: refused


def test_fixed_schedule_holds_the_given_exposures_and_fits_the_budget() -> None:
    """A planned schedule fixed into a cell: the sensor exposes exactly those durations, the idle time is what the
    budget leaves (T - n x readout - the durations, by hand), and a sum over the free time by the plan's rounding is
    scaled onto it; a wrong count is refused."""
    from gimbal.planning.finetune import fixed_schedule
    from gimbal.system import build_sensor

    cfg = parse_config(_params())
    cam = build_sensor(cfg, learn_exposure=False).camera
    fixed = fixed_schedule(cfg, [700.0, 700.0, 250.0])
    assert fixed.model.learn_exposure is False
    report = build_sensor(fixed, learn_exposure=False).schedule_us()
    assert report["durations_us"] == pytest.approx([700.0, 700.0, 250.0], abs=1e-3)
    free_us = (cam.budget_s - 3 * cam.readout_s) * 1e6
    assert report["idle_us"] == pytest.approx(free_us - 1650.0, abs=1e-3)
    over = fixed_schedule(cfg, [free_us / 3 + 0.1] * 3)  # the plan's 0.1 us rounding
    assert sum(over.exposure.init_us) == pytest.approx(free_us, rel=1e-12)
    with pytest.raises(ParamError, match="exposure.n = 3"):
        fixed_schedule(cfg, [700.0, 700.0])
