"""The choice on val of an annealed run: no checkpoint before the annealed term (eq. 18) has decayed."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
from shard_fixtures import training_shards
from test_train import _run, _scripted_validation, tiny_params


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return training_shards(tmp_path_factory.mktemp("select_shards"))


def test_an_annealed_run_keeps_no_checkpoint_before_the_crossover(shards: Path, tmp_path: Path, monkeypatch) -> None:
    """gimbal_anneal over 8 steps with its crossover at 0.4 (beta alpha^t = 1 at step 3.2), validated at steps 2,
    4, 6, 8 with val PSNRs 30, 10, 20, 15 dB: the best is step 2, before the crossover, so step 6 is kept; with
    train.select_after_anneal off, step 2. A model without the annealed term keeps step 2 either way."""
    p = tiny_params()
    p["train"].update(steps=8, samples_per_clip=2, val_every=2, checkpoint_every=8, min_kernel_change=0.0)
    p["variants"]["gimbal_anneal"]["loss"] = {"anneal": True, "anneal_crossover": 0.4}
    assert p["train"].get("select_after_anneal", True) is True  # the default is on
    _scripted_validation(monkeypatch, [30.0, 10.0, 20.0, 15.0])
    metrics = _run(copy.deepcopy(p), "gimbal_anneal", shards, tmp_path / "after")
    assert metrics["selected_step"] == 6 and metrics["val_psnr"] == 20.0

    off = copy.deepcopy(p)
    off["train"]["select_after_anneal"] = False
    _scripted_validation(monkeypatch, [30.0, 10.0, 20.0, 15.0])
    assert _run(off, "gimbal_anneal", shards, tmp_path / "off")["selected_step"] == 2

    _scripted_validation(monkeypatch, [30.0, 10.0, 20.0, 15.0])
    assert _run(copy.deepcopy(p), "gimbal", shards, tmp_path / "plain")["selected_step"] == 2


def test_the_crossover_step_itself_is_eligible(shards: Path, tmp_path: Path, monkeypatch) -> None:
    """Crossover 0.5 of 8 steps: beta alpha^4 = 1 exactly (up to rounding), so the validation at step 4 counts."""
    p = tiny_params()
    p["train"].update(steps=8, samples_per_clip=2, val_every=2, checkpoint_every=8, min_kernel_change=0.0)
    p["variants"]["gimbal_anneal"]["loss"] = {"anneal": True, "anneal_crossover": 0.5}
    _scripted_validation(monkeypatch, [30.0, 25.0, 10.0, 15.0])
    assert _run(p, "gimbal_anneal", shards, tmp_path / "x")["selected_step"] == 4
