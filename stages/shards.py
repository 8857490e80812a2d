"""Stage `shards`: pack the interpolated clips of interpolate.out_dir/index.json into WebDataset
tar shards, shards.clips_per_shard clips each, re-encoded with shards.codec at shards.crf
(0 = lossless in YUV) and shards.pix_fmt. Writes shards.out_dir/{train,test}/shard-%05d.tar,
the DALI index (.idx) beside each tar, and shards.out_dir/index.json; the directory is
replaced atomically."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from gimbal.cli_utils import run_stage, stage_parser
from gimbal.data.interpolate import InterpolateConfig
from gimbal.data.shards import ShardConfig, build_shards


def main(params: dict[str, Any], args: argparse.Namespace) -> None:
    cfg = ShardConfig.from_params(params)
    build_shards(Path(InterpolateConfig.from_params(params).out_dir) / "index.json", cfg.out_dir, cfg)


if __name__ == "__main__":
    run_stage(main, stage_parser(__doc__))
