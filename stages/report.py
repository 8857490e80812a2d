"""DVC stage `report`: the paper's Table 1 and Table 3 beside ours, generated from metrics/eval.json.

Writes reports/paper.md (both tables with 95% intervals, the paper's numbers, what is like for like) and
metrics/table3.json (per ablation: PSNR and the component's paired effect, with intervals; `dvc metrics show`).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from gimbal.cli_utils import run_stage, stage_parser
from gimbal.config import Config
from gimbal.io import write_bytes_atomic, write_json_atomic
from gimbal.report import paper_report, table3

# the params groups this stage reads: its `params:` in dvc.yaml (tests/test_stages.py)
USES: tuple[str, ...] = ()


def main(cfg: Config, args: argparse.Namespace) -> None:
    ev = json.loads(Path(args.eval).read_text())
    write_json_atomic(Path(args.table3), table3(ev))
    write_bytes_atomic(Path(args.out), paper_report(ev, fig9_report=args.fig9).encode())


if __name__ == "__main__":
    parser = stage_parser(__doc__)
    parser.add_argument("--eval", default="metrics/eval.json", help="metrics of the evaluate stage")
    parser.add_argument("--table3", default="metrics/table3.json", help="Table 3 metrics written")
    parser.add_argument("--out", default="reports/paper.md", help="the report written")
    parser.add_argument("--fig9", default=None, help="relative link to the Fig. 9 report, if any")
    run_stage(main, parser, USES)
