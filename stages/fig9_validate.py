"""DVC stage `validate` of sweeps/fig9/dvc.yaml: `gimbal plan` checked at held-out working points.

At each held-out point of the sweep's params (--grid `heldout`), plans the schedule on the trained grid
(--cells-json), merges it with the nearest cell's network, and compares on test with the models trained directly
there (--heldout): PSNR within 0.5 dB, exposures within the direct seeds' spread
(gimbal.planning.fig9_heldout.validate_heldout); with --finetuned, the merge fine-tuned at the point is
scored too. Writes sweeps/fig9/validation.json and sweeps/fig9/validation.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from gimbal.cli_utils import run_stage, stage_parser
from gimbal.config import Config
from gimbal.planning.fig9 import read_grid, with_camera
from gimbal.planning.fig9_heldout import validate_heldout

# the params groups this stage reads: its `params:` in sweeps/fig9/dvc.yaml
USES = ("seed", "sensor", "exposure", "augment", "model", "eval", "train")


def main(cfg: Config, args: argparse.Namespace) -> None:
    grid = read_grid(args.grid)
    validate_heldout(with_camera(cfg, grid.camera), grid, Path(args.cells_json), Path(args.cells),
                     Path(args.heldout), Path(args.shards), Path(args.out), Path(args.report),
                     finetuned_dir=Path(args.finetuned) if args.finetuned else None)


if __name__ == "__main__":
    parser = stage_parser(__doc__)
    parser.add_argument("--grid", default="sweeps/fig9/params.yaml", help="the sweep's params (heldout points)")
    parser.add_argument("--shards", default="data/shards", help="shards directory (test is read)")
    parser.add_argument("--cells-json", default="sweeps/fig9/cells.json", help="the trained grid")
    parser.add_argument("--cells", default="sweeps/fig9/cells", help="directory of the cells' outputs")
    parser.add_argument("--heldout", default="sweeps/fig9/heldout", help="directory of the held-out trainings")
    parser.add_argument("--finetuned", default="", help="directory of the fine-tuned merges (empty: none)")
    parser.add_argument("--out", default="sweeps/fig9/validation.json")
    parser.add_argument("--report", default="sweeps/fig9/validation.md")
    run_stage(main, parser, USES)
