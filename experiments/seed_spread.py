"""The spread over training seeds of the embedded default, from DVC experiments.

    GIMBAL_JOBS=2 dvc exp run --queue -n seed1 -S seed=1   # and seed2; then
    GIMBAL_JOBS=2 dvc queue start -j 2
    python experiments/seed_spread.py > experiments/results/seed_spread.json
    # the same in bf16: queue with -S train.precision=bf16 (seed 0 too), then
    python experiments/seed_spread.py --precision bf16 > experiments/results/seed_spread_bf16.json

Reads ``dvc exp show --json`` (the workspace's run and every experiment whose params differ from it only in
``seed`` and, with ``--precision``, ``train.precision``; the
data and the splits have seeds of their own, so only training moves), and prints per seed the test PSNR of
every method, the paired margins with their intervals and the learned schedule, plus the mean and the range
over seeds, as JSON (the "Seed spread" table of docs/results.md is this file).
"""

from __future__ import annotations

import argparse
import copy
import json
import subprocess
import sys
from typing import Any

METHODS = ("gimbal", "gimbal_uniform", "kpn", "deblurgan", "full_exposure", "middle_frame")
BURST_MODELS = ("gimbal", "gimbal_uniform", "kpn", "gimbal_no_flow", "gimbal_no_norm", "gimbal_anneal")


def _runs(node: Any, out: list[dict[str, Any]]) -> None:
    if isinstance(node, list):
        for x in node:
            _runs(x, out)
    elif isinstance(node, dict):
        data = node.get("data")
        if isinstance(data, dict) and "metrics" in data:
            out.append(node)
        for v in node.values():
            _runs(v, out)


def _read_json(path: str, rev: str | None) -> Any:
    """A pipeline output of run ``rev`` (in its commit, or the local cache; the workspace's file), or None."""
    import dvc.api
    from dvc.exceptions import DvcException

    try:
        return json.loads(dvc.api.read(path, rev=None if rev in (None, "workspace") else rev))
    except (DvcException, OSError, ValueError) as exc:  # not produced by that run
        print(f"seed_spread: {path} at {rev}: {exc}", file=sys.stderr)
        return None


def _schedule(rev: str | None) -> list[float]:
    """The learned durations (us) of run ``rev`` (``exposures/gimbal.json`` in its commit; the workspace's file)."""
    sched = _read_json("exposures/gimbal.json", rev)
    return [] if sched is None else [round(x, 1) for x in sched["durations_us"]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--precision", choices=("fp32", "bf16"), help="train.precision of the runs (default: the "
                        "workspace's)")
    args = parser.parse_args()
    shown = json.loads(subprocess.run(["dvc", "exp", "show", "--json", "--all-commits"], capture_output=True, text=True,
                                      check=True).stdout)
    runs: list[dict[str, Any]] = []
    _runs(shown, runs)
    def params(run: dict[str, Any]) -> dict[str, Any]:
        return run["data"].get("params", {}).get("params.yaml", {}).get("data", {})

    def configuration(run: dict[str, Any]) -> dict[str, Any]:
        """The run's params but the seed and the precision."""
        p = copy.deepcopy(params(run))
        p.pop("seed", None)
        p.get("train", {}).pop("precision", None)
        return p

    def precision(run: dict[str, Any]) -> str:
        return params(run).get("train", {}).get("precision", "fp32")

    workspace = next(r for r in runs if r["data"].get("rev") == "workspace")
    same = configuration(workspace)
    wanted = args.precision or precision(workspace)
    by_seed: dict[int, dict[str, Any]] = {}
    for run in runs:
        data = run["data"]
        if configuration(run) != same or precision(run) != wanted:
            continue  # another configuration (e.g. an lr sweep) or precision: not a seed of this one
        seed = params(run).get("seed")
        if seed is None or seed in by_seed:
            continue
        ev = _read_json("metrics/eval.json", data.get("rev"))  # plain outputs, not metrics: read from the run
        gimbal = _read_json("metrics/train_gimbal.json", data.get("rev")) or {}
        if not ev:
            continue
        by_seed[seed] = {"experiment": run.get("name") or data.get("rev"), "precision": wanted,
                         "psnr": {m: ev[m]["psnr"] for m in METHODS},
                         "margins": {k: {"psnr": v["psnr"], "psnr_lo": v["psnr_lo"], "psnr_hi": v["psnr_hi"]}
                                     for k, v in ev["margins"].items()},
                         "exposures_us": _schedule(data.get("rev")),
                         "val_psnr": gimbal.get("val_psnr"),
                         "liveness": {v: (_read_json(f"metrics/train_{v}.json", data.get("rev")) or {}).get("liveness")
                                      for v in BURST_MODELS}}
    if len(by_seed) < 2:
        sys.exit("seed_spread: fewer than two seeds among the experiments; queue them first (see the docstring)")
    seeds = sorted(by_seed)
    summary: dict[str, Any] = {}
    for m in METHODS:
        xs = [by_seed[s]["psnr"][m] for s in seeds]
        summary[m] = {"mean": round(sum(xs) / len(xs), 4), "min": min(xs), "max": max(xs)}
    for k in by_seed[seeds[0]]["margins"]:
        xs = [by_seed[s]["margins"][k]["psnr"] for s in seeds]
        summary[k] = {"mean": round(sum(xs) / len(xs), 4), "min": min(xs), "max": max(xs)}
    json.dump({"seeds": {str(s): by_seed[s] for s in seeds}, "over_seeds": summary}, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
