"""The spread over training seeds of the embedded default, from DVC experiments.

    GIMBAL_JOBS=2 dvc exp run --queue -n seed1 -S seed=1   # and seed2; then
    GIMBAL_JOBS=2 dvc queue start -j 2
    python experiments/seed_spread.py > experiments/results/seed_spread.json
    # the same in bf16: queue with -S train.precision=bf16 (seed 0 too), then
    python experiments/seed_spread.py --precision bf16 > experiments/results/seed_spread_bf16.json

Reads ``dvc exp show --json`` (the workspace's run and every experiment whose params differ from it only in
``seed`` and, with ``--precision``, ``train.precision``; the
data and the splits have seeds of their own, so only training moves), and prints per seed the test PSNR of
every method, the paired margins with their intervals, every paper Table 3 effect (with - without) with its
interval and the learned schedule, plus the mean and the range over seeds and, for each Table 3 effect, the
pooled effect (per test clip the mean over seeds of with - without) with its interval (the same bootstrap over the
test clips' source videos), as JSON (the "Seed spread" table of docs/results.md is this file). The methods, their
labels and the Table 3 rows come from the table of methods (:mod:`gimbal.methods`).
"""

from __future__ import annotations

import argparse
import copy
import csv
import io
import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from gimbal import methods as table  # noqa: E402
from gimbal.evaluation.report import table3  # noqa: E402
from gimbal.evaluation.stats import paired_difference  # noqa: E402

METHODS: tuple[str, ...] = table.scored()
"""Every method of the table of methods (a run that did not score one leaves it out)."""
BURST_MODELS: tuple[str, ...] = table.burst()
LABELS: dict[str, str] = {m: table.label(m) for m in METHODS}
TABLE3: dict[str, tuple[str, str, bool]] = table.table3()
"""Table 3 row -> (its base, the component, whether the row lacks it)."""


def per_clip(text: str) -> dict[str, dict[str, Any]]:
    """``plots/eval_per_clip.csv`` -> ``{method: {"psnr": [per clip], "videos": [per clip]}}`` in clip order."""
    out: dict[str, dict[str, Any]] = {}
    for row in sorted(csv.DictReader(io.StringIO(text)), key=lambda r: int(r["clip"])):
        entry = out.setdefault(row["method"], {"psnr": [], "videos": []})
        entry["psnr"].append(float(row["psnr"]))
        entry["videos"].append(row.get("video") or row["clip"])
    return out


def pooled_effects(runs: Sequence[dict[str, dict[str, Any]]], seed: int = 0) -> dict[str, dict[str, Any]]:
    """Every Table 3 effect pooled over training seeds: per test clip the mean over ``runs`` (each
    :func:`per_clip` of one seed) of ``with - without``, with its 95% interval by the bootstrap over the clips' source
    videos (:func:`gimbal.evaluation.stats.paired_difference`); a row needs both its models in every run."""
    out: dict[str, dict[str, Any]] = {}
    for variant, (base, component, lacks) in TABLE3.items():
        if not runs or not all(variant in r and base in r for r in runs):
            continue
        with_, without = (base, variant) if lacks else (variant, base)
        n = len(runs[0][base]["psnr"])
        mean_with = [sum(r[with_]["psnr"][i] for r in runs) / len(runs) for i in range(n)]
        mean_without = [sum(r[without]["psnr"][i] for r in runs) / len(runs) for i in range(n)]
        videos = runs[0][base]["videos"]
        ci = paired_difference(mean_with, mean_without, seed=seed,
                               clusters=videos if len(set(videos)) >= 2 else None)
        out[variant] = {"component": component, "base": base, "seeds": len(runs), "effect": round(ci.mean, 4),
                        "effect_lo": round(ci.lo, 4), "effect_hi": round(ci.hi, 4)}
    return out


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


def _read_text(path: str, rev: str | None) -> str | None:
    """A pipeline output of run ``rev`` (in its commit, or the local cache; the workspace's file), or None."""
    import dvc.api
    from dvc.exceptions import DvcException

    try:
        return dvc.api.read(path, rev=None if rev in (None, "workspace") else rev)
    except (DvcException, OSError) as exc:  # not produced by that run
        print(f"seed_spread: {path} at {rev}: {exc}", file=sys.stderr)
        return None


def _read_json(path: str, rev: str | None) -> Any:
    text = _read_text(path, rev)
    try:
        return None if text is None else json.loads(text)
    except ValueError as exc:
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
    clips: dict[int, dict[str, dict[str, Any]]] = {}
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
        csv_text = _read_text("plots/eval_per_clip.csv", data.get("rev"))
        if csv_text:
            clips[seed] = per_clip(csv_text)
        by_seed[seed] = {"experiment": run.get("name") or data.get("rev"), "precision": wanted,
                         "psnr": {m: ev[m]["psnr"] for m in METHODS if m in ev},
                         "table3": {v: {k: r[k] for k in ("component", "effect", "effect_lo", "effect_hi")}
                                    for v, r in table3(ev).items() if v in TABLE3},
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
    for m in (m for m in METHODS if all(m in by_seed[s]["psnr"] for s in seeds)):
        xs = [by_seed[s]["psnr"][m] for s in seeds]
        summary[m] = {"label": LABELS[m], "mean": round(sum(xs) / len(xs), 4), "min": min(xs), "max": max(xs)}
    for k in (k for k in by_seed[seeds[0]]["margins"] if all(k in by_seed[s]["margins"] for s in seeds)):
        xs = [by_seed[s]["margins"][k]["psnr"] for s in seeds]
        summary[k] = {"mean": round(sum(xs) / len(xs), 4), "min": min(xs), "max": max(xs)}
    effects: dict[str, Any] = {}
    for v in (v for v in TABLE3 if all(v in by_seed[s]["table3"] for s in seeds)):
        xs = [by_seed[s]["table3"][v]["effect"] for s in seeds]
        effects[v] = {"component": TABLE3[v][1], "mean": round(sum(xs) / len(xs), 4), "min": min(xs), "max": max(xs),
                      "excludes_0": [s for s in seeds if by_seed[s]["table3"][v]["effect_lo"] > 0
                                     or by_seed[s]["table3"][v]["effect_hi"] < 0]}
    pooled = pooled_effects([clips[s] for s in seeds]) if all(s in clips for s in seeds) else {}
    for v, r in pooled.items():
        effects.setdefault(v, {"component": r["component"]})["pooled"] = r
    json.dump({"seeds": {str(s): by_seed[s] for s in seeds}, "over_seeds": summary, "table3": effects}, sys.stdout,
              indent=1)
    print()


if __name__ == "__main__":
    main()
