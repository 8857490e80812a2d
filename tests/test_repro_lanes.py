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


def _lanes(root: Path, jobs: str = "2") -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT)], cwd=root, env={**_dvc_env(), "GIMBAL_JOBS": jobs},
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


def test_rejects_a_bad_lane_count(tmp_path: Path) -> None:
    root = _pipeline(tmp_path / "p")
    proc = _lanes(root, jobs="two")
    assert proc.returncode == 2 and "GIMBAL_JOBS must be a positive integer, got 'two'" in proc.stderr


@pytest.fixture(autouse=True)
def _needs_dvc() -> None:
    if not (shutil.which("dvc") or (Path(sys.executable).parent / "dvc").exists()):
        pytest.skip("dvc is not installed")
