"""tools/repro_lanes.py (`make repro`): the training stages of a DVC pipeline run side by side, everything else in
order, and dvc.lock records every stage, as after a plain `dvc repro`."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "tools/repro_lanes.py"

# a training stage that only finishes once its partner has started: run one after the other, the first of the
# two gives up after 120 s and fails, so the pipeline passes only if the lanes really run at the same time
RENDEZVOUS = """
import os, sys, time
me, other = sys.argv[1], sys.argv[2]
open(f"{me}.started", "w").close()
if len(sys.argv) > 3:
    sys.exit(f"{me} failed")
deadline = time.time() + 120
while not os.path.exists(f"{other}.started"):
    if time.time() > deadline:
        sys.exit(f"{me}: {other} never started")
    time.sleep(0.1)
with open(f"{me}.txt", "w") as fh:
    fh.write(f"{me} {os.environ.get('GIMBAL_JOBS')}\\n")
"""


def _dvc_env() -> dict[str, str]:
    dvc = shutil.which("dvc") or str(Path(sys.executable).parent / "dvc")
    return {**os.environ, "PATH": f"{Path(dvc).parent}{os.pathsep}{os.environ['PATH']}"}


def _pipeline(root: Path, fail: str | None = None) -> Path:
    root.mkdir()
    subprocess.run(["dvc", "init", "--no-scm", "-q"], cwd=root, check=True, env=_dvc_env())
    (root / "rendezvous.py").write_text(RENDEZVOUS)
    py = sys.executable
    stages = {
        "raw": {"cmd": f"{py} -c \"open('raw.txt', 'a').write('r')\"", "outs": ["raw.txt"]},
        "data": {"cmd": f"{py} -c \"open('data.txt', 'a').write(open('raw.txt').read() + 'x')\"",
                 "deps": ["raw.txt"], "outs": ["data.txt"]},  # two stages upstream: both run before the lanes
        "train_a": {"cmd": f"{py} rendezvous.py a b", "deps": ["data.txt", "rendezvous.py"], "outs": ["a.txt"]},
        "train_b": {"cmd": f"{py} rendezvous.py b a", "deps": ["data.txt", "rendezvous.py"], "outs": ["b.txt"]},
        "report": {"cmd": "cat a.txt b.txt > report.txt", "deps": ["a.txt", "b.txt"], "outs": ["report.txt"]},
    }
    if fail:
        stages[fail]["cmd"] += " fail"  # starts (so its partner finishes), then fails
    (root / "dvc.yaml").write_text(yaml.safe_dump({"stages": stages}, sort_keys=False))
    return root


def _lanes(root: Path, jobs: str = "2", dvcfile: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), *([dvcfile] if dvcfile else [])], cwd=root,
                          env={**_dvc_env(), "GIMBAL_JOBS": jobs},
                          capture_output=True, text=True, timeout=600, check=False)


def test_trainings_run_side_by_side_and_every_stage_is_recorded(tmp_path: Path) -> None:
    root = _pipeline(tmp_path / "p")
    proc = _lanes(root)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (root / "report.txt").read_text() == "a 2\nb 2\n"  # both met, each saw the lane count
    assert (root / "data.txt").read_text() == "rx"  # the data stages ran once each, in order, before the lanes
    lock = yaml.safe_load((root / "dvc.lock").read_text())["stages"]
    assert set(lock) == {"raw", "data", "train_a", "train_b", "report"}
    status = subprocess.run(["dvc", "status"], cwd=root, env=_dvc_env(), capture_output=True, text=True, check=True)
    assert "up to date" in status.stdout, status.stdout
    again = _lanes(root)  # nothing changed: nothing runs (a rendezvous alone would fail)
    assert again.returncode == 0, again.stdout + again.stderr


def test_a_failing_lane_fails_the_run_before_the_report(tmp_path: Path) -> None:
    root = _pipeline(tmp_path / "p", fail="train_b")
    proc = _lanes(root)
    assert proc.returncode != 0
    assert "a training lane failed" in proc.stderr
    assert not (root / "report.txt").exists()
    assert (root / "a.txt").exists()  # the other lane finished its work


def test_a_pipeline_in_a_dvc_subrepo_runs_in_that_project(tmp_path: Path) -> None:
    """`python tools/repro_lanes.py sub/dvc.yaml` from the repository root, sub/ a DVC subrepo (as sweeps/fig9/)
    whose trainings read a file of the root: the lanes meet, and sub/dvc.lock records every stage of the subrepo
    while the root project neither runs nor records them."""
    root = tmp_path / "repo"
    sub = root / "sub"
    sub.mkdir(parents=True)
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    subprocess.run(["dvc", "init", "-q"], cwd=root, check=True, env=_dvc_env())
    subprocess.run(["dvc", "init", "-q", "--subdir"], cwd=sub, check=True, env=_dvc_env())
    (root / "data.txt").write_text("x")  # the root's data, built before the sweep
    (sub / "rendezvous.py").write_text(RENDEZVOUS)
    py = sys.executable
    stages = {  # the sweep's form: generated trainings (train@a, train@b), deps outside by ../, outputs inside
        "train": {"foreach": {"a": "b", "b": "a"}, "do": {
            "cmd": f"{py} rendezvous.py ${{key}} ${{item}}", "deps": ["../data.txt", "rendezvous.py"],
            "outs": ["${key}.txt"]}},
        "report": {"cmd": "cat a.txt b.txt > report.txt", "deps": ["a.txt", "b.txt"], "outs": ["report.txt"]},
    }
    (sub / "dvc.yaml").write_text(yaml.safe_dump({"stages": stages}, sort_keys=False))
    (root / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"root": {"cmd": "echo r > r.txt", "outs": ["r.txt"]}}}))
    proc = _lanes(root, dvcfile="sub/dvc.yaml")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "lane 1/2: train@a" in proc.stdout and "lane 2/2: train@b" in proc.stdout
    assert (sub / "report.txt").read_text() == "a 2\nb 2\n"
    assert set(yaml.safe_load((sub / "dvc.lock").read_text())["stages"]) == {"train@a", "train@b", "report"}
    assert not (root / "dvc.lock").exists() and not (root / "r.txt").exists()  # the root project was not run


def test_rejects_a_bad_lane_count(tmp_path: Path) -> None:
    root = _pipeline(tmp_path / "p")
    proc = _lanes(root, jobs="two")
    assert proc.returncode == 2 and "GIMBAL_JOBS must be a positive integer, got 'two'" in proc.stderr


@pytest.fixture(autouse=True)
def _needs_dvc() -> None:
    if not (shutil.which("dvc") or (Path(sys.executable).parent / "dvc").exists()):
        pytest.skip("dvc is not installed")
