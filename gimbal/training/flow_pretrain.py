"""The flow network's pretraining on synthetic translations (:mod:`gimbal.models.flow_pretrain`), through the one
training loop (:func:`gimbal.training.loop.fit`: resume, checkpoints, dvclive, the choice on held-out bursts), and
the reader the end-to-end training starts its flow network from (:func:`load_pretrained_flow`).

Not in the paper (its flow network trains end to end from scratch over ~1e6 steps); ``flow_pretrain.use: false``
skips it.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from gimbal.checkpoint import load_weights, read_torch_file, run_fingerprint, save_checkpoint
from gimbal.errors import ModelFileIncompatible
from gimbal.io import write_json_atomic
from gimbal.models.flow import FlowNet
from gimbal.models.flow_pretrain import (
    FlowPretrainConfig,
    Translations,
    end_point_error,
    photometric_loss,
    synthetic_translations,
)
from gimbal.models.net import ModelConfig
from gimbal.params import group_dict
from gimbal.runtime import Dist, TrainConfig, setup_distributed
from gimbal.training.loop import Divergence, FitResult, fit

__all__ = ["FLOW_FILE", "FlowArch", "FlowPretrainTask", "load_pretrained_flow", "pretrain_flow"]

FLOW_FILE = "pretrained flow file"
"""What errors call the file :func:`pretrain_flow` writes."""


@dataclass(frozen=True)
class FlowArch:
    """The flow network's architecture (from ``exposure.n`` and the ``model`` group): what the pretrained weights
    must match."""

    n: int
    levels: int
    channels: tuple[int, ...]
    kernel_size: int

    @classmethod
    def for_model(cls, n: int, model: ModelConfig) -> FlowArch:
        """The flow network of bursts of ``n`` frames (``exposure.n``) under the ``model`` group."""
        return cls(n, model.flow_levels, tuple(model.flow_channels), model.kernel_size)

    def build(self) -> FlowNet:
        return FlowNet(self.n, levels=self.levels, channels=self.channels, kernel_size=self.kernel_size)

    def describe(self) -> dict[str, Any]:
        return {"n": self.n, "levels": self.levels, "channels": list(self.channels), "kernel_size": self.kernel_size}


class FlowPretrainTask:
    """The :class:`gimbal.training.loop.Task` of the pretraining: a :class:`FlowNet`, Adam at ``flow_pretrain.lr``,
    bursts drawn from the task's generator each step, and a fixed held-out set of ``val_bursts`` bursts scored by
    the end-point error (the choice maximises ``score`` = minus the end-point error in px)."""

    score_key = "score"

    def __init__(self, cfg: FlowPretrainConfig, arch: FlowArch, size: int, device: torch.device,
                 model_path: Path, metrics_path: Path) -> None:
        self.cfg, self.arch, self.size, self.device = cfg, arch, size, device
        self.name, self.steps = "flow_pretrain", cfg.steps
        self.paths = (model_path, metrics_path)
        torch.manual_seed(cfg.seed)
        self.flow = arch.build().to(device)
        self.opt = torch.optim.Adam(self.flow.parameters(), lr=cfg.lr)
        self.generator = torch.Generator().manual_seed(cfg.seed)
        self.rngs: dict[str, Any] = {}
        held_out = torch.Generator().manual_seed(cfg.seed + 1)
        self.val = [self._draw(held_out, min(cfg.batch_size, cfg.val_bursts - i))
                    for i in range(0, cfg.val_bursts, cfg.batch_size)]

    def _draw(self, generator: torch.Generator, batch: int) -> Translations:
        cfg = self.cfg
        t = synthetic_translations(generator, batch, self.arch.n, self.size, cfg.max_shift_px, cfg.noise_std,
                                   cfg.blur_sigma)
        return Translations(*(x.to(self.device) for x in t))

    def state(self) -> dict[str, Any]:
        return {"flow": self.flow.state_dict(), "optimizer": self.opt.state_dict()}

    def load_state(self, state: dict[str, Any]) -> None:
        self.flow.load_state_dict(state["flow"])
        self.opt.load_state_dict(state["optimizer"])

    def weights(self) -> dict[str, Any]:
        return self.flow.state_dict()

    def load_weights(self, weights: dict[str, Any]) -> None:
        self.flow.load_state_dict(weights)

    def start(self, ctx: Dist) -> None:
        self.flow.train()

    def train_step(self, step: int, clips: Any) -> torch.Tensor:
        batch = self._draw(self.generator, self.cfg.batch_size)
        return photometric_loss(self.flow(batch.noisy), batch.clean)

    def loss(self, out: torch.Tensor) -> float:
        return float(out.detach())

    def divergence(self, out: torch.Tensor) -> Divergence:
        return Divergence(["photometric loss"], {"flow_pretrain.lr": self.cfg.lr}, "lower flow_pretrain.lr")

    def optimize(self, step: int, out: torch.Tensor) -> None:
        self.opt.zero_grad(set_to_none=True)
        out.backward()
        self.opt.step()

    def logged(self, out: torch.Tensor) -> tuple[dict[str, float], dict[str, str]]:
        value = float(out.detach())
        return {"train/loss": value}, {"loss": f"{value:.4f}"}

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """``epe`` (px) and ``epe_ratio`` (to no flow) of the mean flow over each frame's interior, ``slope`` (the
        least-squares gain of the estimated on the true shifts: 1 follows them) and ``loss`` on the held-out set."""
        self.flow.eval()
        epe = still = loss = 0.0
        est, true = [], []
        for batch in self.val:
            flows = self.flow(batch.noisy)
            epe += float(end_point_error(flows, batch.shifts)) * len(batch.shifts)
            still += float(batch.shifts.norm(dim=-1).mean()) * len(batch.shifts)
            loss += float(photometric_loss(flows, batch.clean)) * len(batch.shifts)
            est.append(flows[..., 4:-4, 4:-4].mean(dim=(-2, -1)))
            true.append(batch.shifts)
        self.flow.train()
        count = self.cfg.val_bursts
        e, t = torch.cat(est), torch.cat(true)
        return {"loss": loss / count, "epe": epe / count, "epe_ratio": epe / still,
                "slope": float((e * t).sum() / (t * t).sum()), "score": -epe / count}

    def eligible(self, val: dict[str, float]) -> bool:
        return True

    def finish(self, result: FitResult) -> dict[str, Any]:
        model_path, metrics_path = self.paths
        val = result.val
        metrics = {"steps": self.steps, "selected_step": result.selected, "size": self.size,
                   "val_epe_px": val["epe"], "val_epe_ratio": val["epe_ratio"], "val_slope": val["slope"],
                   "val_loss": val["loss"], "architecture": self.arch.describe()}
        save_checkpoint(model_path, {"kind": FLOW_FILE, "architecture": self.arch.describe(),
                                     "params": group_dict(self.cfg), "size": self.size,
                                     "flow": self.flow.state_dict()})
        write_json_atomic(metrics_path, metrics)
        return metrics


def pretrain_flow(cfg: FlowPretrainConfig, arch: FlowArch, size: int, device: str, model_path: Path,
                  metrics_path: Path, live_dir: Path, checkpoint_path: Path) -> dict[str, Any]:
    """Pretrain the flow network ``arch`` on ``size`` px synthetic translations (``flow_pretrain`` group ``cfg``)
    on ``device`` (``train.device``: auto | cpu | cuda); write the weights of the best held-out validation to
    ``model_path`` (read back by :func:`load_pretrained_flow`), its metrics to ``metrics_path`` and the dvclive logs
    to ``live_dir``. Resumes from ``checkpoint_path``. Returns the metrics."""
    ctx, dev = setup_distributed(device)
    task = FlowPretrainTask(cfg, arch, size, dev, model_path, metrics_path)
    loop = TrainConfig(steps=max(cfg.steps, 1), batch_size=cfg.batch_size, lr=cfg.lr, val_every=cfg.val_every,
                       checkpoint_every=cfg.val_every, samples_per_clip=1, select="best_val", min_kernel_change=0.0)
    fingerprint = run_fingerprint({"flow_pretrain": group_dict(cfg), "architecture": arch.describe(), "size": size})
    return fit(task, loop, ctx, dev, itertools.repeat(None), fingerprint, checkpoint_path, live_dir,
               resume_device=dev, score_label="held-out score (minus the end-point error, px)", score_unit="")


def load_pretrained_flow(flow: FlowNet, path: Path, arch: FlowArch) -> FlowNet:
    """Load the weights :func:`pretrain_flow` wrote at ``path`` into ``flow`` (architecture ``arch``); a missing
    file, a file of another kind or another architecture raises a :class:`~gimbal.errors.ModelFileError` naming
    ``path`` and the fix."""
    fix = "re-run the pretraining (`dvc repro pretrain_flow`), or set flow_pretrain.use: false to train from scratch"
    state = read_torch_file(path, FLOW_FILE, fix, missing_fix=fix,
                            kind=lambda s: None if isinstance(s, dict) and s.get("kind") == FLOW_FILE
                            else "not a pretrained flow file")
    if state.get("architecture") != arch.describe():
        raise ModelFileIncompatible(f"{path}: pretrained for the flow network {state.get('architecture')}, not "
                                    f"{arch.describe()} (exposure.n, model.flow_levels, model.flow_channels, "
                                    f"model.kernel_size); {fix}")
    return load_weights(flow, state["flow"], path, "the flow network", fix)  # type: ignore[return-value]
