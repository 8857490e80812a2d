"""Which trained cell's network should merge a planned schedule? Measured on the val split, at the Fig. 9 sweep's
held-out working points, for each of the grid cells around the point (seed 0, as the plan names).

    python experiments/plan_merge_choice.py > experiments/results/plan_merge_choice_val.json

For each held-out point: the schedule ``gimbal plan`` gives there (as ``sweeps/fig9/validation.json`` records it), merged by each
neighbouring cell's network with the digital gain (cell light / point light), and each directly trained seed, all
scored on the val clips lit and shaken like the point (exact Poisson noise, ``eval.seed``). The val split only:
the rule the plan uses to name its network is chosen here, and the test split judges it (``validate`` stage).
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

from gimbal.config import load_config
from gimbal.data.irradiance import fixed_irradiance_set
from gimbal.planning.fig9 import cell_config, cell_name, read_grid, score_cell, train_frames, with_camera
from gimbal.runtime import apply_thread_budget
from gimbal.system import build_sensor, load_system

SWEEP = Path("sweeps/fig9")
VAL_CLIPS = 7


def main() -> int:
    apply_thread_budget()
    grid = read_grid(SWEEP / "params.yaml")
    cfg = with_camera(load_config("params.yaml"), grid.camera)
    frames = train_frames(cfg.augment, "data/shards")
    validation = {(p["white_level_scale"], p["dbar_target"]): p
                  for p in json.loads((SWEEP / "validation.json").read_text())["points"]}
    points: dict[tuple[float, float], list[int]] = {}
    for light, dbar, seed in grid.heldout.values():
        points.setdefault((light, dbar), []).append(seed)
    out = []
    for (light, dbar), seeds in sorted(points.items()):
        cell = cell_config(cfg, light, dbar, min(seeds), frames)
        sensor = build_sensor(cell, learn_exposure=False)
        batches = fixed_irradiance_set(Path("data/shards"), "val", VAL_CLIPS, cfg.eval.batch_size, cell.augment,
                                       sensor.camera, cfg.model.channels, cfg.eval.seed, cfg.train.loader, "cpu",
                                       window_frames=cfg.eval.window_frames, full_frame=cfg.eval.full_frame)
        durations = validation[(light, dbar)]["planned_exposures_us"]  # the plan's schedule there (gimbal plan)
        fixed = dataclasses.replace(cell, exposure=dataclasses.replace(cell.exposure, init_us=tuple(durations),
                                                                       idle_slot=True))
        lo_l = max(x for x in grid.lights if x <= light)
        hi_l = min(x for x in grid.lights if x >= light)
        lo_d = max(x for x in grid.dbars if x <= dbar)
        hi_d = min(x for x in grid.dbars if x >= dbar)
        merged = {}
        for cl in sorted({lo_l, hi_l}):
            for cd in sorted({lo_d, hi_d}):
                system = load_system(SWEEP / "cells" / cell_name(cl, cd, 0) / "model.pt", "cpu")
                system.sensor = build_sensor(fixed, learn_exposure=False)
                merged[cell_name(cl, cd, 0)] = round(score_cell(system, cell, batches, cfg.eval.seed, "cpu",
                                                                gain=cl / light)["psnr"], 4)
        direct = {s: round(score_cell(load_system(SWEEP / "heldout" / cell_name(light, dbar, s) / "model.pt", "cpu"),
                                      cell, batches, cfg.eval.seed, "cpu")["psnr"], 4) for s in sorted(seeds)}
        out.append({"light": light, "dbar": dbar, "planned_us": durations,
                    "plan_names": validation[(light, dbar)]["merge_model"], "merged_val_psnr": merged,
                    "direct_val_psnr": direct})
        print(json.dumps(out[-1]), file=sys.stderr)
    json.dump({"split": "val", "clips": VAL_CLIPS, "points": out}, sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
