"""Stage `clips`: cut the fetched videos (data.raw_dir/manifest.json) into clips of
clips.length frames, clips.skip frames apart, split train/test by source video.
Writes clips.out_dir/{train,test}/<video>_<k>.mkv (lossless FFV1) and clips.out_dir/index.json."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from gimbal.cli_utils import run_stage, stage_parser
from gimbal.data.clips import cut_clips
from gimbal.params import get


def main(params: dict[str, Any], args: argparse.Namespace) -> None:
    raw_dir = Path(get(params, "data.raw_dir", str))
    cut_clips(
        raw_dir / "manifest.json",
        get(params, "clips.out_dir", str),
        length=get(params, "clips.length", int),
        skip=get(params, "clips.skip", int),
        test_fraction=get(params, "clips.test_fraction", (int, float)),
        seed=get(params, "seed", int),
    )


if __name__ == "__main__":
    run_stage(main, stage_parser(__doc__))
