"""End-to-end: `dvc repro` of the pipeline in a temporary copy of the repository.

Runs the real stages (samples -> yt-dlp fetch -> clips -> ffmpeg minterpolate -> shards ...)
on an even tinier configuration than the embedded default, then checks that a second
`dvc repro` has nothing to do and that changing one param re-runs only what depends on it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("GIT_AUTHOR_NAME", "gimbal test")
    env.setdefault("GIT_AUTHOR_EMAIL", "test@gimbal.invalid")
    env.setdefault("GIT_COMMITTER_NAME", "gimbal test")
    env.setdefault("GIT_COMMITTER_EMAIL", "test@gimbal.invalid")
    env["DVC_NO_ANALYTICS"] = "1"
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=1200)
    if proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc


def tiny_params(params: dict) -> dict:
    """Shrink the embedded default further for the test (2 videos, 2 clips each)."""
    params["samples"].update(images=["astronaut", "coffee"], frames=70)
    params["data"]["sources"] = ["data/samples/flight_astronaut.mp4", "data/samples/flight_coffee.mp4"]
    params["clips"].update(skip=8, test_fraction=0.5)
    params["shards"]["clips_per_shard"] = 1
    return params


@pytest.fixture(scope="module")
def repo_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dst = tmp_path_factory.mktemp("repo")
    files = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split()
    for rel in files:
        src = REPO / rel
        if not src.is_file() or rel.startswith(("data/samples", "data/raw", "data/clips", "data/interp", "data/shards")):
            continue
        (dst / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dst / rel)
    shutil.copytree(REPO / ".dvc", dst / ".dvc", ignore=shutil.ignore_patterns("cache", "tmp"))
    (dst / "dvc.lock").unlink(missing_ok=True)
    params = tiny_params(yaml.safe_load((dst / "params.yaml").read_text()))
    (dst / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    _run(["git", "init", "-q"], dst)
    _run(["git", "add", "-A"], dst)
    _run(["git", "commit", "-qm", "copy"], dst)
    return dst


def test_dvc_repro_data_pipeline(repo_copy: Path) -> None:
    dag = _run(["dvc", "dag"], repo_copy).stdout
    for stage in ("samples", "fetch", "clips", "interpolate", "shards"):
        assert stage in dag
    _run(["dvc", "repro", "shards"], repo_copy)

    manifest = json.loads((repo_copy / "data/raw/manifest.json").read_text())
    assert len(manifest["videos"]) == 2
    clips = json.loads((repo_copy / "data/interp/index.json").read_text())["clips"]
    assert len(clips) == 4
    assert {c["frames"] for c in clips} == {241}
    splits = {c["split"]: set() for c in clips}
    for c in clips:
        splits[c["split"]].add(c["video"])
    assert set(splits) == {"train", "test"} and not (splits["train"] & splits["test"])
    tars = sorted((repo_copy / "data/shards").rglob("shard-*.tar"))
    assert len(tars) == 4
    assert all(t.with_suffix(".idx").is_file() for t in tars)

    # a second repro has nothing to do
    again = _run(["dvc", "repro", "shards"], repo_copy).stdout
    assert "Running stage" not in again, again

    # changing one param re-runs only the stages that depend on it
    params = yaml.safe_load((repo_copy / "params.yaml").read_text())
    params["shards"]["clips_per_shard"] = 2
    (repo_copy / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    out = _run(["dvc", "repro", "shards"], repo_copy).stdout
    assert "Running stage 'shards'" in out
    for upstream in ("samples", "fetch", "clips", "interpolate"):
        assert f"Running stage '{upstream}'" not in out
    assert len(sorted((repo_copy / "data/shards").rglob("shard-*.tar"))) == 2
