"""DVC stage `train_deblurgan`: train the DeblurGAN-v2 baseline on the single full-exposure image.

Trained from scratch on data/shards (or started from `baselines.deblurgan.weights`; with
`baselines.deblurgan.steps: 0` those weights are only validated). Writes models/deblurgan.pt,
metrics/train_deblurgan.json, dvclive/train_deblurgan/ and the resumable checkpoints/deblurgan/last.pt.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from gimbal.baselines.deblurgan.train import train_deblurgan
from gimbal.cli_utils import run_stage, stage_parser
from gimbal.config import Config

# the params groups this stage reads: its `params:` in dvc.yaml (tests/test_stages.py)
USES = ("seed", "sensor", "exposure", "augment", "model", "train", "baselines", "eval")


def main(cfg: Config, args: argparse.Namespace) -> None:
    train_deblurgan(
        cfg,
        shards_dir=Path(args.shards),
        model_path=Path("models/deblurgan.pt"),
        metrics_path=Path("metrics/train_deblurgan.json"),
        live_dir=Path("dvclive/train_deblurgan"),
        checkpoint_path=Path("checkpoints/deblurgan/last.pt"),
    )


if __name__ == "__main__":
    parser = stage_parser(__doc__)
    parser.add_argument("--shards", default="data/shards", help="shards directory")
    run_stage(main, parser, USES)
