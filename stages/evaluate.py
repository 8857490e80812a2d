"""DVC stage `evaluate`: PSNR/SSIM of every method on one fixed set of held-out test scenes.

Methods: those of the table of methods (gimbal/methods.py): gimbal (learned exposures), gimbal_uniform, the timing
control gimbal_uniform_centred, kpn, the Table 3 ablations gimbal_no_flow, gimbal_no_norm, gimbal_anneal and
gimbal_anneal_no_flow, deblurgan, dmphn and the floors full_exposure, middle_frame and middle_frame_centred
(`--methods`: a subset of the trained ones), all on the same scenes with the same seeded exact-Poisson
noise. Writes metrics/summary.json (`dvc metrics show`: every method's PSNR and SSIM, the headline margins, the
learned schedule), metrics/eval.json (every interval and margin, bootstrapped over the test clips' source videos,
the split of ours - uniform into timing and exposure lengths, and the working point: e-bar, d-bar and the content's
own motion) and metrics/eval_by_source.json (the same per
source kind, real / synthetic), plots/eval_per_clip.csv and plots/eval_by_method.csv (`dvc plots`),
plots/psnr_by_method.png, plots/examples/example_<k>.png (Fig. 7 style) and plots/exposures_eval.png.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from gimbal import methods
from gimbal.cli_utils import run_stage, stage_parser
from gimbal.config import Config
from gimbal.evaluation.evaluate import evaluate

# the params groups this stage reads: its `params:` in dvc.yaml (tests/test_stages.py)
USES = ("sensor", "exposure", "augment", "model", "eval", "train")


def main(cfg: Config, args: argparse.Namespace) -> None:
    chosen = args.methods.split(",") if args.methods else None
    evaluate(cfg.eval, cfg.sensor, cfg.exposure, cfg.augment, cfg.model.channels, cfg.train,
             shards_dir=Path(args.shards), models_dir=Path(args.models), methods=chosen)


if __name__ == "__main__":
    parser = stage_parser(__doc__)
    parser.add_argument("--shards", default="data/shards", help="shards directory")
    parser.add_argument("--models", default="models", help="directory of the trained models (<variant>.pt, "
                        "deblurgan.pt)")
    parser.add_argument("--methods", default=None,
                        help=f"comma-separated trained methods to score, with the floors (default: all: "
                             f"{','.join(methods.trained())}; a subset "
                             "serves runs outside the DAG that train only some, e.g. README 'Medium experiment')")
    run_stage(main, parser, USES)
