"""Tiny synthetic inputs of the `shards` stage: an `interpolate`-style index.json plus FFV1 clips."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from gimbal.data.shards import ShardConfig, build_shards
from gimbal.data.video import write_video


def clip_frames(seed: int, frames: int, h: int, w: int) -> np.ndarray:
    """``(T, H, W, 3)`` uint8: a coloured pattern drifting over time plus noise, different per seed."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = rng.uniform(0, 255, 3)
    out = np.empty((frames, h, w, 3), np.uint8)
    for t in range(frames):
        r = base[0] + 100 * np.sin((xx + 1.5 * t) / 5.0)
        g = base[1] + 80 * np.cos((yy - t) / 4.0)
        b = base[2] + 60 * np.sin((xx + yy + 2 * t) / 7.0)
        img = np.stack([r, g, b], -1) + rng.normal(0, 8, (h, w, 3))
        out[t] = np.clip(img, 0, 255).astype(np.uint8)
    return out


def make_interp(
    root: Path,
    splits: dict[str, str],
    clips_per_video: int = 2,
    frames: int = 17,
    h: int = 24,
    w: int = 32,
    fps: float = 240.0,
) -> tuple[Path, dict[str, np.ndarray]]:
    """Write ``root/{split}/<video>_<k>.mkv`` (FFV1) and ``root/index.json`` in the `interpolate` format
    (with each clip's ``frames_sha256``, the sha256 of its raw uint8 frames).

    ``splits`` maps source video id -> split. Returns the index path and the frames of every clip id.
    """
    clips, data = [], {}
    seed = 0
    for video, split in splits.items():
        for k in range(clips_per_video):
            cid = f"{video}_{k}"
            arr = clip_frames(seed, frames, h, w)
            seed += 1
            write_video(root / split / f"{cid}.mkv", arr, fps)
            data[cid] = arr
            clips.append({"id": cid, "video": video, "index": k, "split": split, "file": f"{split}/{cid}.mkv",
                          "start_frame": 50 * k, "frames": frames, "fps": fps, "source_fps": fps / 8,
                          "factor": 8, "gt_frame": frames // 2, "width": w, "height": h,
                          "frames_sha256": hashlib.sha256(arr.tobytes()).hexdigest()})
    path = root / "index.json"
    path.write_text(json.dumps({"clips": clips}))
    return path, data


def make_shards(
    tmp: Path,
    cfg: ShardConfig,
    splits: dict[str, str] | None = None,
    clips_per_video: int = 2,
    frames: int = 17,
    h: int = 24,
    w: int = 32,
) -> tuple[Path, dict[str, np.ndarray]]:
    """Interpolate-style inputs under ``tmp/interp`` packed into ``tmp/shards``; returns (shards dir, frames by id)."""
    splits = splits or {"vidA": "train", "vidB": "val", "vidC": "test"}
    index, data = make_interp(tmp / "interp", splits, clips_per_video, frames, h, w)
    build_shards(index, tmp / "shards", cfg, progress=False)
    return tmp / "shards", data


def training_shards(tmp: Path) -> Path:
    """The small shards the training tests share: 2 train, 2 val, 2 test clips of 17 frames, 28x32, lossless H.264."""
    path, _ = make_shards(tmp, ShardConfig(clips_per_shard=2, codec="libx264", crf=0), frames=17, h=28, w=32)
    return path
