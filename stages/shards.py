"""Stage `shards`: pack the interpolated clips of interpolate.out_dir/index.json into WebDataset
tar shards, shards.clips_per_shard clips each, re-encoded with shards.codec at shards.crf
(0 = lossless in YUV) and shards.pix_fmt. Writes shards.out_dir/{train,val,test}/shard-%05d.tar,
the DALI index (.idx) beside each tar, and each split's index.json; each split folder is built in a temp inside
itself and replaced once all are complete (a killed run's temp goes when DVC removes the outputs)."""

from __future__ import annotations

import argparse
from pathlib import Path

from gimbal.cli_utils import run_stage, stage_parser
from gimbal.config import Config
from gimbal.data.shards import build_shards

USES = ("interpolate", "shards")  # the params groups this stage reads: its `params:` in dvc.yaml (tests/test_stages.py)


def main(cfg: Config, args: argparse.Namespace) -> None:
    build_shards(Path(cfg.interpolate.out_dir) / "index.json", cfg.shards.out_dir, cfg.shards)


if __name__ == "__main__":
    run_stage(main, stage_parser(__doc__), USES)
