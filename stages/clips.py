"""Stage `clips`: cut the fetched videos (data.raw_dir/manifest.json) into clips of
clips.length frames, clips.skip frames apart, never across a shot cut (clips.cut_threshold),
every frame fitted to clips.size; split train/test by source video, per source kind (videos
inside samples.out_dir are synthetic, the rest real).
Writes clips.out_dir/{train,test}/<video>_<k>.mkv (lossless FFV1) and clips.out_dir/index.json."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from gimbal.cli_utils import run_stage, stage_parser
from gimbal.data.clips import ClipsConfig, cut_clips
from gimbal.data.fetch import DataConfig
from gimbal.data.samples import SamplesConfig
from gimbal.params import seed_from_params


def main(params: dict[str, Any], args: argparse.Namespace) -> None:
    cfg = ClipsConfig.from_params(params)
    raw_dir = Path(DataConfig.from_params(params).raw_dir)
    cut_clips(
        raw_dir / "manifest.json",
        cfg.out_dir,
        length=cfg.length,
        skip=cfg.skip,
        test_fraction=cfg.test_fraction,
        seed=seed_from_params(params),
        size=cfg.size,
        cut_threshold=cfg.cut_threshold,
        synthetic_dir=SamplesConfig.from_params(params).out_dir,
    )


if __name__ == "__main__":
    run_stage(main, stage_parser(__doc__))
