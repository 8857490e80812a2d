"""DVC stage `report`: the paper's Table 1 and Table 3 beside ours, generated from metrics/eval.json.

Writes reports/paper.md (both tables with 95% intervals over the test clips' source videos, the paper's numbers,
what is like for like, every trained model's (e-bar, d-bar) beside the test videos' own motion, and each
trained model's liveness from metrics/train_<method>.json) and
metrics/table3.json (per ablation: PSNR and the component's paired effect, with intervals; `dvc metrics show`).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import yaml

from gimbal import methods
from gimbal.cli_utils import run_stage, stage_parser
from gimbal.config import Config
from gimbal.errors import ParamError
from gimbal.evaluation.report import Scale, paper_report, table3
from gimbal.io import write_bytes_atomic, write_json_atomic

# the params groups this stage reads: its `params:` in dvc.yaml (tests/test_stages.py)
USES = ("variants", "augment", "model", "train")


def check_variants(variants: dict, pipeline: Path) -> None:
    """Refuse a model variant of params.yaml that no stage trains or scores (``dvc exp run -S
    '+variants.foo=...'`` used to report "Ran experiment" with nothing trained). The scored ones are the burst
    methods of the table of methods (gimbal/methods.py); ``pipeline`` (dvc.yaml) must train each with a stage
    ``train_<name>`` running ``--variant <name>`` (tests/test_stage_faults.py checks that the table and dvc.yaml
    agree)."""
    stages = (yaml.safe_load(pipeline.read_text()) or {}).get("stages", {}) if pipeline.is_file() else {}
    trained = {name[len("train_"):] for name, spec in stages.items()
               if name.startswith("train_") and "--variant" in str(spec.get("cmd", ""))}
    scored = methods.burst()
    for v in variants:
        if pipeline.is_file() and v not in trained:
            raise ParamError(
                f"params: 'variants.{v}' is trained by no stage ({pipeline} has no train_{v}), so no models/{v}.pt is "
                f"made; add a stage train_{v} to {pipeline} (a copy of train_gimbal_no_flow with `--variant {v}`, "
                f"'variants.{v}' in its params, models/{v}.pt in its outs and evaluate's deps) and a burst method "
                f"'{v}' to the table of methods (gimbal/methods.py), or remove 'variants.{v}'")
        if v not in scored:
            raise ParamError(f"params: 'variants.{v}' is trained (stage train_{v}) but not scored: add a burst method "
                             f"'{v}' to the table of methods (gimbal/methods.py) and models/{v}.pt to evaluate's deps "
                             f"in {pipeline}")


def main(cfg: Config, args: argparse.Namespace) -> None:
    check_variants(cfg.variants, Path(args.pipeline))
    ev = json.loads(Path(args.eval).read_text())
    train = {m: json.loads(p.read_text()) for m in methods.trained()
             if (p := Path(args.train_metrics) / f"train_{m}.json").is_file()}
    write_json_atomic(Path(args.table3), table3(ev))
    scale = Scale(cfg.augment.out_size, cfg.model.kpn_base_channels, cfg.model.kpn_depth, cfg.train.steps,
                  cfg.train.precision)
    other = None
    if args.other:
        parts = args.other.split(",")
        if len(parts) != 3 or not Path(parts[1]).is_file():
            raise ParamError(f"--other {args.other}: expected NAME,EVAL_JSON,LINK with an existing EVAL_JSON (e.g. "
                             "medium,metrics/medium/eval.json,medium.md); run that tier first or drop --other")
        other = (parts[0], json.loads(Path(parts[1]).read_text()), parts[2])
    write_bytes_atomic(Path(args.out), paper_report(ev, fig9_report=args.fig9, train=train, scale=scale,
                                                          source=Path(args.eval).as_posix(), other=other).encode())


if __name__ == "__main__":
    parser = stage_parser(__doc__)
    parser.add_argument("--eval", default="metrics/eval.json", help="metrics of the evaluate stage")
    parser.add_argument("--table3", default="metrics/table3.json", help="Table 3 metrics written")
    parser.add_argument("--out", default="reports/paper.md", help="the report written")
    parser.add_argument("--pipeline", default="dvc.yaml", help="the pipeline whose train_<variant> stages are checked "
                        "against params 'variants'")
    parser.add_argument("--train-metrics", default="metrics", help="folder of the trainings' metrics "
                        "(train_<method>.json: the liveness table)")
    parser.add_argument("--fig9", default=None, help="relative link to the Fig. 9 report, if any")
    parser.add_argument("--other", default=None, metavar="NAME,EVAL_JSON,LINK",
                        help="another tier's evaluation shown beside this run's, e.g. "
                             "medium,metrics/medium/eval.json,medium.md (LINK relative to the report)")
    run_stage(main, parser, USES)
