"""DVC stage `train` of sweeps/fig9/dvc.yaml (paper Fig. 9): the learned model at one light x shake cell.

Scales `augment.white_level` by --light and `augment.shake_std_deg` by --shake (gimbal.fig9.cell_config) and runs
the one training loop (gimbal.train.train, validation and checkpoint choice on val). Writes
sweeps/fig9/cells/<cell>/ (model.pt, train.json, exposures.json, exposures.png, dvclive/).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from gimbal.cli_utils import run_stage, stage_parser
from gimbal.config import Config
from gimbal.data.loader import check_batch_size
from gimbal.fig9 import cell_config, cell_name
from gimbal.train import train

# the params groups this stage reads: its `params:` in sweeps/fig9/dvc.yaml
USES = ("seed", "sensor", "exposure", "augment", "loss", "train", "model", "variants", "eval")


def main(cfg: Config, args: argparse.Namespace) -> None:
    name = cell_name(args.light, args.shake)
    out = Path(args.cells) / name
    world = int(os.environ.get("WORLD_SIZE", 1))  # torchrun's
    check_batch_size(args.shards, "train", cfg.train.batch_size, "train.batch_size", world)
    train(cell_config(cfg, args.light, args.shake), "gimbal", shards_dir=Path(args.shards),
          model_path=out / "model.pt", metrics_path=out / "train.json", exposures_path=out / "exposures.json",
          schedule_plot=out / "exposures.png", live_dir=out / "dvclive",
          checkpoint_path=Path("checkpoints/fig9") / name / "last.pt")


if __name__ == "__main__":
    parser = stage_parser(__doc__)
    parser.add_argument("--light", type=float, required=True, help="scale of augment.white_level")
    parser.add_argument("--shake", type=float, required=True, help="scale of augment.shake_std_deg")
    parser.add_argument("--shards", default="data/shards", help="shards directory (train and val are read)")
    parser.add_argument("--cells", default="sweeps/fig9/cells", help="directory of the cells' outputs")
    run_stage(main, parser, USES)
