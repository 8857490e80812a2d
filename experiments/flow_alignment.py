"""Does a trained model's flow network align? Bursts of a smooth [0, 1] texture whose two non-reference frames are
moved by known whole-pixel shifts in [-2, 2]^2 (``tests/test_learning.py``'s ``shifted_bursts``), at two light levels
(x1 and x0.1), through each model file given:

    python experiments/flow_alignment.py models/gimbal.pt models/gimbal_anneal.pt

Prints per model and scale, as JSON lines: the correlation of the estimated mean flow with the true shifts, the
least-squares slope (1: follows them exactly), and the misalignment (mean absolute difference to the reference
frame over the interior) of the frames warped by the predicted flows against no warping at all.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from test_learning import shifted_bursts  # noqa: E402

from gimbal.models.flow import split_reference, warp  # noqa: E402
from gimbal.system import load_system  # noqa: E402


def measure(model: str, scales: tuple[float, ...] = (1.0, 0.1), bursts: int = 16) -> list[dict]:
    net = load_system(model).eval().net
    if net.flow is None:
        return [{"model": model, "flow": None}]
    burst, truth = shifted_bursts(torch.Generator().manual_seed(0), bursts)  # (B, 3, 1, 32, 32), (B, 2, 2)
    out = []
    for scale in scales:
        x = burst * scale
        with torch.no_grad():
            flows = net(x).flows
        est = flows[..., 6:-6, 6:-6].mean(dim=(-2, -1))
        ref, others = split_reference(x)
        still = float((others - ref.unsqueeze(1)).abs()[..., 4:-4, 4:-4].mean())
        warped = float((warp(others, flows) - ref.unsqueeze(1)).abs()[..., 4:-4, 4:-4].mean())
        out.append({"model": model, "scale": scale,
                    "corr": round(float(torch.corrcoef(torch.stack([est.flatten(), truth.flatten()]))[0, 1]), 3),
                    "slope": round(float((est * truth).sum() / (truth * truth).sum()), 3),
                    "misalignment_ratio": round(warped / still, 3)})
    return out


if __name__ == "__main__":
    torch.set_num_threads(1)
    for path in sys.argv[1:]:
        for row in measure(path):
            print(json.dumps(row), flush=True)
