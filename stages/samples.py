"""Stage samples: render the offline sample videos (simulated drone flights over scikit-image photos).

Reads params ``samples.{images,width,height,frames,fps,out_dir}`` and ``seed``; writes
``<samples.out_dir>/flight_<name>.mp4`` (H.264), replacing the folder atomically.
"""

from __future__ import annotations

import argparse
from typing import Any

from gimbal.cli_utils import run_stage, stage_parser
from gimbal.data.samples import SamplesConfig, make_samples
from gimbal.params import seed_from_params


def main(params: dict[str, Any], args: argparse.Namespace) -> None:
    cfg = SamplesConfig.from_params(params)
    make_samples(list(cfg.images), cfg.out_dir, width=cfg.width, height=cfg.height, frames=cfg.frames, fps=cfg.fps,
                 seed=seed_from_params(params), crf=cfg.crf)


if __name__ == "__main__":
    run_stage(main, stage_parser(__doc__))
