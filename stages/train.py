"""DVC stage `train_<variant>`: train the end-to-end model (or a variant: uniform exposures, KPN).

A variant with a flow network starts it from models/flow_pretrained.pt (stage `pretrain_flow`) when
`flow_pretrain.use` is on. Writes models/<variant>.pt, metrics/train_<variant>.json, exposures/<variant>.json,
plots/exposures_<variant>.png and dvclive/train_<variant>/ (loss, PSNR, exposure curves).
Multi-GPU: `torchrun --nproc_per_node=K stages/train.py --variant gimbal`.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from gimbal.cli_utils import run_stage, stage_parser
from gimbal.config import Config
from gimbal.data.loader import check_batch_size
from gimbal.pipeline import flow_weights, train

# the params groups this stage reads: its `params:` in dvc.yaml (tests/test_stages.py)
USES = ("seed", "sensor", "exposure", "augment", "loss", "train", "model", "variants", "eval", "flow_pretrain")


def main(cfg: Config, args: argparse.Namespace) -> None:
    v = args.variant
    cfg.variant(v)  # an unknown variant, before any work
    world = int(os.environ.get("WORLD_SIZE", 1))  # torchrun's
    check_batch_size(args.shards, "train", cfg.train.batch_size, "train.batch_size", world)
    train(
        cfg,
        v,
        shards_dir=Path(args.shards),
        model_path=Path(f"models/{v}.pt"),
        metrics_path=Path(f"metrics/train_{v}.json"),
        exposures_path=Path(f"exposures/{v}.json"),
        schedule_plot=Path(f"plots/exposures_{v}.png"),
        live_dir=Path(f"dvclive/train_{v}"),
        checkpoint_path=Path(f"checkpoints/{v}/last.pt"),
        flow_weights=flow_weights(cfg, v, Path(args.flow_weights)),
    )


if __name__ == "__main__":
    parser = stage_parser(__doc__)
    parser.add_argument("--variant", default="gimbal", help="model variant (a key of 'variants' in params.yaml)")
    parser.add_argument("--shards", default="data/shards", help="shards directory")
    parser.add_argument("--flow-weights", default="models/flow_pretrained.pt",
                        help="the pretrained flow network (read when flow_pretrain.use is on and the variant has flow)")
    run_stage(main, parser, USES)
