"""gimbal.io: atomic outputs leave no temps behind, even after a SIGKILL; torch checkpoints are byte-stable."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from gimbal.io import atomic_dir, atomic_path, remove_stale_temps, save_torch_atomic

REPO = Path(__file__).resolve().parents[1]

# A writer that is killed half-way: it opens an atomic folder and an atomic file, says so, and waits.
_WRITER = """
import sys, time
from pathlib import Path
from gimbal.io import atomic_dir, atomic_path
root = Path(sys.argv[1])
with atomic_dir(root / "out") as tmp, atomic_path(root / "out.json") as f:
    (tmp / "half.bin").write_bytes(b"x" * 1000)
    f.write_text("{")
    print("ready", flush=True)
    time.sleep(60)
"""


def _start_writer(root: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(root)], stdout=subprocess.PIPE, text=True, cwd=REPO,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


def _temps(root: Path) -> list[str]:
    """The temps beside the outputs and inside the output folder (where :func:`atomic_dir` builds it)."""
    inside = sorted(f"out/{p.name}" for p in (root / "out").iterdir() if p.name.startswith(".")) \
        if (root / "out").is_dir() else []
    return sorted(p.name for p in root.iterdir() if p.name.startswith(".")) + inside


def test_failure_removes_temps(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), atomic_dir(tmp_path / "out") as tmp:
        (tmp / "a").write_text("partial")
        with atomic_path(tmp_path / "x.json") as f:
            f.write_text("{")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_temps_of_killed_runs_are_removed_but_not_those_of_live_runs(tmp_path: Path) -> None:
    killed = _start_writer(tmp_path)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    left = _temps(tmp_path)
    assert len(left) == 2 and all(".tmp" in name for name in left)  # a SIGKILL runs no cleanup
    assert [name for name in left if name.startswith("out/")]  # the folder's temp is inside it: DVC removes it
    live = _start_writer(tmp_path)
    try:
        live_temps = sorted(set(_temps(tmp_path)) - set(left))
        assert len(live_temps) == 2
        with atomic_dir(tmp_path / "out") as tmp:  # the next run of the stage
            (tmp / "done").write_text("ok")
        assert _temps(tmp_path) == live_temps  # the killed run's temps are gone, the concurrent run's kept
        assert (tmp_path / "out" / "done").read_text() == "ok"
    finally:
        live.kill()
        live.wait()


def test_untagged_and_foreign_temps_are_kept(tmp_path: Path) -> None:
    names = [".clips.abc123.tmp", ".clips.999999999-1@some-other-host.abc.tmp", "notes.txt"]
    for name in names:
        (tmp_path / name).mkdir()
    assert remove_stale_temps(tmp_path) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names)


def test_save_torch_atomic_is_byte_stable(tmp_path: Path) -> None:
    obj = {"w": torch.arange(12.0).reshape(3, 4), "step": 3}
    save_torch_atomic(tmp_path / "a.pt", obj)
    save_torch_atomic(tmp_path / "b.pt", obj)
    assert (tmp_path / "a.pt").read_bytes() == (tmp_path / "b.pt").read_bytes()
    loaded = torch.load(tmp_path / "a.pt")
    assert torch.equal(loaded["w"], obj["w"]) and loaded["step"] == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.pt", "b.pt"]
