"""DVC stage `train_dmphn`: train the DMPHN baseline (Zhang et al. 2019, 1-2-4) on the single full-exposure image.

Trained from scratch on the train and val shards (the paper used released GoPro weights, which cannot be
downloaded here). Writes models/dmphn.pt,
metrics/train_dmphn.json, dvclive/train_dmphn/ and the resumable checkpoints/dmphn/last.pt.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from gimbal.baselines.dmphn.train import train_dmphn
from gimbal.cli_utils import run_stage, stage_parser
from gimbal.config import Config

# the params groups this stage reads: its `params:` in dvc.yaml (tests/test_stages.py)
USES = ("seed", "sensor", "exposure", "augment", "model", "train", "baselines", "eval")


def main(cfg: Config, args: argparse.Namespace) -> None:
    train_dmphn(
        cfg,
        shards_dir=Path(args.shards),
        model_path=Path("models/dmphn.pt"),
        metrics_path=Path("metrics/train_dmphn.json"),
        live_dir=Path("dvclive/train_dmphn"),
        checkpoint_path=Path("checkpoints/dmphn/last.pt"),
    )


if __name__ == "__main__":
    parser = stage_parser(__doc__)
    parser.add_argument("--shards", default="data/shards", help="shards directory")
    run_stage(main, parser, USES)
