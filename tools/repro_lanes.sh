#!/usr/bin/env bash
# `make repro`: `dvc repro` of a pipeline, with its independent training stages run side by side.
#
#   bash tools/repro_lanes.sh [dvc.yaml]        # lanes: GIMBAL_JOBS (default 2)
#
# 1. `dvc repro` of every stage upstream of the trainings (the data; RIFE already keeps every core busy);
# 2. the stages named train* of the dvc.yaml, dealt round-robin into GIMBAL_JOBS lanes; each lane is one
#    `dvc --wait-for-lock repro --single-item <its stages>`, all lanes at once. This is DVC's own parallel
#    stage execution (https://dvc.org/doc/command-reference/repro#parallel-stage-execution): the repo lock is
#    released while a stage's command runs and awaited (--wait-for-lock) to record it in dvc.lock. Each
#    training sees GIMBAL_JOBS and takes cores / GIMBAL_JOBS threads (gimbal.runtime.thread_budget): on 2 cores,
#    two 1-thread trainings side by side take about 1.2x the time of one 2-thread training alone, not 2x
#    (benchmarks/bench_threads.py; README "One thread budget per process");
# 3. `dvc repro` of the rest (evaluation, report).
#
# Plain `dvc repro` computes the same stages one at a time. A stage's bytes depend on its thread count
# (float summation order), so runs compare byte for byte at the same GIMBAL_JOBS on the same core count.
set -euo pipefail

dvcfile=${1:-dvc.yaml}
jobs=${GIMBAL_JOBS:-2}
if ! [[ $jobs =~ ^[1-9][0-9]*$ ]]; then
    echo "tools/repro_lanes.sh: GIMBAL_JOBS must be a positive integer, got '$jobs'" >&2
    exit 2
fi

mapfile -t trains < <(dvc stage list --name-only "$dvcfile" | grep -E '(^|:)train[^:]*$' || true)
if ((${#trains[@]} == 0)); then
    echo "tools/repro_lanes.sh: $dvcfile has no train* stage; running plain dvc repro" >&2
    exec dvc repro "$dvcfile"
fi

# 1. everything the trainings need (dvc repro of a stage's upstream, not the stage itself)
mapfile -t upstream < <(dvc repro --dry "${trains[@]}" 2>/dev/null \
    | sed -n "s/^Running stage '\(.*\)':$/\1/p" | grep -v -x -F -f <(printf '%s\n' "${trains[@]}") || true)
if ((${#upstream[@]})); then
    dvc repro "${upstream[@]}"
fi

# 2. the trainings, in lanes
pids=()
for ((lane = 0; lane < jobs; lane++)); do
    stages=()
    for i in "${!trains[@]}"; do
        if ((i % jobs == lane)); then stages+=("${trains[$i]}"); fi
    done
    ((${#stages[@]})) || continue
    echo "lane $((lane + 1))/$jobs: ${stages[*]}"
    GIMBAL_JOBS=$jobs dvc --wait-for-lock repro --single-item "${stages[@]}" &
    pids+=($!)
done
failed=0
for pid in "${pids[@]}"; do
    wait "$pid" || failed=1
done
if ((failed)); then
    echo "tools/repro_lanes.sh: a training lane failed (its error is above); fix it and run make repro again" >&2
    exit 1
fi

# 3. the rest
dvc repro "$dvcfile"
