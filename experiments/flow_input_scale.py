"""How the input's scale decides whether the flow network learns: the flow test of ``tests/test_learning.py`` (bursts of
a smooth [0, 1] texture whose non-reference frames are moved by known whole-pixel shifts, trained 1000 steps with the
committed recipe on the photometric alignment loss) with the bursts multiplied by each scale given.

    python experiments/flow_input_scale.py 1.0 0.25 0.1

Prints the held-out end-point error relative to no flow (1.0: learned nothing). The exposure-normalized bursts of the
embedded default have a mean near 0.1 of full scale; ``model.flow_norm`` scales the flow network's input to mean 0.5.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from test_learning import N, committed_recipe, shifted_bursts  # noqa: E402

from gimbal.models.flow import FlowNet, split_reference, warp  # noqa: E402
from gimbal.training.burst import make_optimizer, set_learning_rates  # noqa: E402


def main(scales: list[float], steps: int = 1000) -> None:
    torch.set_num_threads(1)
    for scale in scales:
        torch.manual_seed(0)
        train_cfg, _ = committed_recipe()
        gen = torch.Generator().manual_seed(0)
        flow = FlowNet(N, levels=2, channels=(16, 16, 8))
        opt = make_optimizer(flow, train_cfg)
        t0 = time.time()
        for step in range(steps):
            burst, _ = shifted_bursts(gen, 8)
            ref, others = split_reference(burst * scale)
            loss = (warp(others, flow(burst * scale)) - ref.unsqueeze(1))[..., 4:-4, 4:-4].abs().mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            set_learning_rates(opt, train_cfg, step)
            opt.step()
        burst, truth = shifted_bursts(torch.Generator().manual_seed(5), 16)
        with torch.no_grad():
            est = flow(burst * scale)[..., 6:-6, 6:-6].mean(dim=(-2, -1))
        epe, still = float((est - truth).norm(dim=-1).mean()), float(truth.norm(dim=-1).mean())
        print(json.dumps({"scale": scale, "steps": steps, "epe_over_no_flow": round(epe / still, 3),
                          "seconds": round(time.time() - t0)}), flush=True)


if __name__ == "__main__":
    main([float(s) for s in sys.argv[1:]] or [1.0, 0.25, 0.1])
