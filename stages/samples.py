"""Stage samples: render the offline sample videos (simulated drone flights over scikit-image photos).

Reads params ``samples.{images,width,height,frames,fps,out_dir}`` and ``seed``; writes
``<samples.out_dir>/flight_<name>.mp4`` (H.264), replacing the folder atomically.
"""

from __future__ import annotations

import argparse
from typing import Any

from gimbal.cli_utils import run_stage, stage_parser
from gimbal.data.samples import make_samples
from gimbal.errors import ParamError
from gimbal.params import get


def main(params: dict[str, Any], args: argparse.Namespace) -> None:
    names = get(params, "samples.images", list)
    if not all(isinstance(n, str) for n in names):
        raise ParamError(f"params: 'samples.images' must be a list of photo names, got {names!r}")
    make_samples(
        names,
        get(params, "samples.out_dir", str),
        width=get(params, "samples.width", int),
        height=get(params, "samples.height", int),
        frames=get(params, "samples.frames", int),
        fps=get(params, "samples.fps", (int, float)),
        seed=get(params, "seed", int),
        crf=get(params, "samples.crf", int, 12),
    )


if __name__ == "__main__":
    run_stage(main, stage_parser(__doc__))
