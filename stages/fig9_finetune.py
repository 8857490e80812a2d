"""DVC stage `finetune_heldout` of sweeps/fig9/dvc.yaml: the planned schedule's merge fine-tuned at a working point.

At the point (--light, a scale of `augment.white_level`; --dbar, the shake's blur in network px), plans the schedule on
the trained grid (--cells-json, `gimbal plan`), fixes those exposures and trains only the networks, starting from the
plan's merge model (the nearest cell's), for --steps steps with training --seed, on bursts lit and shaken like the
point (gimbal.planning.finetune; the one training loop, validation and checkpoint choice on val; no test split is
read). Writes <out>/<cell>/ (model.pt, train.json, exposures.json, exposures.png, dvclive/, plan.json: the plan it
fine-tuned).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from gimbal.cli_utils import run_stage, stage_parser
from gimbal.config import Config
from gimbal.data.loader import check_batch_size
from gimbal.io import write_json_atomic
from gimbal.pipeline import train_cell
from gimbal.planning.fig9 import cell_name, train_frames, with_camera
from gimbal.planning.finetune import finetune_config
from gimbal.planning.plan import load_grid

# the params groups this stage reads: its `params:` in sweeps/fig9/dvc.yaml
USES = ("seed", "sensor", "exposure", "augment", "loss", "train", "model", "variants", "eval")


def main(cfg: Config, args: argparse.Namespace) -> None:
    name = cell_name(args.light, args.dbar, args.seed)
    out = Path(args.out) / name
    world = int(os.environ.get("WORLD_SIZE", 1))  # torchrun's
    check_batch_size(args.shards, "train", cfg.train.batch_size, "train.batch_size", world)
    cfg = with_camera(cfg, args.camera)
    grid = load_grid(args.cells_json, args.cells)
    run, planned = finetune_config(cfg, grid, args.light, args.dbar, args.seed, args.steps,
                                   train_frames(cfg.augment, args.shards))
    train_cell(run, out, Path(args.shards), Path("checkpoints/fig9") / Path(args.out).name / name / "last.pt",
               init_model=Path(planned["merge_model"]["path"]))
    write_json_atomic(out / "plan.json", planned)


if __name__ == "__main__":
    parser = stage_parser(__doc__)
    parser.add_argument("--light", type=float, required=True, help="scale of augment.white_level")
    parser.add_argument("--dbar", type=float, required=True, help="the shake's blur at full exposure (network px)")
    parser.add_argument("--seed", type=int, required=True, help="the training seed (params `seed`)")
    parser.add_argument("--steps", type=int, required=True, help="fine-tuning steps")
    parser.add_argument("--camera", default="", help="camera preset file (empty: the params' sensor.camera)")
    parser.add_argument("--shards", default="data/shards", help="shards directory (train and val are read)")
    parser.add_argument("--cells-json", default="sweeps/fig9/cells.json", help="the trained grid")
    parser.add_argument("--cells", default="sweeps/fig9/cells", help="directory of the cells' outputs")
    parser.add_argument("--out", default="sweeps/fig9/finetuned", help="directory of the fine-tuned merges")
    run_stage(main, parser, USES)
