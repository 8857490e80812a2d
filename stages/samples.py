"""Stage samples: render the offline sample videos (simulated drone flights over scikit-image photos).

Reads params ``samples.{images,width,height,frames,fps,crf,seed,out_dir}``; writes
``<samples.out_dir>/flight_<name>.mp4`` (H.264), replacing the folder atomically.
"""

from __future__ import annotations

import argparse

from gimbal.cli_utils import run_stage, stage_parser
from gimbal.config import Config
from gimbal.data.samples import make_samples

USES = ("samples",)  # the params groups this stage reads: its `params:` in dvc.yaml (tests/test_stages.py)


def main(cfg: Config, args: argparse.Namespace) -> None:
    s = cfg.samples
    make_samples(list(s.images), s.out_dir, width=s.width, height=s.height, frames=s.frames, fps=s.fps,
                 seed=s.seed, crf=s.crf)


if __name__ == "__main__":
    run_stage(main, stage_parser(__doc__), USES)
