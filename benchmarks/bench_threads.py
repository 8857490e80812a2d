"""Two training runs on one machine: with and without the per-process thread budget (gimbal.runtime).

Runs ``stages/train.py`` on the embedded default's shards (``data/shards``: run ``dvc repro shards`` first) for a
few steps, in three settings, and prints wall-clock seconds and ratios measured in this one run:

1. one run alone (every core; what ``dvc repro`` does);
2. two runs at once, each taking every core (two ``dvc repro``s, or ``dvc queue start -j 2`` without a budget);
3. two runs at once with ``GIMBAL_JOBS=2`` (each takes cores / 2; what ``GIMBAL_JOBS=2 dvc queue start -j 2`` does).

    python benchmarks/bench_threads.py --steps 30
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def _params(tmp: Path, steps: int, variant_dir: str) -> Path:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["train"].update(steps=steps, val_every=10 * steps, checkpoint_every=10 * steps, val_clips=1)
    path = tmp / variant_dir / "params.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(params))
    return path


def _start(tmp: Path, name: str, steps: int, env: dict[str, str]) -> subprocess.Popen:
    params = _params(tmp, steps, name)
    cmd = [sys.executable, str(REPO / "stages/train.py"), "--params", str(params), "--variant", "gimbal",
           "--shards", str(REPO / "data/shards")]
    return subprocess.Popen(cmd, cwd=params.parent, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)


def _wait(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        _, err = p.communicate()
        if p.returncode != 0:
            raise SystemExit(f"a training run failed:\n{err[-2000:]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=30, help="training steps per run")
    args = parser.parse_args()
    if not (REPO / "data/shards/index.json").is_file():
        raise SystemExit("data/shards not found: run `dvc repro shards` first")
    base = {k: v for k, v in os.environ.items() if k not in ("GIMBAL_JOBS", "GIMBAL_THREADS", "OMP_NUM_THREADS")}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for label, runs, env in (("one run alone", 1, base), ("two runs, no budget", 2, base),
                                 ("two runs, GIMBAL_JOBS=2", 2, {**base, "GIMBAL_JOBS": "2"})):
            t0 = time.perf_counter()
            _wait([_start(tmp, f"{label.replace(' ', '_')}_{k}", args.steps, env) for k in range(runs)])
            rows.append((label, runs, time.perf_counter() - t0))
    alone = rows[0][2]
    print(f"cores: {os.cpu_count()}, {args.steps} training steps per run (embedded default, train_gimbal)")
    print(f"{'setting':28s} {'runs':>4s} {'wall s':>8s} {'/ one alone':>12s}")
    for label, runs, wall in rows:
        print(f"{label:28s} {runs:4d} {wall:8.1f} {wall / alone:12.2f}")


if __name__ == "__main__":
    main()
