"""Stage `clips`: cut the fetched videos (data.raw_dir/manifest.json) into clips of
clips.length frames, clips.skip frames apart, never across a shot cut (clips.cut_threshold),
every frame fitted to clips.size; split train / val / test by source video (seeded by clips.seed), per
source kind (videos inside samples.out_dir are synthetic, the rest real).
Writes clips.out_dir/{train,val,test}/<video>_<k>.mkv (lossless FFV1) and clips.out_dir/index.json."""

from __future__ import annotations

import argparse
from pathlib import Path

from gimbal.cli_utils import run_stage, stage_parser
from gimbal.config import Config
from gimbal.data.clips import cut_clips

USES = ("data", "samples", "clips")  # its `params:` in dvc.yaml (tests/test_stages.py)


def main(cfg: Config, args: argparse.Namespace) -> None:
    c = cfg.clips
    cut_clips(
        Path(cfg.data.raw_dir) / "manifest.json",
        c.out_dir,
        length=c.length,
        skip=c.skip,
        test_fraction=c.test_fraction,
        val_fraction=c.val_fraction,
        seed=c.seed,
        size=c.size,
        cut_threshold=c.cut_threshold,
        synthetic_dir=cfg.samples.out_dir,
    )


if __name__ == "__main__":
    run_stage(main, stage_parser(__doc__), USES)
