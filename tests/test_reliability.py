"""Bad values refused when params are parsed, divergence and interrupts as one line, full disks named,
strictly positive exposures, one thread budget per process (issue 19)."""

from __future__ import annotations

import copy
import errno
import math
import re
import sys
from pathlib import Path

import pytest
import torch
import yaml

from gimbal.config import parse_config
from gimbal.errors import DiskFullError, DivergenceError, ParamError
from gimbal.sensor.exposure import Exposure

REPO = Path(__file__).resolve().parents[1]


def _params() -> dict:
    return yaml.safe_load((REPO / "params.yaml").read_text())


def _with(path: str, value) -> dict:
    params = _params()
    node = params
    *parents, last = path.split(".")
    for key in parents:
        node = node[key]
    node[last] = value
    return params


@pytest.mark.parametrize(("key", "value"), [
    ("train.lr", math.nan), ("train.lr", math.inf), ("train.exposure_lr", math.nan), ("loss.mu", math.nan),
    ("augment.white_level", [0.018, math.inf]), ("sensor.tau_min", -math.inf),
])
def test_non_finite_numbers_are_refused_by_name(key: str, value) -> None:
    pattern = "'" + re.escape(key) + r"(\[\d\])?' must be a finite number"
    with pytest.raises(ParamError, match=pattern):
        parse_config(_with(key, value))


def test_negative_seed_is_refused() -> None:
    with pytest.raises(ParamError, match=r"'seed' must be an int in \[0, 2\*\*32\)"):
        parse_config(_with("seed", -1))


@pytest.mark.parametrize(("key", "value", "match"), [
    ("augment.intrinsics_size", [0, 0], r"augment\.intrinsics_size"),
    ("augment.intrinsics", [0.0, 5494.67, 1020.3, 516.23], r"augment\.intrinsics"),
    ("augment.white_level", [0.0, 0.02], r"augment\.white_level"),
    ("augment.window_frames", 1, r"augment\.window_frames"),
])
def test_zero_sizes_are_refused(key: str, value, match: str) -> None:
    with pytest.raises(ParamError, match=match):
        parse_config(_with(key, value))


@pytest.mark.parametrize(("overrides", "match"), [
    ({"budget_s": "abc"}, r"'sensor\.overrides\.budget_s' must be a number, got 'abc'"),
    ({"bits": 12.5}, r"'sensor\.overrides\.bits' must be an int"),
    ({"dark_subtraction": "yes"}, r"'sensor\.overrides\.dark_subtraction' must be true or false"),
    ({"budget_sec": 0.004}, r"unknown key 'budget_sec' in 'sensor\.overrides'; did you mean 'budget_s'"),
    ("budget_s", r"'sensor\.overrides' must be a mapping"),
    ({"budget_s": -1}, r"'sensor\.overrides\.budget_s' = -1\.0: camera '.*': budget_s must be > 0"),
])
def test_sensor_overrides_are_checked_by_key(overrides, match: str) -> None:
    """`sensor.overrides: {budget_s: abc}` was "internal error: TypeError", naming no key."""
    with pytest.raises(ParamError, match=match):
        parse_config(_with("sensor.overrides", overrides))
    assert parse_config(_with("sensor.overrides", {"budget_s": 4})).sensor.spec().budget_s == 4.0


def test_exposures_at_or_below_zero_or_dt_min_are_refused() -> None:
    with pytest.raises(ParamError, match=r"exposure\.init_us.*> 0"):
        parse_config(_with("exposure.init_us", [0, 500, 500]))
    params = _with("exposure.init_us", [2, 500, 500])  # outdoor: FLIR BFS-U3-16S2M, dt_min 4 us
    params["sensor"]["experiment"] = "outdoor"
    with pytest.raises(ParamError, match=r"exposure\.init_us.*2.*shorter than.*4"):
        parse_config(params)


def test_flow_levels_against_the_crop_are_refused() -> None:
    """`model.flow_levels: 10` on 32 px crops padded them to 512 px (78 s per step, 6 GB)."""
    with pytest.raises(ParamError, match=r"model\.flow_levels.*augment\.out_size"):
        parse_config(_with("model.flow_levels", 10))
    params = _with("model.kpn_depth", 7)
    with pytest.raises(ParamError, match=r"model\.kpn_depth.*augment\.out_size"):
        parse_config(params)
    parse_config(_params())  # the embedded default is fine


@pytest.mark.parametrize("idle", [False, True])
def test_exposures_stay_strictly_positive_under_extreme_logits(idle: bool) -> None:
    """A huge learning rate pushed a logit so far that softmax gave exactly 0 (then a segfault in backward).
    With the floor, every duration stays > 0 and the gradient is finite."""
    exp = Exposure(3, budget_s=3e-3, dt_min_s=0.0, dt_readout_s=4e-4, slots=4 if idle else 3, learn=True)
    with torch.no_grad():
        exp.logits.copy_(torch.tensor([900.0, 0.0, -900.0, 0.0][: exp.logits.numel()], dtype=torch.float64))
    dt = exp.durations(torch.float64)
    assert bool((dt > 0).all()), dt
    (1.0 / dt).sum().backward()
    assert torch.isfinite(exp.logits.grad).all()
    sched = exp.to_us()
    used = sum(sched["durations_us"]) + 3 * sched["readout_us"] + sched["idle_us"]
    assert used == pytest.approx(sched["budget_us"], abs=0.01)  # still inside the budget (eq. 12)


def test_divergence_is_one_line_naming_step_term_rates_and_checkpoint(tmp_path: Path, monkeypatch) -> None:
    from shard_fixtures import make_shards

    import gimbal.training.burst as train_module
    from gimbal import pipeline
    from gimbal.data.shards import ShardConfig

    shards, _ = make_shards(tmp_path / "s", ShardConfig(clips_per_shard=2, codec="libx264", crf=0), frames=17,
                            h=28, w=32)
    p = _params()
    p["exposure"]["n"] = 3
    p["augment"].update(crop=24, center=16, out_size=16)
    p["model"].update(flow_levels=2, kpn_base_channels=4, kpn_depth=1)
    p["train"].update(steps=6, batch_size=2, val_every=3, val_clips=2, checkpoint_every=2, samples_per_clip=2,
                      loader="torch", lr=1e-3, exposure_lr=0.5)
    real = train_module.make_irradiance
    calls = {"n": 0}

    def poisoned(*args, **kwargs):
        calls["n"] += 1
        scenes = real(*args, **kwargs)
        if calls["n"] != 4:
            return scenes
        return scenes._replace(irradiance=scenes.irradiance * math.nan)  # step 3 sees NaN light

    monkeypatch.setattr(train_module, "make_irradiance", poisoned)
    out = tmp_path / "o"
    with pytest.raises(DivergenceError) as info:
        pipeline.train(parse_config(p), "gimbal", shards, out / "m.pt", out / "m.json", out / "e.json",
                       out / "s.png", out / "live", out / "ckpt/last.pt")
    msg = str(info.value)
    assert "loss became nan at step 3" in msg
    assert "reconstruction term" in msg  # which term went non-finite
    assert "train.lr = 0.001" in msg and "train.exposure_lr = 0.5" in msg
    assert f"{out / 'ckpt/last.pt'} (step 2)" in msg  # the last good checkpoint is kept
    assert torch.load(out / "ckpt/last.pt", weights_only=True)["step"] == 2
    assert "\n" not in msg


def _run_stage(monkeypatch, capsys, main, *argv: str) -> tuple[int, str]:
    from gimbal.cli_utils import run_stage, stage_parser

    monkeypatch.setattr(sys, "argv", ["stage", "--params", str(REPO / "params.yaml"), *argv])
    with pytest.raises(SystemExit) as info:
        run_stage(main, stage_parser("test stage"), ("seed",))
    return info.value.code, capsys.readouterr().err


def test_a_stage_prints_one_line_for_every_failure(monkeypatch, capsys, tmp_path: Path) -> None:
    monkeypatch.setenv("GIMBAL_LOG_DIR", str(tmp_path))

    def interrupted(cfg, args):
        raise KeyboardInterrupt

    code, err = _run_stage(monkeypatch, capsys, interrupted)
    assert code == 130 and err.strip().splitlines() == ["error: interrupted; `dvc repro` resumes from the last "
                                                        "checkpoint"]

    def disk_full(cfg, args):
        raise OSError(errno.ENOSPC, "No space left on device", "data/shards/train-000.tar")

    code, err = _run_stage(monkeypatch, capsys, disk_full)
    assert code == 1 and len(err.strip().splitlines()) == 1
    assert "no space left on device writing data/shards/train-000.tar" in err

    def bug(cfg, args):
        raise ZeroDivisionError("float division by zero")

    code, err = _run_stage(monkeypatch, capsys, bug)
    lines = err.strip().splitlines()
    assert code == 1 and len(lines) == 1 and lines[0].startswith("error: internal error: ZeroDivisionError")
    log = Path(lines[0].split("traceback in ")[1].split(";")[0])
    assert log.parent == tmp_path and "Traceback" in log.read_text()
    with pytest.raises(ZeroDivisionError):  # --debug: the traceback itself
        _run_stage(monkeypatch, capsys, bug, "--debug")


def test_a_full_disk_during_torch_save_names_the_file(tmp_path: Path, monkeypatch) -> None:
    """torch.save on a full disk raises `RuntimeError: [enforce fail at inline_container.cc:672]`."""
    import shutil

    from gimbal.io import save_torch_atomic

    def full(*args, **kwargs):
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 320 vs 256")

    monkeypatch.setattr(torch, "save", full)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10 ** 9, 10 ** 9, 1000))
    state = {"w": torch.zeros(1000, 1000)}  # 4 MB
    with pytest.raises(DiskFullError, match=r"no space left on device writing .*ckpt\.pt; needs about 4 MB"):
        save_torch_atomic(tmp_path / "ckpt.pt", copy.deepcopy(state))
    assert not list(tmp_path.iterdir())  # nothing half-written left behind


def test_thread_budget_from_the_environment(monkeypatch) -> None:
    import os

    from gimbal.runtime import thread_budget

    monkeypatch.delenv("GIMBAL_THREADS", raising=False)
    monkeypatch.delenv("GIMBAL_JOBS", raising=False)
    assert thread_budget() == (os.cpu_count() or 1)
    monkeypatch.setenv("GIMBAL_JOBS", "2")
    assert thread_budget() == max(1, (os.cpu_count() or 1) // 2)
    monkeypatch.setenv("GIMBAL_THREADS", "3")
    assert thread_budget() == 3
    monkeypatch.setenv("GIMBAL_THREADS", "zero")
    with pytest.raises(ParamError, match="GIMBAL_THREADS"):
        thread_budget()
