"""experiments/seed_spread.py: Table 3 effects pooled over training seeds, rows from the table of methods."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from gimbal import methods

REPO = Path(__file__).resolve().parents[1]


def _module():
    spec = importlib.util.spec_from_file_location("seed_spread", REPO / "experiments/seed_spread.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _csv(scores: dict[str, list[float]], videos: list[str]) -> str:
    lines = ["clip,clip_id,kind,method,psnr,ssim,video"]
    for method, xs in scores.items():
        lines += [f"{i},c{i},real,{method},{x:.4f},0.5,{videos[i]}" for i, x in enumerate(xs)]
    return "\n".join(lines) + "\n"


def test_lists_come_from_the_table_of_methods() -> None:
    mod = _module()
    assert mod.METHODS == methods.scored() and mod.BURST_MODELS == methods.burst()
    assert mod.TABLE3["gimbal_anneal_no_flow"][0] == "gimbal_anneal" and "gimbal_uniform_centred" in mod.METHODS
    assert mod.LABELS["gimbal"] == methods.label("gimbal")


def test_pooled_effect_is_the_seed_mean_per_clip_with_a_video_interval() -> None:
    """Two seeds, four clips of two videos (a, b, a, b): flow effects [1, 1, 1, 1] and [0, 2, 0, 2] pool to
    [0.5, 1.5, 0.5, 1.5] per clip (mean 1.0; video means 0.5 and 1.5, the ends of the interval); the annealed loss is added by its row, so its effect is gimbal_anneal - gimbal; the flow
    under the anneal is paired with gimbal_anneal. Rows whose models a seed lacks are left out."""
    mod = _module()
    videos = ["a", "b", "a", "b"]
    seed0 = mod.per_clip(_csv({"gimbal": [30, 30, 30, 30], "gimbal_no_flow": [29, 29, 29, 29],
                               "gimbal_anneal": [31, 31, 31, 31], "gimbal_anneal_no_flow": [30, 29, 30, 29]}, videos))
    seed1 = mod.per_clip(_csv({"gimbal": [30, 31, 30, 31], "gimbal_no_flow": [30, 29, 30, 29],
                               "gimbal_anneal": [29, 29, 29, 29], "gimbal_anneal_no_flow": [29, 28, 29, 28]}, videos))
    assert seed0["gimbal"]["videos"] == videos
    pooled = mod.pooled_effects([seed0, seed1])
    flow = pooled["gimbal_no_flow"]
    assert flow["effect"] == pytest.approx(1.0) and flow["seeds"] == 2
    assert flow["effect_lo"] == pytest.approx(0.5) and flow["effect_hi"] == pytest.approx(1.5)  # video means 0.5, 1.5
    # anneal - gimbal: [+1, +1, +1, +1] and [-1, -2, -1, -2] pool to [0, -0.5, 0, -0.5]
    assert pooled["gimbal_anneal"]["effect"] == pytest.approx(-0.25)
    anneal_flow = pooled["gimbal_anneal_no_flow"]
    assert anneal_flow["base"] == "gimbal_anneal" and anneal_flow["effect"] == pytest.approx(1.0)
    assert anneal_flow["effect_lo"] == pytest.approx(0.5) and anneal_flow["effect_hi"] == pytest.approx(1.5)
    assert "gimbal_uniform" not in pooled and "gimbal_no_norm" not in pooled
