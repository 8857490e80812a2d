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
from typing import Any, Literal

import torch
import torch.distributed as dist
from tqdm import tqdm

from gimbal.data.augment import AugmentConfig, augment_clips, augment_full_frames, to_irradiance, window
from gimbal.data.loader import make_loader
from gimbal.errors import ParamError
from gimbal.io import save_torch_atomic, write_json_atomic
from gimbal.losses import psnr, ssim
from gimbal.params import parse_group, seed_from_params
from gimbal.sensor.camera import CameraSpec
from gimbal.sensor.exposure import Exposure
from gimbal.sensor.integrate import used_samples
from gimbal.sensor.plot import plot_schedule
from gimbal.system import GimbalSystem, exposure_report, middle_frame_image, save_system

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    """Params group ``train`` (the embedded default; paper scale in comments).

    Attributes:
        steps: optimisation steps (paper: ~1e6).
        batch_size: clips per step and per rank (paper: 2 per GPU).
        lr: Adam learning rate of the network (and of the exposures, unless ``exposure_lr``; paper: 1e-4 for
            both, over ~1e6 steps).
        exposure_lr: Adam learning rate of the exposure logits (``None``: ``lr``). Adam moves a logit by about
            its learning rate per step, so a short run needs a larger one to move the schedule at all.
        samples_per_clip: optimisation steps per decoded clip batch, each with a fresh random augmentation
            (crop, shake, light level); > 1 amortises video decoding (paper scale: 1).
        val_every: validate every this many steps (and at the end).
        val_clips: number of held-out test clips in the fixed validation set.
        checkpoint_every: save a resumable checkpoint every this many steps.
        loader: ``auto`` (DALI when it works, else PyTorch/PyAV), ``dali`` or ``torch``.
        device: ``auto`` (CUDA when available), ``cpu`` or ``cuda``.
    """

    steps: int = 500
    batch_size: int = 4
    lr: float = 3e-3
    exposure_lr: float | None = None
    samples_per_clip: int = 8
    val_every: int = 50
    val_clips: int = 4
    checkpoint_every: int = 50
    loader: Literal["auto", "dali", "torch"] = "auto"
    device: Literal["auto", "cpu", "cuda"] = "auto"

    def __post_init__(self) -> None:
        for key in ("steps", "batch_size", "val_every", "val_clips", "checkpoint_every", "samples_per_clip"):
            if getattr(self, key) < 1:
                raise ParamError(f"params: 'train.{key}' must be >= 1, got {getattr(self, key)}")
        if self.lr <= 0 or (self.exposure_lr is not None and self.exposure_lr <= 0):
            raise ParamError(f"params: 'train.lr' and 'train.exposure_lr' must be > 0, got {self.lr}, "
                             f"{self.exposure_lr}")

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> TrainConfig:
        return parse_group(cls, params.get("train"), "train")


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
    clips: torch.Tensor, augment: AugmentConfig, camera: CameraSpec, channels: int, generator: torch.Generator,
    window_frames: int | None = None, exposure: Exposure | None = None, full_frame: bool = False,
) -> torch.Tensor:
    """Dense sRGB clips ``(B, T_f, 3, H, W)`` (uint8 or float in [0, 1]) -> augmented irradiance
    ``(B, T_w, channels, h, w)`` in e-/s (Section 6.2): the first ``window_frames`` frames (default
    ``augment.window_frames``) span the budget T. With ``exposure`` (the current schedule), only the frames
    it integrates and the middle one are computed; the others are 0 (they do not change the burst).
    ``full_frame``: whole frames resized by the training scale instead of random crops
    (:func:`~gimbal.data.augment.augment_full_frames`), ``(B, T_w, channels, h, w)``."""
    clips = window(clips, augment.window_frames if window_frames is None else window_frames)
    frames = None
    if exposure is not None:
        frames = used_samples(exposure.starts(torch.float64), exposure.durations(torch.float64), clips.shape[1],
                              camera.budget_s)
    aug = (augment_full_frames if full_frame else augment_clips)(clips, augment, generator, channels, frames)
    return to_irradiance(aug.linear, camera, augment.white_level, generator)


def fixed_irradiance_set(
    shards_dir: Path, split: str, n_clips: int, batch_size: int, augment: AugmentConfig, camera: CameraSpec,
    channels: int, seed: int, backend: str = "auto", device: torch.device | str = "cpu",
    window_frames: int | None = None, full_frame: bool = False,
) -> list[torch.Tensor]:
    """A fixed list of irradiance batches ``(b, T_w, C, h, w)`` (e-/s, on the CPU) from the first ``n_clips``
    clips of ``split`` in shard order, augmented and lit with a generator seeded by ``seed``.

    The same arguments give the same tensors, so every method and variant is scored on the same scenes.
    ``full_frame``: the whole frames (see :func:`make_irradiance`) instead of random crops.
    """
    gen = torch.Generator().manual_seed(seed)
    out: list[torch.Tensor] = []
    n = 0
    loader = make_loader(shards_dir, split, batch_size=max(1, min(batch_size, n_clips)), backend=backend,
                         shuffle=False, seed=seed, rank=0, world_size=1, dtype=torch.uint8)
    for clips, _meta in loader:
        clips = clips[: n_clips - n]
        out.append(make_irradiance(clips.to(device), augment, camera, channels, gen, window_frames,
                                   full_frame=full_frame).cpu())
        n += clips.shape[0]
        if n >= n_clips:
            break
    if not out:
        raise ParamError(f"{shards_dir}/{split}: no clips found for the fixed {split} set; check the shards stage")
    return out


@torch.no_grad()
def validate(system: GimbalSystem, batches: list[torch.Tensor], seed: int, device: torch.device) -> dict[str, float]:
    """Mean loss / PSNR / SSIM on fixed batches with exact Poisson noise (eval mode), and ``middle_frame_psnr``:
    the PSNR of the exposure-normalized middle frame of the same bursts (the floor the merge must beat).

    The noise comes from a generator of its own seeded with ``seed``: every validation sees the same
    bursts, and the training noise stream is left untouched.
    """
    was_training = system.training
    system.eval()
    gen = torch.Generator(device=device).manual_seed(seed)
    durations = system.sensor.exposure.durations(torch.float64)
    losses, psnrs, ssims, middle = [], [], [], []
    for irr in batches:
        out = system(irr.to(device), step=0, generator=gen)
        losses.append(float(out.loss))
        psnrs.extend(psnr(out.image, out.target, reduction="none").tolist())
        ssims.extend(ssim(out.image, out.target, reduction="none").tolist())
        floor = middle_frame_image(system.sensor, out.burst, durations).to(out.target.dtype)
        middle.extend(psnr(floor, out.target, reduction="none").tolist())
    system.train(was_training)
    n = max(len(psnrs), 1)
    return {"loss": sum(losses) / max(len(losses), 1), "psnr": sum(psnrs) / n, "ssim": sum(ssims) / n,
            "middle_frame_psnr": sum(middle) / n}


def save_checkpoint(path: Path, system: GimbalSystem, opt: torch.optim.Optimizer, step: int,
                    generator: torch.Generator, extra: dict[str, Any]) -> None:
    """Atomically save everything needed to resume at ``step``: weights, optimizer and every RNG
    (data augmentation, sensor noise, torch's global one)."""
    state = {
        "step": step,
        "system": system.state_dict(),
        "optimizer": opt.state_dict(),
        "data_generator": generator.get_state(),
        "sensor_rng": system.sensor.rng_state(),
        "torch_rng": torch.get_rng_state(),
        **extra,
    }
    save_torch_atomic(path, state)


def load_checkpoint(path: Path, device: torch.device) -> dict[str, Any] | None:
    """The checkpoint at ``path``, or ``None`` when there is none.

    An unreadable checkpoint is reported by name, moved aside to ``<name>.corrupt`` and ignored, so
    training starts fresh instead of failing until someone deletes it.
    """
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location=device, weights_only=False)
        if not isinstance(state, dict) or "step" not in state or "system" not in state:
            raise ValueError("not a training checkpoint")
        return state
    except Exception as exc:  # noqa: BLE001 - any unreadable file is handled the same way
        aside = path.with_name(path.name + ".corrupt")
        os.replace(path, aside)
        log.warning("%s: unreadable checkpoint (%s: %s); moved to %s, training starts from step 0",
                    path, type(exc).__name__, str(exc)[:200], aside)
        return None


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

    Resumes from ``checkpoint_path`` when it holds an unfinished run of the same params and code; the
    resumed run equals an uninterrupted one (weights, schedule and dvclive logs), since the checkpoint
    holds every RNG, the logged history, and the loader is replayed to the same clip batch.
    Returns the final metrics dict.
    """
    cfg = TrainConfig.from_params(params)
    seed = seed_from_params(params)
    ctx, device = setup_distributed(cfg.device)
    torch.manual_seed(seed + ctx.rank)
    system = GimbalSystem.from_params(params, variant).to(device)
    system.sensor.set_seed(seed + 1000 * ctx.rank)
    augment = AugmentConfig.from_params(params)
    camera = system.sensor.camera
    channels = system.net.channels
    exposure_params = [p for p in system.sensor.parameters() if p.requires_grad]
    net_params = [p for p in system.net.parameters() if p.requires_grad]
    groups = [{"params": net_params, "lr": cfg.lr}]
    if exposure_params:
        groups.append({"params": exposure_params, "lr": cfg.exposure_lr or cfg.lr})
    opt = torch.optim.Adam(groups, lr=cfg.lr)
    gen = torch.Generator().manual_seed(seed + 7919 * (ctx.rank + 1))
    fingerprint = {"variant": variant, "params": _fingerprint(params)}

    start = 0
    history: list[tuple[int, dict[str, float]]] = []  # (step, metrics) as logged to dvclive
    state = load_checkpoint(checkpoint_path, device)
    if state is not None:
        if state.get("fingerprint") == fingerprint and int(state["step"]) < cfg.steps:
            system.load_state_dict(state["system"])
            opt.load_state_dict(state["optimizer"])
            gen.set_state(state["data_generator"])
            system.sensor.set_rng_state(state["sensor_rng"])
            torch.set_rng_state(state["torch_rng"])
            history = list(state.get("history", []))
            start = int(state["step"])
            log.info("resuming %s from step %d (%s)", variant, start, checkpoint_path)
        else:
            log.info("not resuming from %s: a finished run, or other params or code", checkpoint_path)

    model: torch.nn.Module = system
    if ctx.world > 1:
        model = torch.nn.parallel.DistributedDataParallel(
            system, device_ids=[device.index] if device.type == "cuda" else None)

    backend = cfg.loader
    val_seed = seed + 10_000
    val_batches = (
        fixed_irradiance_set(shards_dir, "test", cfg.val_clips, cfg.batch_size, augment, camera, channels,
                             val_seed, backend, device)
        if ctx.main else []
    )
    batches = clip_batches(shards_dir, "train", cfg.batch_size, backend, seed + ctx.rank, ctx, device)
    drawn = 0  # clip batches taken from the loader; step s trains on batch s // samples_per_clip

    live = None
    if ctx.main:
        from dvclive import Live

        live = Live(str(live_dir), resume=False, save_dvc_exp=False, dvcyaml=None)
        for logged_step, logged in history:  # a resumed run rewrites the logs of the steps before it
            live.step = logged_step
            for name, value in logged.items():
                live.log_metric(name, value)
        if history:
            live.sync()
    step_times: list[float] = []
    system.train()
    bar = tqdm(range(start, cfg.steps), desc=f"train {variant}", initial=start, total=cfg.steps,
               disable=not ctx.main, dynamic_ncols=True)
    last_val: dict[str, float] = {}
    last_train: dict[str, float] = {}
    clips = None
    for step in bar:
        t0 = time.perf_counter()
        while drawn <= step // cfg.samples_per_clip:
            clips = next(batches)
            drawn += 1
        with torch.inference_mode():  # data preparation: no autograd
            irr = make_irradiance(clips, augment, camera, channels, gen, exposure=system.sensor.exposure)
        out = model(irr.clone(), step=step)
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
            logged = {"train/loss": loss_value, "train/psnr": train_psnr}
            for i, dt_us in enumerate(sched["durations_us"]):
                logged[f"exposure_us/dt{i}"] = float(dt_us)
            bar.set_postfix(loss=f"{loss_value:.4f}", psnr=f"{train_psnr:.2f}",
                            dt_us="/".join(f"{d:.0f}" for d in sched["durations_us"]))
            last_train = {"train_psnr": train_psnr, "train_loss": loss_value}
            if done % cfg.val_every == 0 or done == cfg.steps:
                last_val = validate(system, val_batches, val_seed, device)
                logged.update({f"val/{k}": v for k, v in last_val.items()})
            live.step = step
            for name, value in logged.items():
                live.log_metric(name, value)
            history.append((step, logged))
            live.sync()
            if done % cfg.checkpoint_every == 0 and done < cfg.steps:
                save_checkpoint(checkpoint_path, system, opt, done, gen,
                                {"fingerprint": fingerprint, "history": history})
    bar.close()

    metrics: dict[str, Any] = {}
    if ctx.main:
        if not last_val:
            last_val = validate(system, val_batches, val_seed, device)
        if not last_train and history:
            last_train = {"train_psnr": history[-1][1]["train/psnr"], "train_loss": history[-1][1]["train/loss"]}
        sched = exposure_report(system, variant)
        metrics = {
            "variant": variant,
            "steps": cfg.steps,
            "train_loss": last_train.get("train_loss"),
            "train_psnr": last_train.get("train_psnr"),
            "val_loss": last_val["loss"],
            "val_psnr": last_val["psnr"],
            "val_ssim": last_val["ssim"],
            "val_middle_frame_psnr": last_val["middle_frame_psnr"],
            "exposures_us": sched["durations_us"],
            "world_size": ctx.world,
        }
        save_checkpoint(checkpoint_path, system, opt, cfg.steps, gen, {"fingerprint": fingerprint, "history": history})
        save_system(model_path, system, params, variant)
        write_json_atomic(exposures_path, sched)
        plot_schedule(system.sensor.exposure, schedule_plot, title=f"{variant}: shutter schedule")
        write_json_atomic(metrics_path, metrics)
        if live is not None:
            live.end()
        if step_times:
            log.info("train %s: %.3f s per step on %s (world size %d)", variant,
                     sum(step_times) / len(step_times), device, ctx.world)
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
    steps_matter = (params.get("loss") or {}).get("anneal_crossover") is not None  # alpha follows train.steps
    relevant["train"] = {k: v for k, v in (params.get("train") or {}).items()
                         if k not in ("checkpoint_every", "loader", "device") and (k != "steps" or steps_matter)}
    return run_fingerprint(relevant)
