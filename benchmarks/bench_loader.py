"""Benchmark of the clip readers (gimbal.data.loader) on a small synthetic shard set.

Renders ``--clips`` clips of ``--frames`` frames (a camera drifting over scikit-image's
astronaut photo, ``--width`` x ``--height``), packs them with ``build_shards`` for each codec,
then times a cold ``open_split`` (validation incl. the per-shard sha256) and one epoch of every
reader that can decode them: torch/PyAV with 0 and 2 DataLoader workers, and DALI (CPU or GPU). Reports clips/s (after one warm-up epoch) and shard sizes.

Usage: ``python benchmarks/bench_loader.py [--clips 8] [--frames 241] [--codecs libx264,libvpx-vp9] [--json out.json]``
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from skimage import data as skdata

import gimbal.data.loader.index as loader_module
from gimbal.data.loader import (
    DaliClipLoader,
    TorchClipLoader,
    dali_codec_error,
    dali_device,
    dali_import_error,
    open_split,
)
from gimbal.data.shards import ShardConfig, build_shards
from gimbal.data.video import frames_sha256, write_video
from gimbal.io import write_json_atomic


def make_interp(root: Path, clips: int, frames: int, w: int, h: int) -> Path:
    """``clips`` FFV1 clips of a smooth pan over a photo plus an interpolate-style index.json."""
    img = skdata.astronaut()
    entries = []
    for c in range(clips):
        x0, y0 = 20 + 15 * c, 30 + 10 * c
        arr = np.stack([img[y0 + t // 6 : y0 + t // 6 + h, x0 + t // 4 : x0 + t // 4 + w] for t in range(frames)])
        cid = f"bench_{c}"
        write_video(root / "train" / f"{cid}.mkv", np.ascontiguousarray(arr), 240.0)
        entries.append({"id": cid, "video": "bench", "index": c, "split": "train", "file": f"train/{cid}.mkv",
                        "frames": frames, "fps": 240.0, "gt_frame": frames // 2, "width": w, "height": h,
                        "frames_sha256": frames_sha256(arr)})
    (root / "index.json").write_text(json.dumps({"clips": entries}))
    return root / "index.json"


def epoch_rate(loader, epochs: int = 2) -> float:
    """Clips per second over the last of ``epochs`` epochs (the first warms up)."""
    rate = 0.0
    for _ in range(epochs):
        t0, n = time.perf_counter(), 0
        for frames, _ in loader:
            n += frames.shape[0]
        rate = n / (time.perf_counter() - t0)
    return rate


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clips", type=int, default=8)
    p.add_argument("--frames", type=int, default=241)
    p.add_argument("--width", type=int, default=192)
    p.add_argument("--height", type=int, default=144)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--codecs", default="libx264,libvpx-vp9")
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    torch.set_num_threads(2)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        index = make_interp(Path(tmp) / "interp", args.clips, args.frames, args.width, args.height)
        for codec in args.codecs.split(","):
            out = Path(tmp) / codec
            t0 = time.perf_counter()
            build_shards(index, out, ShardConfig(clips_per_shard=4, codec=codec, crf=0), progress=False)
            build = time.perf_counter() - t0
            # cold open: since issue 11 this hashes every tar and idx (sha256 against index.json) once per process
            getattr(loader_module, "_VERIFIED", {}).clear()
            t0 = time.perf_counter()
            shards = open_split(out, "train")
            open_s = time.perf_counter() - t0
            size = sum(t.stat().st_size for t in shards.tars)
            row = {"codec": codec, "clips": args.clips, "frames": args.frames, "size": [args.width, args.height],
                   "build_s": round(build, 2), "mb_per_clip": round(size / args.clips / 1e6, 3),
                   "open_split_cold_ms": round(1e3 * open_s, 2)}
            for workers in (0, 2):
                row[f"torch_w{workers}_clips_s"] = round(
                    epoch_rate(TorchClipLoader(out, "train", args.batch, num_workers=workers)), 2)
            reason = dali_import_error() or dali_codec_error(shards.codec, shards.pix_fmt, shards.crf, dali_device(device))
            if reason is None:
                dali = DaliClipLoader(out, "train", args.batch, device=device, num_threads=2)
                row[f"dali_{device}_clips_s"] = round(epoch_rate(dali), 2)
            else:
                row[f"dali_{device}"] = f"n/a: {reason}"
            results.append(row)
            print(json.dumps(row))
    if args.json:
        write_json_atomic(args.json, results)


if __name__ == "__main__":
    main()
