"""Stage `interpolate`: temporally upsample every clip of clips.out_dir by interpolate.factor
(31 -> 241 frames at 8x; frame factor*k is original frame k exactly, the middle frame is the
ground truth) with interpolate.method (learned RIFE by default; minterpolate, linear),
interpolate.workers clips at a time. Writes interpolate.out_dir/{train,test}/<clip>.mkv (FFV1)
and index.json."""

from __future__ import annotations

import argparse
from typing import Any

from gimbal.cli_utils import run_stage, stage_parser
from gimbal.data.clips import ClipsConfig
from gimbal.data.interpolate import InterpolateConfig, interpolate_clips


def main(params: dict[str, Any], args: argparse.Namespace) -> None:
    cfg = InterpolateConfig.from_params(params)
    interpolate_clips(
        ClipsConfig.from_params(params).out_dir,
        cfg.out_dir,
        method=cfg.method,
        factor=cfg.factor,
        workers=cfg.workers,
        options=cfg.interpolator_options(),
    )


if __name__ == "__main__":
    run_stage(main, stage_parser(__doc__))
