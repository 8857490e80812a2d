"""Benchmark of one training step: per-part breakdown, and this code against an older commit side by side.

For each code version (the working tree, and ``--baseline REV``, checked out into a temporary git worktree)
a fresh subprocess times, on the version's own ``params.yaml`` (the embedded default) and the same random
8-bit clips of the shards' size ``(B, 241, 3, 144, 192)``:

- ``augment``: clips -> augmented irradiance (crop, shake, light level; ``gimbal.training.burst.make_irradiance``),
- ``sensor``: the burst capture alone (forward),
- ``forward``: sensor + network + loss,
- ``backward``: backward pass + Adam step (``fwd+bwd+opt`` minus ``forward``),

and, with ``--shards``, the clip loader of the working tree (``decode``, clips/s). A step's clips/s counts the
decoding amortised over ``train.samples_per_clip`` steps. The ratio of the two versions' training samples per
second is measured in one run on one machine: compare only ratios.

Usage: ``python benchmarks/bench_train_step.py [--baseline 16ec87f] [--shards data/shards] [--repeats 5]
[--threads 2] [--json out.json]``

``--precisions``: instead, ``train.precision`` fp32 and bf16 side by side in one run. For ``gimbal`` and ``kpn`` at
the embedded size (``params.yaml``: 32 px crops, the default widths) and the medium size (64 px crops, the paper's
widths: :data:`MEDIUM`), the samples/s of the training step :func:`gimbal.training.loop.fit` takes
(:class:`gimbal.training.burst.GimbalTask`: augmentation + sensor + forward + backward + Adam; no decoding, no
validation), each configuration in a fresh process, the fastest of ``--repeats`` steps after ``--warmup``; then the
bf16 / fp32 ratio and the machine (CPU model, cores). Each step is timed by the wall clock and by the CPU time of
its process: on a machine that other jobs load, the CPU time (at ``--threads 1``) still compares the two precisions'
work, the wall clock does not. ``--channels-last`` also times the networks in the
channels_last memory format.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

_MEASURE = r'''
import inspect, json, sys, time
import torch, yaml
torch.set_num_threads(int(sys.argv[2]))
from gimbal.config import parse_config  # noqa: E402
from gimbal.data.augment import AugmentConfig
from gimbal.system import GimbalSystem
import gimbal.training.burst as tr

root, repeats = sys.argv[1], int(sys.argv[3])
params = yaml.safe_load(open(f"{root}/params.yaml"))
tcfg = params["train"]
b = tcfg["batch_size"]
torch.manual_seed(0)
system = GimbalSystem.from_params(params, "gimbal").train()
aug = parse_config(params).augment
clips = torch.randint(0, 256, (b, 241, 3, 144, 192), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
gen = torch.Generator().manual_seed(1)
sig = inspect.signature(tr.make_irradiance).parameters
if "exposure" in sig:  # this code's API: only the frames the schedule integrates are augmented
    make = lambda: tr.make_irradiance(clips, aug, system.sensor.camera, system.net.channels, gen,
                                      exposure=system.sensor.exposure)
elif "camera" in sig:
    make = lambda: tr.make_irradiance(clips, aug, system.sensor.camera, system.net.channels, gen)
else:  # older API: (clips, augment, full_exposure_s, electrons_range, generator)
    erange = tuple(params["sensor"]["electrons_range"])
    make = lambda: tr.make_irradiance(clips, aug, system.sensor.camera.budget_s, erange, gen)
opt = torch.optim.Adam([p for p in system.parameters() if p.requires_grad], lr=1e-4)

def timed(fn):
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter(); fn(); times.append(time.perf_counter() - t0)
    return min(times)

with torch.inference_mode():
    t_aug = timed(make)
irr = make()
kw = {"srgb": irr.srgb} if hasattr(irr, "srgb") else {}  # this code's API: Scenes (irradiance + sRGB target)
irr = getattr(irr, "irradiance", irr)
with torch.no_grad():
    t_sensor = timed(lambda: system.sensor(irr, 100))
t_fwd = timed(lambda: system(irr, step=100, **kw).loss)
def step():
    out = system(irr, step=100, **kw); opt.zero_grad(set_to_none=True); out.loss.backward(); opt.step()
t_step = timed(step)
print(json.dumps({"batch_size": b, "samples_per_clip": tcfg.get("samples_per_clip", 1), "augment_s": t_aug,
                  "sensor_s": t_sensor, "forward_s": t_fwd, "backward_s": max(t_step - t_fwd, 0.0),
                  "channels": system.net.channels, "crop": aug.crop, "out_size": aug.out_size}))
'''


MEDIUM = {"augment": {"crop": 144, "center": 128, "out_size": 64},
          "model": {"flow_levels": 4, "kpn_base_channels": 64, "kpn_depth": 4}}
"""The medium size's overrides of ``params.yaml`` (docs/results.md, "Medium experiment")."""

_STEP = r'''
import json, sys, time
import torch, yaml
threads, variant, size, precision, layout, repeats, warmup = sys.argv[1:8]
torch.set_num_threads(int(threads))
from gimbal.config import parse_config
from gimbal.runtime import Dist
from gimbal.pipeline import gimbal_run
from gimbal.training.burst import GimbalTask
params = yaml.safe_load(open("params.yaml"))
for group, values in json.loads(sys.argv[8]).items():
    params[group].update(values)
params["train"].update(precision=precision, device="cpu")
cfg = parse_config(params)
task = GimbalTask(gimbal_run(cfg, variant), None, Dist(), torch.device("cpu"), None, None, None, None)
if layout == "channels_last":
    task.system.net.to(memory_format=torch.channels_last)
task.system.train()
b = cfg.train.batch_size
clips = torch.randint(0, 256, (b, 241, 3, 144, 192), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
times, cpu = [], []
for step in range(int(warmup) + int(repeats)):
    t0, c0 = time.perf_counter(), time.process_time()
    out = task.train_step(step, clips)
    task.optimize(step, out)
    times.append(time.perf_counter() - t0)
    cpu.append(time.process_time() - c0)
    assert torch.isfinite(out.loss), "non-finite loss"
best, best_cpu = min(times[int(warmup):]), min(cpu[int(warmup):])
print(json.dumps({"batch_size": b, "step_s": best, "samples_s": b / best, "cpu_s": best_cpu,
                  "samples_cpu_s": b / best_cpu, "crop": cfg.augment.out_size}))
'''


def machine() -> str:
    """The CPU model and the number of cores (and torch's version)."""
    import platform

    import torch

    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    flags = ""
    try:
        text = Path("/proc/cpuinfo").read_text()
        flags = " ".join(f for f in ("avx512_bf16", "amx_bf16") if f in text)
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} cores{', ' + flags if flags else ''}; torch {torch.__version__}"


def precisions(threads: int, repeats: int, warmup: int, channels_last: bool) -> list[dict]:
    """Time the training step of every (size, variant, precision[, layout]), each in a fresh process."""
    layouts = ["contiguous", "channels_last"] if channels_last else ["contiguous"]
    rows = []
    for size, overrides in (("embedded", {}), ("medium", MEDIUM)):
        for variant in ("gimbal", "kpn"):
            for layout in layouts:
                row = {"size": size, "variant": variant, "layout": layout}
                for precision in ("fp32", "bf16"):
                    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": str(threads)}
                    proc = subprocess.run([sys.executable, "-c", _STEP, str(threads), variant, size, precision, layout,
                                           str(repeats), str(warmup), json.dumps(overrides)], env=env, cwd=REPO,
                                          capture_output=True, text=True, check=False)
                    if proc.returncode != 0:
                        raise SystemExit(f"{size} {variant} {precision} failed:\n{proc.stderr[-3000:]}")
                    row[precision] = json.loads(proc.stdout.strip().splitlines()[-1])
                rows.append(row)
                f32, b16 = row["fp32"], row["bf16"]
                print(f"{size:9s} {variant:7s} {layout:13s} {f32['crop']:3d} px  wall: fp32 {f32['samples_s']:6.2f}  "
                      f"bf16 {b16['samples_s']:6.2f} samples/s, bf16/fp32 {b16['samples_s'] / f32['samples_s']:.2f}x  |  "
                      f"CPU time: fp32 {f32['samples_cpu_s']:6.2f}  bf16 {b16['samples_cpu_s']:6.2f} samples/CPU-s, "
                      f"bf16/fp32 {b16['samples_cpu_s'] / f32['samples_cpu_s']:.2f}x", flush=True)
    return rows


def measure(root: Path, threads: int, repeats: int) -> dict:
    """Time one version's step parts in a fresh process with ``root`` first on the import path."""
    env = {**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": str(threads)}
    proc = subprocess.run([sys.executable, "-c", _MEASURE, str(root), str(threads), str(repeats)], env=env,
                          cwd=root, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"measurement in {root} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def decode_rate(shards: Path, batch_size: int) -> float:
    """Clips per second of the working tree's loader over the train split (one epoch, after a warm-up batch)."""
    import torch

    from gimbal.data.loader import make_loader

    loader = make_loader(shards, "train", batch_size=batch_size, shuffle=False, seed=0, dtype=torch.uint8)
    it = iter(loader)
    next(it)
    n, t0 = 0, time.perf_counter()
    for clips, _ in it:
        n += clips.shape[0]
    dt = time.perf_counter() - t0
    return n / dt if n else float("nan")


def samples_per_s(m: dict, decode_clips_s: float | None) -> float:
    """Training samples per second of one step, decoding amortised over samples_per_clip steps."""
    step = m["augment_s"] + m["forward_s"] + m["backward_s"]
    if decode_clips_s:
        step += m["batch_size"] / decode_clips_s / m["samples_per_clip"]
    return m["batch_size"] / step


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--baseline", default="16ec87f", help="older commit to compare with ('' for none)")
    ap.add_argument("--shards", type=Path, default=None, help="shards directory for the decode column")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--precisions", action="store_true", help="fp32 and bf16 side by side (gimbal, kpn; two sizes)")
    ap.add_argument("--warmup", type=int, default=2, help="--precisions: untimed steps first")
    ap.add_argument("--channels-last", action="store_true", help="--precisions: also the channels_last layout")
    args = ap.parse_args()

    if args.precisions:
        print(f"machine: {machine()}; threads {args.threads}; the fastest of {args.repeats} steps after "
              f"{args.warmup} warm-up steps; samples/s of a full training step (augmentation + sensor + forward + "
              "backward + Adam)", flush=True)
        rows = precisions(args.threads, args.repeats, args.warmup, args.channels_last)
        if args.json:
            args.json.write_text(json.dumps({"machine": machine(), "threads": args.threads, "rows": rows},
                                            indent=2) + "\n")
        return

    rows = {"working tree": measure(REPO, args.threads, args.repeats)}
    if args.baseline:
        with tempfile.TemporaryDirectory() as tmp:
            wt = Path(tmp) / "baseline"
            subprocess.run(["git", "worktree", "add", "--detach", str(wt), args.baseline], cwd=REPO, check=True,
                           capture_output=True)
            try:
                rows[f"baseline {args.baseline}"] = measure(wt, args.threads, args.repeats)
            finally:
                subprocess.run(["git", "worktree", "remove", "--force", str(wt)], cwd=REPO, check=False)
    decode = decode_rate(args.shards, rows["working tree"]["batch_size"]) if args.shards else None

    print(f"threads {args.threads}; times are the fastest of {args.repeats} (s); decode: working-tree loader")
    print(f"{'version':22s} {'B':>2s} {'C':>2s} {'augment':>8s} {'sensor':>7s} {'forward':>8s} {'backward':>8s} "
          f"{'step clips/s':>12s}")
    for name, m in rows.items():
        print(f"{name:22s} {m['batch_size']:2d} {m['channels']:2d} {m['augment_s']:8.3f} {m['sensor_s']:7.3f} "
              f"{m['forward_s']:8.3f} {m['backward_s']:8.3f} {samples_per_s(m, decode):12.2f}")
    if decode:
        m = rows["working tree"]
        print(f"loader: {decode:.2f} clips/s; the step consumes {m['batch_size'] / m['samples_per_clip'] / (m['augment_s'] + m['forward_s'] + m['backward_s']):.2f} clips/s "
              f"(loader / step = {decode / (m['batch_size'] / m['samples_per_clip'] / (m['augment_s'] + m['forward_s'] + m['backward_s'])):.2f})")
    if len(rows) == 2:
        new, old = (samples_per_s(m, decode) for m in rows.values())
        print(f"speed-up (training samples per second, working tree / baseline): {new / old:.2f}x")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "decode_clips_s": decode}, indent=2) + "\n")


if __name__ == "__main__":
    main()
