"""Training loop of the end-to-end model (and of the KPN baseline, a model variant).

Seeded, resumable from the last checkpoint, logged with dvclive (loss, PSNR, the current
exposure times in microseconds), one GPU / CPU or several GPUs through ``torchrun``
(DistributedDataParallel; each rank reads its own subset of the shards).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from tqdm import tqdm

from gimbal.data.augment import AugmentConfig, augment_clips, scale_to_electrons
from gimbal.data.loader import make_loader
from gimbal.errors import ParamError
from gimbal.io import atomic_path, write_json_atomic
from gimbal.losses import psnr, ssim
from gimbal.params import get
from gimbal.sensor.plot import plot_schedule
from gimbal.system import GimbalSystem, exposure_report, save_system

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    """Params group ``train``.

    Attributes:
        steps: optimisation steps (paper: ~ 1e6; embedded default: a few hundred).
        batch_size: clips per step and per rank.
        lr: Adam learning rate (paper: 1e-4).
        seed: base seed (rank r uses seed + r for data order and noise).
        val_every: validate every this many steps (and at the end).
        val_clips: number of held-out test clips in the fixed validation set.
        checkpoint_every: save a resumable checkpoint every this many steps.
        loader: ``auto`` (DALI when it works, else PyTorch/PyAV), ``dali`` or ``torch``.
        device: ``auto`` (CUDA when available), ``cpu`` or ``cuda``.
        electrons_range: mean photo-electrons at full exposure drawn per clip (log-uniform).
        samples_per_clip: optimisation steps per decoded clip batch, each with a fresh random
            augmentation (crop, 3D rotation, brightness); > 1 amortises video decoding.
    """

    steps: int = 200
    batch_size: int = 4
    lr: float = 1e-4
    seed: int = 0
    val_every: int = 50
    val_clips: int = 4
    checkpoint_every: int = 50
    loader: str = "auto"
    device: str = "auto"
    electrons_range: tuple[float, float] = (100.0, 2000.0)
    samples_per_clip: int = 1

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> TrainConfig:
        erange = get(params, "sensor.electrons_range", list, default=list(cls.electrons_range))
        if len(erange) != 2 or not all(isinstance(x, (int, float)) for x in erange) or not 0 < erange[0] <= erange[1]:
            raise ParamError(f"params: 'sensor.electrons_range' must be [lo, hi] with 0 < lo <= hi, got {erange!r}")
        cfg = cls(
            steps=get(params, "train.steps", int, cls.steps),
            batch_size=get(params, "train.batch_size", int, cls.batch_size),
            lr=float(get(params, "train.lr", (int, float), cls.lr)),
            seed=get(params, "seed", int, cls.seed),
            val_every=get(params, "train.val_every", int, cls.val_every),
            val_clips=get(params, "train.val_clips", int, cls.val_clips),
            checkpoint_every=get(params, "train.checkpoint_every", int, cls.checkpoint_every),
            loader=get(params, "train.loader", str, cls.loader),
            device=get(params, "train.device", str, cls.device),
            electrons_range=(float(erange[0]), float(erange[1])),
            samples_per_clip=get(params, "train.samples_per_clip", int, cls.samples_per_clip),
        )
        for key in ("steps", "batch_size", "val_every", "val_clips", "checkpoint_every", "samples_per_clip"):
            if getattr(cfg, key) < 1:
                raise ParamError(f"params: 'train.{key}' must be >= 1, got {getattr(cfg, key)}")
        if cfg.lr <= 0:
            raise ParamError(f"params: 'train.lr' must be > 0, got {cfg.lr}")
        if cfg.loader not in ("auto", "dali", "torch"):
            raise ParamError(f"params: 'train.loader' must be auto, dali or torch, got {cfg.loader!r}")
        if cfg.device not in ("auto", "cpu", "cuda"):
            raise ParamError(f"params: 'train.device' must be auto, cpu or cuda, got {cfg.device!r}")
        return cfg


@dataclass(frozen=True)
class Dist:
    """Distributed context (``torchrun`` sets RANK / WORLD_SIZE / LOCAL_RANK)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup_distributed(device: str) -> tuple[Dist, torch.device]:
    """Initialise the process group when launched by ``torchrun`` and pick this rank's device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() if device == "auto" else device == "cuda"
    if device == "cuda" and not torch.cuda.is_available():
        raise ParamError("params: train.device is 'cuda' but no CUDA device is available; use 'auto' or 'cpu'")
    dev = torch.device(f"cuda:{local}") if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(dev)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
    return Dist(rank, world, local), dev


def clip_batches(
    shards_dir: Path, split: str, batch_size: int, backend: str, seed: int, ctx: Dist, device: torch.device
) -> Iterator[torch.Tensor]:
    """Endless iterator over shuffled clip batches ``(B, T_f, C, H, W)`` uint8, epoch after epoch.

    Clips stay 8-bit until :func:`make_irradiance` has cropped them (a float 720p clip is 2.7 GB).

    One loader serves every epoch (each ``iter()`` is a new, seeded epoch order).
    """
    loader = make_loader(
        shards_dir, split, batch_size=batch_size, backend=backend, shuffle=True, seed=seed,
        rank=ctx.rank, world_size=ctx.world, dtype=torch.uint8,
    )
    while True:
        got = False
        for clips, _meta in loader:
            got = True
            yield clips.to(device, non_blocking=True)
        if not got:
            raise ParamError(f"{shards_dir}/{split}: no clips to train on; check the shards stage output")


def make_irradiance(
    clips: torch.Tensor, augment: AugmentConfig, full_exposure_s: float, erange: tuple[float, float],
    generator: torch.Generator,
) -> torch.Tensor:
    """Dense sRGB clips ``(B, T_f, C, H, W)`` (uint8 or float in [0, 1]) -> augmented irradiance
    ``(B, T_f, C, h, w)`` in e-/s (Section 6.2)."""
    aug = augment_clips(clips, augment, generator)
    return scale_to_electrons(aug.linear, full_exposure_s, erange, generator)


def fixed_irradiance_set(
    shards_dir: Path, split: str, n_clips: int, batch_size: int, augment: AugmentConfig, budget_s: float,
    electrons_range: tuple[float, float], seed: int, backend: str = "auto", device: torch.device | str = "cpu",
) -> list[torch.Tensor]:
    """A fixed list of irradiance batches ``(b, T_f, C, h, w)`` (e-/s, on the CPU) from the first ``n_clips``
    clips of ``split`` in shard order, augmented and scaled with a generator seeded by ``seed``.

    The same arguments give the same tensors, so every method and variant is scored on the same scenes.
    """
    gen = torch.Generator().manual_seed(seed)
    out: list[torch.Tensor] = []
    n = 0
    loader = make_loader(shards_dir, split, batch_size=max(1, min(batch_size, n_clips)), backend=backend,
                         shuffle=False, seed=seed, rank=0, world_size=1, dtype=torch.uint8)
    for clips, _meta in loader:
        clips = clips[: n_clips - n]
        out.append(make_irradiance(clips.to(device), augment, budget_s, electrons_range, gen).cpu())
        n += clips.shape[0]
        if n >= n_clips:
            break
    if not out:
        raise ParamError(f"{shards_dir}/{split}: no clips found for the fixed {split} set; check the shards stage")
    return out


@torch.no_grad()
def validate(system: GimbalSystem, batches: list[torch.Tensor], seed: int, device: torch.device) -> dict[str, float]:
    """Mean loss / PSNR / SSIM on fixed batches with exact Poisson noise (eval mode), seeded."""
    was_training = system.training
    system.eval()
    system.sensor.set_seed(seed)
    losses, psnrs, ssims = [], [], []
    for irr in batches:
        out = system(irr.to(device), step=0)
        losses.append(float(out.loss))
        psnrs.extend(psnr(out.image, out.target, reduction="none").tolist())
        ssims.extend(ssim(out.image, out.target, reduction="none").tolist())
    system.train(was_training)
    return {"loss": sum(losses) / max(len(losses), 1), "psnr": sum(psnrs) / max(len(psnrs), 1),
            "ssim": sum(ssims) / max(len(ssims), 1)}


def save_checkpoint(path: Path, system: GimbalSystem, opt: torch.optim.Optimizer, step: int,
                    generator: torch.Generator, extra: dict[str, Any]) -> None:
    """Atomically save everything needed to resume at ``step``."""
    state = {
        "step": step,
        "system": system.state_dict(),
        "optimizer": opt.state_dict(),
        "data_generator": generator.get_state(),
        "torch_rng": torch.get_rng_state(),
        **extra,
    }
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def train(
    params: dict[str, Any],
    variant: str,
    shards_dir: Path,
    model_path: Path,
    metrics_path: Path,
    exposures_path: Path,
    schedule_plot: Path,
    live_dir: Path,
    checkpoint_path: Path,
) -> dict[str, Any]:
    """Train ``variant`` and write the model, metrics, exposure schedule (JSON + plot) and dvclive logs.

    Resumes from ``checkpoint_path`` when it exists and was written for the same params.
    Returns the final metrics dict.
    """
    cfg = TrainConfig.from_params(params)
    ctx, device = setup_distributed(cfg.device)
    torch.manual_seed(cfg.seed + ctx.rank)
    system = GimbalSystem.from_params(params, variant).to(device)
    system.sensor.set_seed(cfg.seed + 1000 * ctx.rank)
    augment = AugmentConfig.from_params(params)
    budget_s = system.sensor.camera.budget_s
    trainable = [p for p in system.parameters() if p.requires_grad]
    opt = torch.optim.Adam(trainable, lr=cfg.lr)
    gen = torch.Generator().manual_seed(cfg.seed + 7919 * (ctx.rank + 1))
    fingerprint = {"variant": variant, "params": _fingerprint(params)}

    start = 0
    if checkpoint_path.is_file():
        state = torch.load(checkpoint_path, map_location=device, weights_only=False)
        if state.get("fingerprint") == fingerprint and int(state["step"]) < cfg.steps:
            system.load_state_dict(state["system"])
            opt.load_state_dict(state["optimizer"])
            gen.set_state(state["data_generator"])
            torch.set_rng_state(state["torch_rng"])
            start = int(state["step"])
            log.info("resuming %s from step %d (%s)", variant, start, checkpoint_path)
        else:
            log.info("not resuming from %s: a finished run, or other params or code", checkpoint_path)

    model: torch.nn.Module = system
    if ctx.world > 1:
        model = torch.nn.parallel.DistributedDataParallel(
            system, device_ids=[device.index] if device.type == "cuda" else None)

    backend = cfg.loader
    val_batches = (
        fixed_irradiance_set(shards_dir, "test", cfg.val_clips, cfg.batch_size, augment, budget_s,
                             cfg.electrons_range, cfg.seed + 10_000, backend, device)
        if ctx.main else []
    )
    batches = clip_batches(shards_dir, "train", cfg.batch_size, backend, cfg.seed + ctx.rank, ctx, device)

    live = None
    if ctx.main:
        from dvclive import Live

        live = Live(str(live_dir), resume=start > 0, save_dvc_exp=False, dvcyaml=None)
    history: dict[str, float] = {}
    step_times: list[float] = []
    system.train()
    bar = tqdm(range(start, cfg.steps), desc=f"train {variant}", initial=start, total=cfg.steps,
               disable=not ctx.main, dynamic_ncols=True)
    last_val: dict[str, float] = {}
    for step in bar:
        t0 = time.perf_counter()
        if (step - start) % cfg.samples_per_clip == 0:
            clips = next(batches)
        irr = make_irradiance(clips, augment, budget_s, cfg.electrons_range, gen)
        out = model(irr, step=step)
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        loss_value = float(out.loss.detach())
        if not math.isfinite(loss_value):
            raise FloatingPointError(f"train {variant}: loss became {loss_value} at step {step}; lower train.lr")
        opt.step()
        step_times.append(time.perf_counter() - t0)
        done = step + 1
        if ctx.main and live is not None:
            train_psnr = float(psnr(out.image.detach(), out.target).mean())
            sched = system.sensor.schedule_us()
            live.log_metric("train/loss", loss_value)
            live.log_metric("train/psnr", train_psnr)
            for i, dt_us in enumerate(sched["durations_us"]):
                live.log_metric(f"exposure_us/dt{i}", float(dt_us))
            bar.set_postfix(loss=f"{loss_value:.4f}", psnr=f"{train_psnr:.2f}",
                            dt_us="/".join(f"{d:.0f}" for d in sched["durations_us"]))
            history["train_psnr"] = train_psnr
            history["train_loss"] = loss_value
            if done % cfg.val_every == 0 or done == cfg.steps:
                last_val = validate(system, val_batches, cfg.seed, device)
                for k, v in last_val.items():
                    live.log_metric(f"val/{k}", v)
            live.next_step()
            if done % cfg.checkpoint_every == 0 and done < cfg.steps:
                save_checkpoint(checkpoint_path, system, opt, done, gen, {"fingerprint": fingerprint})
    bar.close()

    metrics: dict[str, Any] = {}
    if ctx.main:
        if not last_val:
            last_val = validate(system, val_batches, cfg.seed, device)
        sched = exposure_report(system, variant)
        metrics = {
            "variant": variant,
            "steps": cfg.steps,
            "train_loss": history.get("train_loss"),
            "train_psnr": history.get("train_psnr"),
            "val_loss": last_val["loss"],
            "val_psnr": last_val["psnr"],
            "val_ssim": last_val["ssim"],
            "exposures_us": sched["durations_us"],
            "sec_per_step": sum(step_times) / len(step_times) if step_times else None,
            "device": str(device),
            "world_size": ctx.world,
        }
        save_checkpoint(checkpoint_path, system, opt, cfg.steps, gen, {"fingerprint": fingerprint})
        save_system(model_path, system, params, variant)
        write_json_atomic(exposures_path, sched)
        plot_schedule(system.sensor.exposure, schedule_plot, title=f"{variant}: shutter schedule")
        write_json_atomic(metrics_path, metrics)
        if live is not None:
            live.end()
    if ctx.world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return metrics


def code_fingerprint() -> str:
    """sha256 of the gimbal package's source: a checkpoint from other code is not resumed."""
    root = Path(__file__).resolve().parent
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        h.update(path.relative_to(root).as_posix().encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def run_fingerprint(relevant: dict[str, Any]) -> str:
    """Hash of what determines a training run: the relevant params plus the code (see :func:`code_fingerprint`)."""
    blob = json.dumps({"params": relevant, "code": code_fingerprint()}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def _fingerprint(params: dict[str, Any]) -> str:
    """Fingerprint of a model-variant run (``train.steps`` may grow on resume)."""
    relevant = {k: v for k, v in params.items() if k not in ("train", "eval", "baselines")}
    relevant["train"] = {k: v for k, v in (params.get("train") or {}).items()
                         if k not in ("steps", "val_every", "checkpoint_every", "loader", "device")}
    return run_fingerprint(relevant)
