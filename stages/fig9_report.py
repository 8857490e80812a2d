"""DVC stage `report` of sweeps/fig9/dvc.yaml (paper Fig. 9): score every cell on its test scenes and lay them out.

The grid (lights, dbars, seeds, camera) is read from the sweep's params file (--grid). Each cell's model is scored
on the first eval.clips test clips, lit and shaken like its training (the same seeded scenes and exact Poisson
noise for every cell). Writes sweeps/fig9/metrics.json (one object per cell and seed: white_level_scale,
dbar_target, seed, mean_electrons, blur_diameter_px, clipped_fraction, psnr, exposures_us, ...), the same keyed by
cell name in sweeps/fig9/cells.json (`dvc metrics show` reads no top-level list; `gimbal plan` reads it),
sweeps/fig9/fig9.png (the paper's layout), sweeps/fig9/heatmaps.png (PSNR and middle exposure) and
sweeps/fig9/report.md (with both trends tested against the seed spread).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from gimbal.cli_utils import run_stage, stage_parser
from gimbal.config import Config
from gimbal.io import write_json_atomic
from gimbal.planning.fig9 import cell_name, fig9_report, read_grid, with_camera

# the params groups this stage reads: its `params:` in sweeps/fig9/dvc.yaml
USES = ("seed", "sensor", "exposure", "augment", "model", "eval", "train")


def main(cfg: Config, args: argparse.Namespace) -> None:
    grid = read_grid(args.grid)
    records = fig9_report(with_camera(cfg, grid.camera), grid.cells(), Path(args.shards), Path(args.cells),
                          metrics_path=Path(args.metrics), figure=Path(args.figure), heatmaps=Path(args.heatmaps),
                          report=Path(args.report))
    write_json_atomic(Path(args.by_cell), {cell_name(r["white_level_scale"], r["dbar_target"], r["seed"]): r
                                           for r in records})


if __name__ == "__main__":
    parser = stage_parser(__doc__)
    parser.add_argument("--grid", default="sweeps/fig9/params.yaml", help="the sweep's params (lights, dbars, seeds)")
    parser.add_argument("--shards", default="data/shards", help="shards directory (test is read)")
    parser.add_argument("--cells", default="sweeps/fig9/cells", help="directory of the cells' outputs")
    parser.add_argument("--metrics", default="sweeps/fig9/metrics.json")
    parser.add_argument("--by-cell", default="sweeps/fig9/cells.json", help="the metrics keyed by cell name")
    parser.add_argument("--figure", default="sweeps/fig9/fig9.png")
    parser.add_argument("--heatmaps", default="sweeps/fig9/heatmaps.png")
    parser.add_argument("--report", default="sweeps/fig9/report.md")
    run_stage(main, parser, USES)
