"""Byte-stable data stages (issue 11): the same inputs give the same bytes, run after run.

DVC hashes outputs by content, so a stage that embeds random IDs (Matroska segment UIDs) or
temp-file names changes every downstream hash on `dvc repro -f` although nothing changed.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from gimbal.data.clips import cut_clips
from gimbal.data.interpolate import interpolate_clips
from gimbal.data.shards import ShardConfig, build_shards
from gimbal.data.video import read_frames, write_video


def tree_md5(root: Path) -> dict[str, str]:
    """Relative path -> md5 of every file under ``root``."""
    return {str(p.relative_to(root)): hashlib.md5(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_clips_interpolate_shards_twice_give_identical_bytes(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    rng = np.random.default_rng(3)
    frames = rng.integers(0, 256, (14, 32, 48, 3), dtype=np.uint8)
    write_video(raw / "v.mp4", frames, 25.0, codec="libx264", crf=10)
    (raw / "manifest.json").write_text(json.dumps(
        {"videos": [{"id": "v", "file": "v.mp4", "fps": 25.0, "frames": 14}]}))
    trees = []
    for run in ("a", "b"):
        out = tmp_path / run
        cut_clips(raw / "manifest.json", out / "clips", length=5, skip=1, test_fraction=0.5, progress=False)
        interpolate_clips(out / "clips", out / "interp", method="minterpolate", factor=2, workers=2, progress=False)
        build_shards(out / "interp" / "index.json", out / "shards", ShardConfig(codec="libvpx-vp9"), progress=False)
        trees.append(tree_md5(out))
    assert any(name.endswith(".mkv") for name in trees[0])
    assert any(name.endswith(".tar") for name in trees[0])
    assert trees[0] == trees[1]
    # and the clips still hold the source frames exactly
    assert np.array_equal(read_frames(tmp_path / "a" / "clips" / "train" / "v_000.mkv"),
                          read_frames(raw / "v.mp4")[:5])
