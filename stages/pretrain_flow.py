"""DVC stage `pretrain_flow`: pretrain the flow network on synthetic translations (not in the paper).

Writes models/flow_pretrained.pt (the weights the flow models' trainings start from, with `flow_pretrain.use`),
metrics/pretrain_flow.json and dvclive/pretrain_flow/ (loss, held-out end-point error). See
gimbal.models.flow_pretrain for the task and docs/results.md for why.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from gimbal.cli_utils import run_stage, stage_parser
from gimbal.config import Config
from gimbal.pipeline import pretrain_flow

# the params groups this stage reads: its `params:` in dvc.yaml (tests/test_stages.py)
USES = ("flow_pretrain", "exposure", "model", "augment", "train")


def main(cfg: Config, args: argparse.Namespace) -> None:
    pretrain_flow(cfg, model_path=Path(args.out), metrics_path=Path("metrics/pretrain_flow.json"),
                  live_dir=Path("dvclive/pretrain_flow"), checkpoint_path=Path("checkpoints/flow_pretrain/last.pt"))


if __name__ == "__main__":
    parser = stage_parser(__doc__)
    parser.add_argument("--out", default="models/flow_pretrained.pt", help="where the pretrained weights go")
    run_stage(main, parser, USES)
