"""DVC stages `train_deblurgan` and `train_dmphn`: train a single-image baseline on the full-exposure image.

`--baseline deblurgan`: DeblurGAN-v2, trained from scratch (or started from `baselines.deblurgan.weights`; with
`baselines.deblurgan.steps: 0` those weights are only validated). `--baseline dmphn`: DMPHN-1-2-4 (Zhang et al.
2019), trained from scratch (the paper used released GoPro weights, which cannot be downloaded here). Both train on
the train shards and choose on the val shards (`gimbal.baselines.single`). Writes models/<baseline>.pt,
metrics/train_<baseline>.json, dvclive/train_<baseline>/ and the resumable checkpoints/<baseline>/last.pt.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from gimbal import methods
from gimbal.cli_utils import run_stage, stage_parser
from gimbal.config import Config
from gimbal.data.loader import check_batch_size
from gimbal.pipeline import train_baseline

# the params groups this stage reads: its `params:` in dvc.yaml (tests/test_stages.py)
USES = ("seed", "sensor", "exposure", "augment", "model", "train", "baselines", "eval")


def main(cfg: Config, args: argparse.Namespace) -> None:
    name = args.baseline
    check_batch_size(args.shards, "train", getattr(cfg.baselines, name).batch_size, f"baselines.{name}.batch_size")
    train_baseline(
        cfg,
        name,
        shards_dir=Path(args.shards),
        model_path=Path(f"models/{name}.pt"),
        metrics_path=Path(f"metrics/train_{name}.json"),
        live_dir=Path(f"dvclive/train_{name}"),
        checkpoint_path=Path(f"checkpoints/{name}/last.pt"),
    )


if __name__ == "__main__":
    parser = stage_parser(__doc__)
    parser.add_argument("--baseline", required=True, choices=methods.single(), help="the single-image baseline")
    parser.add_argument("--shards", default="data/shards", help="shards directory")
    run_stage(main, parser, USES)
