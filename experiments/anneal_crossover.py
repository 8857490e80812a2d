"""The annealed loss's crossover chosen on val: `gimbal_anneal` trained at several crossovers, one seed each.

    # in a scratch copy of the repository (never the workspace's models/ or metrics/), for each crossover X:
    #   variants.gimbal_anneal.loss.anneal_crossover: X in params.yaml, then
    GIMBAL_THREADS=1 nice -n 15 python stages/train.py --variant gimbal_anneal   # and keep dvclive/train_gimbal_anneal
    python experiments/anneal_crossover.py 0.2=<dvclive dir> 0.4=<dir> 0.6=<dir> \\
        > experiments/results/anneal_crossover_val.json

For each crossover, from its dvclive logs (``val/psnr``, ``val/kernel_input``, ``val/middle_frame_psnr`` at every
validation): the curves, the crossover step (``beta alpha^t = 1`` at ``crossover x train.steps``), and the best
val PSNR among the validations the checkpoint choice may keep (kernels that change with the burst by at least
``train.min_kernel_change``, at or after the crossover: ``train.select_after_anneal``), as JSON. The crossover with
the highest such val PSNR is ``chosen``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any


def _curve(path: Path) -> dict[int, float]:
    """A dvclive ``.tsv`` (``step<TAB>value``, step 0-based) -> ``{steps done: value}``."""
    rows = [line.split("\t") for line in path.read_text().splitlines()[1:] if line.strip()]
    return {int(step) + 1: float(value) for step, value in rows}


def summarise(runs: dict[float, Path], steps: int, min_kernel_change: float = 0.01) -> dict[str, Any]:
    """``{crossover: dvclive dir}`` -> the curves, crossover steps, eligible best val PSNR and the chosen crossover."""
    out: dict[str, Any] = {"steps": steps, "min_kernel_change": min_kernel_change, "runs": {}}
    for crossover, live in sorted(runs.items()):
        val = Path(live) / "plots/metrics/val"
        psnr, kernel, floor = (_curve(val / f"{k}.tsv") for k in ("psnr", "kernel_input", "middle_frame_psnr"))
        cross_step = crossover * steps
        eligible = {s: p for s, p in psnr.items() if kernel.get(s, 0.0) >= min_kernel_change and s >= cross_step - 1e-9}
        live_any = {s: p for s, p in psnr.items() if kernel.get(s, 0.0) >= min_kernel_change}
        best = max(eligible, key=lambda s: (eligible[s], -s)) if eligible else None
        best_any = max(live_any, key=lambda s: (live_any[s], -s)) if live_any else None
        out["runs"][f"{crossover:g}"] = {
            "crossover_step": round(cross_step, 3),
            "val_psnr": psnr, "kernel_input": {s: round(v, 6) for s, v in kernel.items()},
            "val_middle_frame_psnr": floor,
            "best_step": best, "best_val_psnr": None if best is None else round(eligible[best], 4),
            "best_step_any_time": best_any,
            "best_val_psnr_any_time": None if best_any is None else round(live_any[best_any], 4),
        }
    scored = {k: r["best_val_psnr"] for k, r in out["runs"].items() if r["best_val_psnr"] is not None}
    out["chosen"] = max(scored, key=lambda k: scored[k]) if scored else None
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="CROSSOVER=DVCLIVE_DIR")
    parser.add_argument("--steps", type=int, default=400, help="train.steps of the runs")
    parser.add_argument("--min-kernel-change", type=float, default=0.01)
    args = parser.parse_args()
    runs = {}
    for item in args.runs:
        x, _, path = item.partition("=")
        if not path or not math.isfinite(float(x)):
            sys.exit(f"anneal_crossover: expected CROSSOVER=DVCLIVE_DIR, got {item!r}")
        runs[float(x)] = Path(path)
    json.dump(summarise(runs, args.steps, args.min_kernel_change), sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
