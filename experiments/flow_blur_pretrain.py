"""A probe, not kept in the code: the flow pretraining with every frame (the reference too) carrying its own motion
blur (a box along a random line of up to LMAX px, 9 warped copies averaged), with the photometric loss or a
supervised end-point loss; every 250 steps the gain on a known shift and the misalignment on the val bursts of
``gimbal`` and ``gimbal_uniform``, and the synthetic held-out end-point error:

    python experiments/flow_blur_pretrain.py LMAX photometric|epe STEPS [MAX_SHIFT]

Prints one JSON line per measurement (experiments/results/flow_blur_pretrain.jsonl: LMAX 4, 1500 steps).
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "experiments"))

from flow_pretrain_transfer import val_flow_inputs  # noqa: E402
from inmemory import load_params  # noqa: E402

import gimbal.training.flow_pretrain as tfp  # noqa: E402
from gimbal.config import parse_config  # noqa: E402
from gimbal.models import flow_pretrain as fpm  # noqa: E402
from gimbal.models.flow import reference_index, warp  # noqa: E402
from gimbal.models.liveness import flow_alignment, flow_shift_gain  # noqa: E402
from gimbal.pipeline import flow_arch  # noqa: E402

LMAX, LOSS, STEPS = float(sys.argv[1]), sys.argv[2], int(sys.argv[3])
MAX_SHIFT = float(sys.argv[4]) if len(sys.argv) > 4 else 3.0


def blurred_translations(generator: torch.Generator, batch: int, n: int, size: int, max_shift_px: float,
                         noise_std: float, blur_sigma: tuple[float, float]) -> fpm.Translations:
    """``synthetic_translations`` with a motion blur of its own on every frame (the true shift: the blur's centre)."""
    pad = int(math.ceil(MAX_SHIFT + LMAX / 2)) + 2
    big = size + 2 * pad
    tex = fpm.random_texture(generator, batch, big, blur_sigma)
    shifts = (2 * torch.rand(batch, n - 1, 2, generator=generator) - 1) * MAX_SHIFT
    r = reference_index(n)
    full = torch.cat([shifts[:, :r], torch.zeros(batch, 1, 2), shifts[:, r:]], dim=1)  # (B, n, 2)
    length = LMAX * torch.rand(batch, n, generator=generator)
    angle = 2 * math.pi * torch.rand(batch, n, generator=generator)
    v = torch.stack([length * torch.cos(angle), length * torch.sin(angle)], dim=-1)
    acc = torch.zeros(batch, n, 1, big, big)
    for t in torch.linspace(-0.5, 0.5, 9):
        d = full + t * v
        acc += warp(tex.unsqueeze(1).expand(batch, n, 1, big, big).contiguous(),
                    (-d).view(batch, n, 2, 1, 1).expand(batch, n, 2, big, big))
    clean = (acc / 9)[..., pad:pad + size, pad:pad + size]
    level = noise_std * torch.rand(batch, 1, 1, 1, 1, generator=generator)
    return fpm.Translations(clean + level * torch.randn(clean.shape, generator=generator), clean, shifts)


def epe_step(self: Any, step: int, clips: Any) -> torch.Tensor:
    b = self._draw(self.generator, self.cfg.batch_size)
    return fpm.end_point_error(self.flow(b.noisy), b.shifts, border=2)


def main() -> None:
    tfp.synthetic_translations = blurred_translations  # type: ignore[assignment]
    if LOSS == "epe":
        tfp.FlowPretrainTask.train_step = epe_step  # type: ignore[method-assign]
    torch.set_num_threads(1)
    cfg = parse_config(load_params([]))
    scratch = Path(f"/tmp/flow_blur_pretrain_{LMAX}{LOSS}")
    scratch.mkdir(exist_ok=True)
    vals = {variant: val_flow_inputs(cfg, variant, scratch) for variant in ("gimbal", "gimbal_uniform")}
    fp = cfg.flow_pretrain
    task = tfp.FlowPretrainTask(fp, flow_arch(cfg), fp.size or cfg.augment.out_size, torch.device("cpu"),
                                scratch / "f.pt", scratch / "f.json")
    t0 = time.perf_counter()
    for step in range(STEPS + 1):
        if step % 250 == 0:
            task.flow.eval()
            rec: dict[str, Any] = {"step": step, "lmax": LMAX, "loss": LOSS, "maxs": MAX_SHIFT,
                                   "s": round(time.perf_counter() - t0)}
            for v, xs in vals.items():
                rec[v + "_gain"] = round(sum(flow_shift_gain(task.flow, x) for x in xs) / len(xs), 3)
                rec[v + "_align"] = round(sum(flow_alignment(task.flow, x) for x in xs) / len(xs), 3)
            synthetic = task.validate()
            rec["syn_epe_ratio"], rec["syn_slope"] = round(synthetic["epe_ratio"], 3), round(synthetic["slope"], 3)
            print(json.dumps(rec), flush=True)
            task.flow.train()
        if step < STEPS:
            task.optimize(step, task.train_step(step, None))


if __name__ == "__main__":
    main()
