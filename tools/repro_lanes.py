"""`make repro`: `dvc repro` of a pipeline, with its independent training stages run side by side.

    python tools/repro_lanes.py [dvc.yaml]        # lanes: GIMBAL_JOBS (default 2)
    python tools/repro_lanes.py sweeps/fig9/dvc.yaml   # a pipeline that is its own DVC project (subrepo)

A dvc.yaml inside a DVC subrepo (a folder with its own ``.dvc/``, as the Fig. 9 sweep) is run in that project:
every ``dvc`` command below runs there, as ``cd sweeps/fig9 && dvc repro`` would.

1. ``dvc repro`` of every stage upstream of the trainings (the data; RIFE already keeps every core busy);
2. the stages named ``train*`` of the dvc.yaml, dealt round-robin into ``GIMBAL_JOBS`` lanes; each lane is one
   ``dvc --wait-for-lock repro --single-item <its stages>``, all lanes at once. This is DVC's own parallel stage
   execution (https://dvc.org/doc/command-reference/repro#parallel-stage-execution): the repo lock is released
   while a stage's command runs and awaited (``--wait-for-lock``) to record it in dvc.lock. Each training sees
   ``GIMBAL_JOBS`` and takes cores / ``GIMBAL_JOBS`` threads (:func:`gimbal.runtime.thread_budget`): on 2 cores,
   two 1-thread trainings side by side take about 1.2x the time of one 2-thread training alone, not 2x
   (``benchmarks/bench_threads.py``; docs/benchmarks.md "One thread budget per process");
3. ``dvc repro`` of the rest (evaluation, report).

Plain ``dvc repro`` computes the same stages one at a time. A stage's bytes depend on its thread count (float
summation order), so runs compare byte for byte at the same ``GIMBAL_JOBS`` on the same core count. Standard
library only (it runs the ``dvc`` on PATH), written by hand because DVC runs one stage at a time itself.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

TRAIN = re.compile(r"(^|:)train[^:]*$")  # train_gimbal, train@1-1, other/dvc.yaml:train_x


def project(dvcfile: str) -> tuple[str, str]:
    """``(the folder of the DVC project that owns dvcfile, dvcfile relative to it)``: the nearest folder from
    dvcfile's up to the current one that holds a ``.dvc/`` (a subrepo), else the current folder."""
    path = Path(dvcfile)
    for folder in path.parents:
        if folder in (Path("."), Path.cwd(), Path(folder.anchor)):  # the current project, or none above it
            break
        if (folder / ".dvc").is_dir():
            return str(folder), path.relative_to(folder).as_posix()
    return ".", dvcfile


def _dvc(*args: str, cwd: str = ".") -> str:
    return subprocess.run(["dvc", *args], check=True, capture_output=True, text=True, cwd=cwd).stdout


def upstream(stages: list[str], cwd: str = ".") -> list[str]:
    """The stages some of ``stages`` depend on, directly or not (``dvc dag --dot --full``), not ``stages`` themselves,
    in the DAG's order. ``cwd``: the DVC project's folder."""
    nodes, parents = [], {}
    for line in _dvc("dag", "--dot", "--full", cwd=cwd).splitlines():
        edge = re.fullmatch(r'\s*"(.+)" -> "(.+)";?\s*', line)
        node = re.fullmatch(r'\s*"(.+)";?\s*', line)
        if edge:
            parents.setdefault(edge.group(2), set()).add(edge.group(1))
        elif node:
            nodes.append(node.group(1))
    seen: set[str] = set()
    todo = list(stages)
    while todo:
        for parent in parents.get(todo.pop(), ()):
            if parent not in seen:
                seen.add(parent)
                todo.append(parent)
    return [n for n in nodes if n in seen and n not in stages]


def lanes(stages: list[str], jobs: int) -> list[list[str]]:
    """``stages`` dealt round-robin into ``jobs`` lanes (empty lanes dropped)."""
    return [lane for lane in (stages[k::jobs] for k in range(jobs)) if lane]


def main() -> int:
    dvcfile = sys.argv[1] if len(sys.argv) > 1 else "dvc.yaml"
    jobs_text = os.environ.get("GIMBAL_JOBS") or "2"
    if not jobs_text.isdigit() or int(jobs_text) < 1:
        print(f"tools/repro_lanes.py: GIMBAL_JOBS must be a positive integer, got {jobs_text!r}", file=sys.stderr)
        return 2
    jobs = int(jobs_text)
    root, local = project(dvcfile)
    try:
        trains = [s for s in _dvc("stage", "list", "--name-only", local, cwd=root).split() if TRAIN.search(s)]
        before = upstream(trains, cwd=root)
    except subprocess.CalledProcessError as err:  # dvc's own one-line error: the pipeline file, the stage
        why = (err.stderr or "").strip().splitlines() or [f"exit status {err.returncode}"]
        print(f"tools/repro_lanes.py: `{' '.join(err.cmd)}` in {root} failed: {why[-1]}", file=sys.stderr)
        return 1
    if not trains:
        print(f"tools/repro_lanes.py: {dvcfile} has no train* stage; running plain dvc repro", file=sys.stderr)
        return subprocess.call(["dvc", "repro", local], cwd=root)
    if before and subprocess.call(["dvc", "repro", *before], cwd=root) != 0:
        return 1
    env = {**os.environ, "GIMBAL_JOBS": str(jobs)}
    procs = []
    for k, lane in enumerate(lanes(trains, jobs)):
        print(f"lane {k + 1}/{jobs}: {' '.join(lane)}", flush=True)
        procs.append(subprocess.Popen(["dvc", "--wait-for-lock", "repro", "--single-item", *lane], env=env, cwd=root))
    if any([p.wait() != 0 for p in procs]):  # a list: wait for every lane before deciding
        print("tools/repro_lanes.py: a training lane failed (its error is above); fix it and run make repro again",
              file=sys.stderr)
        return 1
    return subprocess.call(["dvc", "repro", local], cwd=root)


if __name__ == "__main__":
    sys.exit(main())
