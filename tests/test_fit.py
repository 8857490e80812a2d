"""The loop's messages of a divergence and of an interrupt (:mod:`gimbal.training.loop`): one line, where a rerun
resumes."""

from __future__ import annotations

from pathlib import Path

import torch

from gimbal.checkpoint import Resumable
from gimbal.errors import DivergenceError, Interrupted
from gimbal.training.loop import Divergence, diverged, interrupted


def test_an_interrupt_says_where_a_rerun_resumes(tmp_path: Path) -> None:
    run = Resumable(tmp_path / "last.pt", "fp", torch.Generator())
    first = interrupted("train toy", 1, run)
    assert isinstance(first, Interrupted) and isinstance(first, KeyboardInterrupt)
    assert str(first) == (f"train toy: interrupted at step 1; `dvc repro` resumes from step 0 (no checkpoint yet) "
                          f"({tmp_path / 'last.pt'})")
    run.save(4, {"w": torch.zeros(1)})
    assert str(interrupted("train toy", 6, run)) == (
        f"train toy: interrupted at step 6; `dvc repro` resumes from step 4 ({tmp_path / 'last.pt'})")


def test_a_divergence_is_one_line_naming_terms_rates_checkpoint_and_fix(tmp_path: Path) -> None:
    run = Resumable(tmp_path / "last.pt", "fp", torch.Generator())
    why = Divergence(["burst", "network output"], {"train.lr": 1e-3, "train.exposure_lr": None}, "lower train.lr")
    err = diverged("train toy", 3, float("nan"), why, run)
    assert isinstance(err, DivergenceError)
    assert str(err) == ("train toy: loss became nan at step 3 (non-finite: burst, network output); learning rates "
                        "train.lr = 0.001; no checkpoint was written before it; lower train.lr")
    run.save(2, {"w": torch.zeros(1)})
    msg = str(diverged("train toy", 5, float("inf"), Divergence([], {"train.lr": 2e-4}, "fix it"), run))
    assert "\n" not in msg and "non-finite: no single term (their sum overflowed)" in msg
    assert f"the last good checkpoint {tmp_path / 'last.pt'} (step 2) is kept" in msg
