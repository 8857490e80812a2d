"""Does the synthetic pretraining teach the flow network to follow motion in the project's own bursts? Pretrains
the flow network of params.yaml on ``flow_pretrain``'s synthetic translations (the stage's task,
:class:`gimbal.training.flow_pretrain.FlowPretrainTask`) and, every ``--every`` steps, measures on the val split's
bursts (the first variant's fixed val set and noise, as the training validates) the flow's gain on a known 2 px
shift (:func:`gimbal.models.liveness.flow_shift_gain`) and its misalignment ratio
(:func:`gimbal.models.liveness.flow_alignment`), beside the held-out synthetic end-point error ratio and slope:

    python experiments/flow_pretrain_transfer.py --steps 1500 --every 250 [-S flow_pretrain.lr=3e-4 ...]

Prints one JSON line per measurement. Reads data/shards/val (build the data first: `dvc repro shards`).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "experiments"))

from inmemory import load_params  # noqa: E402

from gimbal.config import Config, parse_config  # noqa: E402
from gimbal.models.liveness import flow_alignment, flow_shift_gain  # noqa: E402
from gimbal.pipeline import flow_arch, gimbal_run  # noqa: E402
from gimbal.runtime import setup_distributed  # noqa: E402
from gimbal.training.burst import GimbalTask  # noqa: E402
from gimbal.training.flow_pretrain import FlowPretrainTask, load_pretrained_flow  # noqa: E402


def val_flow_inputs(cfg: Config, variant: str, scratch: Path) -> list[torch.Tensor]:
    """What the flow network sees of the val split's bursts, as variant ``variant``'s training validates them (its
    fixed val set, schedule and val noise seed): one ``(B, n, C, H, W)`` tensor per val batch. ``scratch``: a folder
    for the task's unused output paths."""
    ctx, dev = setup_distributed("cpu")
    host = GimbalTask(gimbal_run(cfg, variant), ROOT / "data/shards", ctx, dev,
                      *[scratch / n for n in ("m.pt", "m.json", "e.json", "p.png")])
    host.start(ctx)
    system, net = host.system, host.system.net
    gen = torch.Generator().manual_seed(host.seeds.validation)
    out = []
    with torch.no_grad():
        for scenes in host.val_batches:
            captured = system.sensor(scenes.irradiance, 0, gen)
            x = system.sensor.normalize(captured.burst, captured.durations_s)
            out.append(net.pad(net.flow_input(x, net.input_scale(x))))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--every", type=int, default=250)
    parser.add_argument("--variant", default="gimbal_uniform", help="whose val bursts (schedule) are measured")
    parser.add_argument("--weights", help="measure this pretrained flow file (models/flow_pretrained.pt) instead "
                        "of pretraining (--steps 0)")
    parser.add_argument("-S", dest="overrides", action="append", default=[], help="param overrides, as dvc exp -S")
    args = parser.parse_args()
    torch.set_num_threads(1)
    cfg = parse_config(load_params(args.overrides))
    dev = torch.device("cpu")
    scratch = Path("/tmp/flow_pretrain_transfer")
    val = val_flow_inputs(cfg, args.variant, scratch)
    fp = cfg.flow_pretrain
    task = FlowPretrainTask(fp, flow_arch(cfg), fp.size or cfg.augment.out_size, dev, scratch / "f.pt",
                            scratch / "f.json")
    if args.weights:
        load_pretrained_flow(task.flow, Path(args.weights), flow_arch(cfg))
        args.steps = 0
    t0 = time.perf_counter()
    for step in range(args.steps + 1):
        if step % args.every == 0:
            task.flow.eval()
            gain = sum(flow_shift_gain(task.flow, x) for x in val) / len(val)
            align = sum(flow_alignment(task.flow, x) for x in val) / len(val)
            synthetic = task.validate()
            print(json.dumps({"step": step, "val_shift_gain": round(gain, 3), "val_alignment": round(align, 3),
                              "synthetic_epe_ratio": round(synthetic["epe_ratio"], 3),
                              "synthetic_slope": round(synthetic["slope"], 3), "overrides": args.overrides,
                              "seconds": round(time.perf_counter() - t0)}), flush=True)
            task.flow.train()
        if step < args.steps:
            task.optimize(step, task.train_step(step, None))


if __name__ == "__main__":
    main()
