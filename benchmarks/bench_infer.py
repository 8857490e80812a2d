"""Seconds and peak memory per megapixel of `gimbal infer`'s merge (mono and RGB), and one big burst.

    python benchmarks/bench_infer.py                                 # table: embedded + paper, mono + RGB, CPU (+ CUDA)
    python benchmarks/bench_infer.py --scales embedded --sizes 1024  # a subset
    python benchmarks/bench_infer.py --one 4432 4432 --channels 1    # one tiled run, e.g. a JetCam19M frame
    python benchmarks/bench_infer.py --one 1280 720 --scales embedded --channels 1 --backends torch onnx --repeat 5
                                                                     # PyTorch vs onnxruntime at 720p, one run

Each measurement runs in a fresh subprocess (so the process's peak RSS, ``ru_maxrss``, belongs to
that run alone): it builds the network (random weights: the cost does not depend on them), a random
burst of n = 3 frames, and runs :func:`gimbal.inference.infer.reconstruct_burst` (tiled under
``--max-memory-gb``) once to warm up and once timed. "peak MB/MP" is the growth of the peak RSS
over the RSS before the merge, per megapixel (frames, output and network working memory); on CUDA
also the peak GPU memory. ``--untiled`` runs the network on the whole frame instead (the
calibration of ``gimbal.inference.tiling.BYTES_PER_FLOAT_PEAK``). ``--backends torch onnx`` times the same merge run by
onnxruntime (the network exported once per scale and channel count by :func:`gimbal.inference.onnx_merge.export_onnx`,
in the parent process, before any timing; the child loads only the ONNX file). ``--repeat N`` reports the median of N
timed runs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys

SCALES = {
    "paper": {"flow_levels": 4, "kpn_base_channels": 64, "kpn_depth": 4},
    "embedded": {"flow_levels": 3, "kpn_base_channels": 8, "kpn_depth": 2},
}


def _rss() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) * 1024
    return 0


def measure(scale: str, channels: int, h: int, w: int, device: str, max_memory_gb: float, untiled: bool,
            warmup: bool, backend: str = "torch", onnx: str | None = None, repeat: int = 1) -> dict:
    """One measurement in this process (call in a fresh one)."""
    import resource
    import time

    import numpy as np
    import torch

    from gimbal.inference.infer import reconstruct_burst
    from gimbal.inference.tiling import bytes_per_pixel
    from gimbal.models.net import GimbalNet
    from gimbal.system import GimbalSystem

    params = {"seed": 0, "exposure": {"n": 3, "idle_slot": True, "init_us": [872.0, 234.0, 583.0]},
              "model": {"channels": channels, **SCALES[scale]}, "variants": {"gimbal": {}}}
    if backend == "onnx":
        from gimbal.inference.onnx_merge import OnnxSystem

        system = OnnxSystem(onnx, device)
    else:
        system = GimbalSystem.from_params(params).to(device).eval()
    net: GimbalNet = system.net
    frames = np.random.default_rng(0).random((3, channels, h, w), dtype=np.float32) * 0.5
    exps = [872.0, 234.0, 583.0]

    def run() -> None:
        if untiled:
            with torch.inference_mode():
                system.reconstruct(torch.from_numpy(frames)[None].to(device),
                                   torch.tensor(exps, dtype=torch.float64, device=device) * 1e-6)
        else:
            reconstruct_burst(system, frames, exps, max_memory_gb)
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    if warmup:
        run()
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    base = _rss()
    times = []
    for _ in range(max(repeat, 1)):
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    seconds = float(np.median(times))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    mp = h * w / 1e6
    res = {"backend": backend, "scale": scale, "channels": channels, "size": f"{w}x{h}", "device": device, "seconds": seconds,
           "s_per_mp": seconds / mp, "peak_rss_gb": peak / 1e9, "peak_mb_per_mp": (peak - base) / 1e6 / mp,
           "estimate_mb_per_mp": bytes_per_pixel(net), "threads": torch.get_num_threads()}
    if device.startswith("cuda"):
        res["gpu_peak_mb_per_mp"] = torch.cuda.max_memory_allocated() / 1e6 / mp
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scales", nargs="+", default=["embedded", "paper"], choices=sorted(SCALES))
    ap.add_argument("--channels", type=int, nargs="+", default=[1, 3])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1024], help="square frame sides (pixels)")
    ap.add_argument("--devices", nargs="+", default=None, help="default: cpu, plus cuda when present")
    ap.add_argument("--max-memory-gb", type=float, default=2.0)
    ap.add_argument("--untiled", action="store_true", help="whole frame in one forward pass")
    ap.add_argument("--one", type=int, nargs=2, metavar=("W", "H"), help="a single run of this size, no warm-up")
    ap.add_argument("--warmup", action="store_true", help="with --one: one untimed run first (GPU timings)")
    ap.add_argument("--backends", nargs="+", default=["torch"], choices=["torch", "onnx"],
                    help="run the merge with PyTorch and/or onnxruntime (default: torch)")
    ap.add_argument("--repeat", type=int, default=1, help="timed runs per row; the median is shown")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(measure(**json.loads(args.child))))
        return
    import torch

    devices = args.devices or ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    jobs = []
    if args.one:
        w, h = args.one
        jobs = [(s, c, h, w, d, args.warmup, b) for s in args.scales for c in args.channels for d in devices
                for b in args.backends]
    else:
        jobs = [(s, c, z, z, d, True, b) for d in devices for s in args.scales for c in args.channels
                for z in args.sizes for b in args.backends]
    onnx_files = _export_onnx({(s, c) for s, c, *_, b in jobs if b == "onnx"})
    cpu = platform.processor() or platform.machine()
    if onnx_files:
        import onnxruntime

        cpu += f", onnxruntime {onnxruntime.__version__}"
    print(f"# {os.cpu_count()} CPU cores ({cpu}), torch {torch.__version__}, "
          f"{torch.cuda.get_device_name() if torch.cuda.is_available() else 'no GPU'}, "
          f"{'untiled' if args.untiled else f'--max-memory-gb {args.max_memory_gb:g}'}")
    print(f"{'backend':7} {'scale':9} {'C':>1} {'size':>9} {'device':6} {'s':>7} {'s/MP':>6} {'peak RSS GB':>11} "
          f"{'peak MB/MP':>10} {'GPU MB/MP':>9}")
    for scale, c, h, w, dev, warm, backend in jobs:
        child = json.dumps({"scale": scale, "channels": c, "h": h, "w": w, "device": dev,
                            "max_memory_gb": args.max_memory_gb, "untiled": args.untiled, "warmup": warm,
                            "backend": backend, "onnx": onnx_files.get((scale, c)), "repeat": args.repeat})
        proc = subprocess.run([sys.executable, __file__, "--child", child], capture_output=True, text=True, check=False)
        if proc.returncode:
            print(f"{backend:7} {scale:9} {c:>1} {w}x{h} {dev}: failed ({proc.returncode}): {proc.stderr.strip()[-300:]}")
            continue
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        gpu = f"{r['gpu_peak_mb_per_mp']:9.0f}" if "gpu_peak_mb_per_mp" in r else f"{'-':>9}"
        print(f"{backend:7} {scale:9} {c:>1} {r['size']:>9} {dev:6} {r['seconds']:7.3f} {r['s_per_mp']:6.3f} "
              f"{r['peak_rss_gb']:11.2f} {r['peak_mb_per_mp']:10.0f} {gpu}", flush=True)


def _export_onnx(pairs: set[tuple[str, int]]) -> dict[tuple[str, int], str]:
    """The network of each (scale, channels) with random weights, saved and exported to ONNX in a temp folder
    (removed at exit)."""
    if not pairs:
        return {}
    import atexit
    import shutil
    import tempfile

    from gimbal.inference.onnx_merge import export_onnx
    from gimbal.system import GimbalSystem, save_system

    tmp = tempfile.mkdtemp(prefix="bench_infer_onnx_")
    atexit.register(shutil.rmtree, tmp, True)
    files = {}
    for scale, c in sorted(pairs):
        params = {"seed": 0, "exposure": {"n": 3, "idle_slot": True, "init_us": [872.0, 234.0, 583.0]},
                  "model": {"channels": c, **SCALES[scale]}, "variants": {"gimbal": {}}}
        pt, onnx = os.path.join(tmp, f"{scale}{c}.pt"), os.path.join(tmp, f"{scale}{c}.onnx")
        save_system(pt, GimbalSystem.from_params(params), params, "gimbal")
        export_onnx(pt, onnx)
        files[(scale, c)] = onnx
    return files


if __name__ == "__main__":
    main()
