"""Stage `interpolate`: temporally upsample every clip of clips.out_dir by interpolate.factor
(31 -> 241 frames at 8x; frame factor*k is original frame k exactly, the middle frame is the
ground truth) with interpolate.method (learned RIFE by default; minterpolate, linear),
interpolate.workers clips at a time. Writes interpolate.out_dir/{train,test}/<clip>.mkv (FFV1)
and index.json."""

from __future__ import annotations

import argparse

from gimbal.cli_utils import run_stage, stage_parser
from gimbal.config import Config
from gimbal.data.interpolate import interpolate_clips

USES = ("clips", "interpolate")  # the params groups this stage reads: its `params:` in dvc.yaml (tests/test_stages.py)


def main(cfg: Config, args: argparse.Namespace) -> None:
    i = cfg.interpolate
    interpolate_clips(cfg.clips.out_dir, i.out_dir, method=i.method, factor=i.factor, workers=i.workers,
                      options=i.interpolator_options())


if __name__ == "__main__":
    run_stage(main, stage_parser(__doc__), USES)
