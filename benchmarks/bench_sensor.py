"""Benchmark of the sensor forward model (gimbal.sensor).

Times forward + backward of ``Sensor`` (paper settings: GenGS below 1000 e-, 1200 bins) on a
``(2, 241, 1, 128, 128)`` irradiance clip whose pixels straddle the GenGS/Gaussian switch,
reports peak memory, and measures the GenGS memory per pixel for ``n_bins = 1200``
(chunked custom autograd function vs. a naive autograd implementation).

Usage: ``python benchmarks/bench_sensor.py [--device cpu|cuda] [--repeats 3] [--threads 2] [--json out.json]``
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import torch

from gimbal.io import write_json_atomic
from gimbal.sensor import Sensor, gengs_poisson
from gimbal.sensor.noise import gengs_chunk_pixels

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * _PAGE


class _Peak:
    """Peak memory above the level at entry: CUDA allocator stats, or sampled process RSS on CPU."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.peak_bytes = 0

    @contextlib.contextmanager
    def measure(self) -> Iterator[_Peak]:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            base = torch.cuda.memory_allocated(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            yield self
            torch.cuda.synchronize(self.device)
            self.peak_bytes = torch.cuda.max_memory_allocated(self.device) - base
            return
        base = _rss_bytes()
        peak = [base]
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                peak[0] = max(peak[0], _rss_bytes())
                time.sleep(0.002)

        th = threading.Thread(target=sample, daemon=True)
        th.start()
        try:
            yield self
        finally:
            stop.set()
            th.join()
            self.peak_bytes = max(peak[0], _rss_bytes()) - base


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench_sensor(device: torch.device, repeats: int, shape: tuple[int, ...]) -> dict[str, float]:
    """Forward + backward time and peak memory of the sensor on a clip of ``shape``."""
    sensor = Sensor("jetcam19m", n=3, gengs_max_electrons=1000, n_bins=1200, seed=0).to(device).train()
    g = torch.Generator(device=device).manual_seed(0)
    dt = sensor.exposure.durations(torch.float64)[0].item()
    # smooth random scene (0..2000 e- per exposure) drifting over time: ~half the pixels use GenGS
    b, tf, c, h, w = shape
    base = torch.rand((b, 1, c, h // 8, w // 8), generator=g, device=device)
    base = torch.nn.functional.interpolate(base.view(b, c, h // 8, w // 8), size=(h, w), mode="bilinear")
    base = base.view(b, 1, c, h, w)
    ramp = torch.linspace(0.8, 1.2, tf, device=device).view(1, tf, 1, 1, 1)
    clip = (base * ramp * (2000.0 / dt)).contiguous()
    with torch.no_grad():
        mean_e = clip[:, 0] * dt
    frac_gengs = (mean_e < 1000).float().mean().item()

    def step() -> None:
        sensor.zero_grad(set_to_none=True)
        out = sensor(clip, step=0)
        out.burst.square().mean().backward()

    step()  # warm-up
    _sync(device)
    times = []
    peak = _Peak(device)
    with peak.measure():
        for _ in range(repeats):
            t0 = time.perf_counter()
            step()
            _sync(device)
            times.append(time.perf_counter() - t0)
    return {
        "clip_shape": list(shape),
        "clip_mb": clip.numel() * clip.element_size() / 2**20,
        "fraction_pixels_gengs": frac_gengs,
        "fwd_bwd_s_mean": sum(times) / len(times),
        "fwd_bwd_s_min": min(times),
        "peak_mem_mb": peak.peak_bytes / 2**20,
    }


def _naive_gengs(lam: torch.Tensor, tau: float, n_bins: int, g: torch.Generator) -> torch.Tensor:
    """Textbook GenGS with plain autograd (keeps (pixels, n_bins) tensors for backward)."""
    k = torch.arange(n_bins, dtype=lam.dtype, device=lam.device)
    u = torch.rand((lam.numel(), n_bins), generator=g, device=lam.device).clamp_min(1e-30)
    logits = k * lam.clamp_min(1e-6).log()[:, None] - torch.lgamma(k + 1) - torch.log(-torch.log(u))
    return torch.softmax(logits / tau, dim=1) @ k


def bench_gengs_memory(device: torch.device, n_bins: int, pixels: int) -> dict[str, float]:
    """Peak memory per pixel of one GenGS forward + backward (single chunk) vs. the naive version."""
    g = torch.Generator(device=device).manual_seed(0)
    lam = (torch.rand(pixels, generator=g, device=device) * 1000).requires_grad_()
    res: dict[str, float] = {"n_bins": n_bins, "pixels": pixels}
    for name, fn in (
        ("chunked", lambda x: gengs_poisson(x, 1.0, n_bins, g, chunk_bytes=2**40)),
        ("naive_autograd", lambda x: _naive_gengs(x, 1.0, n_bins, g)),
    ):
        peak = _Peak(device)
        t0 = time.perf_counter()
        with peak.measure():
            fn(lam).sum().backward()
            _sync(device)
        res[f"{name}_bytes_per_pixel"] = peak.peak_bytes / pixels
        res[f"{name}_s"] = time.perf_counter() - t0
        lam.grad = None
    res["chunk_pixels_at_64mb"] = gengs_chunk_pixels(n_bins, 64 * 2**20)
    res["analytic_live_bytes_per_pixel"] = 2 * n_bins * 4  # two float32 (pixels, n_bins) buffers
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    ap.add_argument("--gengs-pixels", type=int, default=4096)
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    gengs = bench_gengs_memory(device, 1200, args.gengs_pixels)
    sensor = bench_sensor(device, args.repeats, (2, 241, 1, 128, 128))
    result = {"device": str(device), "threads": args.threads, "torch": torch.__version__, "sensor": sensor,
              "gengs": gengs}
    print(f"device {device} ({args.threads} threads), torch {torch.__version__}")
    print(f"sensor fwd+bwd on {tuple(sensor['clip_shape'])} ({sensor['clip_mb']:.0f} MB clip, "
          f"{100 * sensor['fraction_pixels_gengs']:.0f}% pixels on GenGS, n_bins=1200): "
          f"mean {sensor['fwd_bwd_s_mean']:.2f} s, min {sensor['fwd_bwd_s_min']:.2f} s, "
          f"peak memory +{sensor['peak_mem_mb']:.0f} MB")
    print(f"GenGS n_bins=1200, {gengs['pixels']} pixels in one chunk: "
          f"{gengs['chunked_bytes_per_pixel'] / 1024:.1f} kB/pixel (analytic live "
          f"{gengs['analytic_live_bytes_per_pixel'] / 1024:.1f} kB/pixel) vs naive autograd "
          f"{gengs['naive_autograd_bytes_per_pixel'] / 1024:.1f} kB/pixel; "
          f"64 MB chunk = {gengs['chunk_pixels_at_64mb']} pixels")
    if args.json is not None:
        write_json_atomic(args.json, result)
    else:
        print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
