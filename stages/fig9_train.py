"""DVC stages `train` and `train_heldout` of sweeps/fig9/dvc.yaml (paper Fig. 9): the learned model at one cell.

A cell is a light scale (of `augment.white_level`), a camera-shake blur d-bar in network pixels (set through
`augment.shake_focal_net_px`, gimbal.planning.fig9.cell_config) and a training `seed`, for the camera --camera (a preset
file from `gimbal calibrate`; empty: the root params' `sensor.camera`). Runs the one training loop
(gimbal.pipeline.train, validation and checkpoint choice on val). The cells' flow networks train from scratch (the
committed grid was trained so): the sweep does not read `flow_pretrain`. Writes <cells>/<cell>/ (model.pt, train.json,
exposures.json, exposures.png, dvclive/).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from pathlib import Path

from gimbal.cli_utils import run_stage, stage_parser
from gimbal.config import Config
from gimbal.data.loader import check_batch_size
from gimbal.pipeline import train_cell
from gimbal.planning.fig9 import cell_config, cell_name, train_frames, with_camera
from gimbal.planning.finetune import fixed_schedule

# the params groups this stage reads: its `params:` in sweeps/fig9/dvc.yaml
USES = ("seed", "sensor", "exposure", "augment", "loss", "train", "model", "variants", "eval")


def main(cfg: Config, args: argparse.Namespace) -> None:
    name = cell_name(args.light, args.dbar, args.seed)
    out = Path(args.cells) / name
    world = int(os.environ.get("WORLD_SIZE", 1))  # torchrun's
    check_batch_size(args.shards, "train", cfg.train.batch_size, "train.batch_size", world)
    cfg = with_camera(cfg, args.camera)
    cell = cell_config(cfg, args.light, args.dbar, args.seed, train_frames(cfg.augment, args.shards))
    if args.exposures_us:  # a merge for a given schedule: the exposures fixed
        cell = fixed_schedule(cell, args.exposures_us)
    if args.steps is not None:
        cell = dataclasses.replace(cell, train=dataclasses.replace(cell.train, steps=args.steps))
    train_cell(cell, out, Path(args.shards), Path("checkpoints/fig9") / Path(args.cells).name / name / "last.pt",
               init_model=Path(args.init_model) if args.init_model else None)


if __name__ == "__main__":
    parser = stage_parser(__doc__)
    parser.add_argument("--light", type=float, required=True, help="scale of augment.white_level")
    parser.add_argument("--dbar", type=float, required=True, help="the shake's blur at full exposure (network px)")
    parser.add_argument("--seed", type=int, required=True, help="the training seed (params `seed`)")
    parser.add_argument("--camera", default="", help="camera preset file (empty: the params' sensor.camera)")
    parser.add_argument("--shards", default="data/shards", help="shards directory (train and val are read)")
    parser.add_argument("--cells", default="sweeps/fig9/cells", help="directory of the cells' outputs")
    parser.add_argument("--init-model", default="", help="start the networks from this trained model file (a cell's "
                        "model.pt: its merge fine-tuned here)")
    parser.add_argument("--exposures-us", type=float, nargs="+", help="fix the exposures to these durations (us; "
                        "the idle time last), e.g. a `gimbal plan` schedule: only the networks train")
    parser.add_argument("--steps", type=int, help="train.steps of this run (default: the params')")
    run_stage(main, parser, USES)
