"""Where does the pretrained flow network lose a known shift on the project's own bursts? Its gain on a known 2 px shift
(:func:`gimbal.models.liveness.flow_shift_gain`) on the val bursts of a variant (default ``gimbal_uniform``) as they
are, on bursts made of copies of each one's reference frame (with and without noise, with more contrast), and on
the synthetic pretraining task's held-out bursts:

    python experiments/flow_domain_gap.py [variant]

Reads models/flow_pretrained.pt and data/shards/val; prints one line per measurement (recorded in
experiments/results/README.md, "flow_domain_gap").
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "experiments"))

from flow_pretrain_transfer import val_flow_inputs  # noqa: E402
from inmemory import load_params  # noqa: E402

from gimbal.config import parse_config  # noqa: E402
from gimbal.models.liveness import flow_shift_gain  # noqa: E402
from gimbal.pipeline import flow_arch  # noqa: E402
from gimbal.training.flow_pretrain import FlowPretrainTask, load_pretrained_flow  # noqa: E402


def main() -> None:
    torch.set_num_threads(2)
    cfg = parse_config(load_params([]))
    scratch = Path("/tmp/flow_domain_gap")
    scratch.mkdir(exist_ok=True)
    val = val_flow_inputs(cfg, sys.argv[1] if len(sys.argv) > 1 else "gimbal_uniform", scratch)
    fp = cfg.flow_pretrain
    task = FlowPretrainTask(fp, flow_arch(cfg), fp.size or cfg.augment.out_size, torch.device("cpu"), scratch / "f.pt",
                            scratch / "f.json")
    load_pretrained_flow(task.flow, ROOT / "models/flow_pretrained.pt", flow_arch(cfg))
    flow = task.flow.eval()

    def gain(xs: list[torch.Tensor]) -> float:
        return round(sum(flow_shift_gain(flow, x) for x in xs) / len(xs), 3)

    r = val[0].shape[1] // 2
    copies = [x[:, r:r + 1].expand_as(x).contiguous() for x in val]
    torch.manual_seed(0)
    print("val bursts as they are", gain(val))
    print("copies of the reference frame", gain(copies))
    for s in (0.01, 0.03, 0.05):
        print("copies + noise", s, gain([c + s * torch.randn_like(c) for c in copies]))
    for k in (2, 4):
        print("copies, contrast x", k,
              gain([(c - c.mean((-1, -2), keepdim=True)) * k + c.mean((-1, -2), keepdim=True) for c in copies]))
    print("synthetic held-out, noisy", gain([b.noisy for b in task.val]))
    print("synthetic held-out, clean", gain([b.clean for b in task.val]))


if __name__ == "__main__":
    main()
