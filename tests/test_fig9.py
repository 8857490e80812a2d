"""Paper Fig. 9 (noise x blur): d-bar against random-walk theory, e-bar by hand, the trend, and the report."""

from __future__ import annotations

import dataclasses
import json
import math
import re
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from PIL import Image
from shard_fixtures import make_interp

from gimbal.config import parse_config
from gimbal.data.augment import AugmentConfig
from gimbal.data.irradiance import Scenes
from gimbal.data.shards import ShardConfig, build_shards
from gimbal.fig9 import blur_diameter_px, cell_config, cell_name, fig9_report, score_cell, trend
from gimbal.system import GimbalSystem, save_system

REPO = Path(__file__).resolve().parents[1]


def test_blur_diameter_matches_the_expected_range_of_a_random_walk() -> None:
    """Yaw only: the principal point moves by fx tan(yaw) along x, and yaw is a Gaussian random walk of F - 1 steps
    of std s. The expected range of such a walk is s (sqrt(8 n / pi) + 2 zeta(1/2) / sqrt(2 pi)) for large n
    (Siegmund's correction of the Brownian sqrt(8 t / pi); zeta(1/2) = -1.4603545)."""
    aug = AugmentConfig(crop=128, center=64, out_size=32, shake_std_deg=(0.0, 0.0, 0.01), shake_focal_net_px=None)
    frames, s = 241, math.radians(0.01)
    rng = s * (math.sqrt(8 * (frames - 1) / math.pi) + 2 * -1.4603545 / math.sqrt(2 * math.pi))
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


def test_cell_config_scales_light_and_shake_only() -> None:
    cfg = parse_config(yaml.safe_load((REPO / "params.yaml").read_text()))
    cell = cell_config(cfg, 0.25, 2.0)
    assert cell.augment.white_level == pytest.approx(tuple(0.25 * w for w in cfg.augment.white_level))
    assert cell.augment.shake_std_deg == pytest.approx(tuple(2 * s for s in cfg.augment.shake_std_deg))
    assert dataclasses.replace(cell, augment=cfg.augment) == cfg
    assert cell_name(0.25, 2.0) == "light0.25_shake2" and cell_name(1.0, 0.5) == "light1_shake0.5"


def _cell(light: float, shake: float, middle: float) -> dict[str, Any]:
    return {"white_level_scale": light, "shake_scale": shake, "exposures_us": [500.0, middle, 500.0]}


def test_trend_counts_neighbouring_pairs_that_move_the_papers_way() -> None:
    # middle exposure = 1000 / light / shake: longer when darker, shorter when shakier, everywhere
    cells = [_cell(lt, s, 1000 / lt / s) for lt in (0.25, 1, 4) for s in (0.5, 1, 2)]
    assert trend(cells) == {"darker_longer": [6, 6], "shakier_shorter": [6, 6]}
    # light 1, shake 1 far too long: now longer than its darker neighbour's (4000 us) and than its less shaky
    # neighbour's (2000 us): one pair broken each way; the pairs with its brighter and shakier neighbours still hold
    cells[4]["exposures_us"][1] = 10_000.0
    assert trend(cells) == {"darker_longer": [5, 6], "shakier_shorter": [5, 6]}


def test_score_cell_counts_electrons_at_full_exposure() -> None:
    """A flat scene of 1e5 e-/s over the 3 ms budget: e-bar = 300 e- (by hand); the scores are finite."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["model"].update(kpn_depth=1, flow_levels=2)
    system = GimbalSystem.from_params(params)
    cfg = parse_config(params)
    irr = torch.full((2, 9, 1, 16, 16), 1e5)
    scenes = [Scenes(irr, torch.full((2, 1, 16, 16), 0.5))]
    out = score_cell(system, cfg, scenes, seed=1)
    assert out["mean_electrons"] == pytest.approx(1e5 * 3e-3, rel=1e-6)
    assert math.isfinite(out["psnr"]) and math.isfinite(out["psnr_full_exposure"])
    assert set(out["images"]) == {"full_exposure", "output", "ground_truth"}


def test_report_writes_one_object_per_cell_and_the_figures(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    index, _ = make_interp(tmp_path / "interp", {"a": "train", "b": "val", "c": "test"}, clips_per_video=2,
                           frames=9, h=48, w=48)
    build_shards(index, tmp_path / "shards", ShardConfig(clips_per_shard=2), progress=False)
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["augment"].update(crop=32, center=16, out_size=16)
    params["model"].update(kpn_depth=1, flow_levels=2)
    params["train"].update(loader="torch", device="cpu")
    params["eval"].update(clips=2, batch_size=2)
    cells = [(0.25, 1.0), (1.0, 1.0), (1.0, 2.0)]
    for light, shake in cells:
        save_system(tmp_path / "cells" / cell_name(light, shake) / "model.pt", GimbalSystem.from_params(params),
                    params, "gimbal")
    monkeypatch.chdir(tmp_path)  # the stage's paths: relative to the repository root, two folders down
    sweep = Path("sweeps/fig9")
    out = fig9_report(parse_config(params), cells, tmp_path / "shards", tmp_path / "cells",
                      metrics_path=sweep / "metrics.json", figure=sweep / "fig9.png",
                      heatmaps=sweep / "heatmaps.png", report=sweep / "report.md", progress=False)
    written = json.loads((sweep / "metrics.json").read_text())
    assert written == out and len(written) == 3
    keys = {"white_level_scale", "shake_scale", "mean_electrons", "blur_diameter_px", "psnr", "exposures_us"}
    assert all(keys <= set(c) for c in written)
    by = {(c["white_level_scale"], c["shake_scale"]): c for c in written}
    # four times the light, four times the electrons (same scenes, same seed); the blur follows the shake only
    assert by[(1.0, 1.0)]["mean_electrons"] == pytest.approx(4 * by[(0.25, 1.0)]["mean_electrons"], rel=0.02)
    assert by[(1.0, 1.0)]["blur_diameter_px"] == by[(0.25, 1.0)]["blur_diameter_px"]
    assert by[(1.0, 2.0)]["blur_diameter_px"] > by[(1.0, 1.0)]["blur_diameter_px"]
    for png in ("fig9.png", "heatmaps.png"):
        with Image.open(sweep / png) as im:
            assert im.size[0] > 400 and im.size[1] > 200
    report = (sweep / "report.md").read_text()
    assert "neighbouring pairs" in report
    links = re.findall(r"!\[[^]]*\]\(([^)]+)\)", report)  # the figures, linked from the report's own folder
    assert len(links) == 2 and all((sweep / link).is_file() for link in links), links
