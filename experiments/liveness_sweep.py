"""Train one model variant with param overrides and print its val PSNR and liveness (choices made on val only).

    python experiments/liveness_sweep.py kpn -S train.lr=1e-3 -S model.kpn_init=released --out results.jsonl

Runs :func:`gimbal.training.burst.train` (the stage's own loop; the flow network from ``models/flow_pretrained.pt``
as the pipeline starts it, ``--flow-weights``) on ``data/shards`` (train and val splits only) into a
temporary folder, at ``torch.set_num_threads(GIMBAL_THREADS or 1)``, and appends one JSON line: the overrides, the
selected step, val PSNR and its middle-frame floor, the liveness measures of the selected weights
(:mod:`gimbal.models.liveness`) and the val curve (PSNR and liveness at every validation).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from experiments.inmemory import load_params  # noqa: E402  (params.yaml with -S overrides, validated)
from gimbal.config import parse_config  # noqa: E402
from gimbal.pipeline import flow_weights, train  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("variant")
    ap.add_argument("-S", dest="overrides", action="append", default=[])
    ap.add_argument("--shards", default=str(ROOT / "data/shards"))
    ap.add_argument("--flow-weights", default=str(ROOT / "models/flow_pretrained.pt"),
                    help="the pretrained flow network (stage pretrain_flow), used as the pipeline uses it")
    ap.add_argument("--out", required=True, help="JSON-lines file the result is appended to")
    ap.add_argument("--kpn-init-scale", type=float, default=None,
                    help="scale of the KPN output layer's initial weights (the KPN's init_scale; default 0.1)")
    args = ap.parse_args()
    if args.kpn_init_scale is not None:  # an experiment knob, not a param: every KPN built here starts at this scale
        import functools

        from gimbal.models import kpn, net

        net.KPN = functools.partial(kpn.KPN, init_scale=args.kpn_init_scale)
    torch.set_num_threads(int(os.environ.get("GIMBAL_THREADS", "1")))
    params = load_params(args.overrides)
    cfg = parse_config(params)
    t0 = time.time()
    weights = flow_weights(cfg, args.variant, Path(args.flow_weights))
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        metrics = train(cfg, args.variant, Path(args.shards), t / "m.pt", t / "metrics.json", t / "exp.json",
                        t / "sched.png", t / "live", t / "ckpt.pt",
                        flow_weights=weights)
        curve = {}
        for key in ("psnr", "kernel_input", "kpn_dead", "flow_shift_gain", "flow_alignment"):
            tsv = t / "live" / "plots" / "metrics" / "val" / f"{key}.tsv"
            if tsv.is_file():  # dvclive: a header, then step<TAB>value lines
                rows = [line.split("\t") for line in tsv.read_text().splitlines()[1:]]
                curve[key] = [(int(r[0]), round(float(r[-1]), 4)) for r in rows]
    record = {"variant": args.variant, "overrides": args.overrides, "kpn_init_scale": args.kpn_init_scale,
              "flow_weights": str(weights),
              "steps": cfg.train.steps,
              "selected_step": metrics["selected_step"], "val_psnr": metrics["val_psnr"],
              "val_middle_frame_psnr": metrics["val_middle_frame_psnr"], "exposures_us": metrics["exposures_us"],
              "liveness": metrics["liveness"], "val_curve": curve, "wall_s": round(time.time() - t0, 1),
              "threads": torch.get_num_threads()}
    with open(args.out, "a") as fh:
        fh.write(json.dumps(record) + "\n")
    print(json.dumps(record))


if __name__ == "__main__":
    main()
