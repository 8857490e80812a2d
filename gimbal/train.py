"""Training loop of the end-to-end model (and of the KPN baseline, a model variant).

Seeded (:class:`gimbal.runtime.Seeds`), resumable from the last checkpoint (:class:`gimbal.checkpoint.Resumable`),
logged with dvclive (loss, PSNR, the current exposure times in microseconds), one GPU / CPU or several GPUs
through ``torchrun`` (DistributedDataParallel; each rank reads its own subset of the shards). Scenes come from
the one data-to-irradiance path, :mod:`gimbal.data.irradiance`.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from tqdm import tqdm

from gimbal.checkpoint import Resumable, run_fingerprint
from gimbal.config import Config
from gimbal.data.irradiance import Scenes, clip_batches, fixed_irradiance_set, make_irradiance
from gimbal.io import write_json_atomic
from gimbal.metrics import psnr, ssim
from gimbal.params import group_dict
from gimbal.runtime import Seeds, TrainConfig, setup_distributed
from gimbal.sensor.plot import plot_schedule
from gimbal.errors import Interrupted
from gimbal.losses import gradient_l1_loss
from gimbal.models.liveness import gimbal_liveness
from gimbal.system import GimbalSystem, StepOutput, exposure_report, middle_frame_image, save_system

__all__ = ["LIVENESS_KEYS", "make_optimizer", "set_learning_rates", "train", "validate"]

LIVENESS_KEYS = ("kpn_dead", "kpn_last_dead", "kernel_spatial", "kernel_input", "flow_dead", "flow_last_dead",
                 "flow_shift_gain")
"""The liveness measures :func:`validate` adds (:func:`gimbal.models.liveness.gimbal_liveness`)."""

log = logging.getLogger(__name__)


@torch.no_grad()
def validate(system: GimbalSystem, batches: list[Scenes], seed: int, device: torch.device) -> dict[str, float]:
    """Mean loss / PSNR / SSIM on fixed batches with exact Poisson noise (eval mode), ``middle_frame_psnr``:
    the PSNR of the exposure-normalized middle frame of the same bursts (the floor the merge must beat), and the
    network's liveness on the first batch's bursts (:func:`gimbal.models.liveness.gimbal_liveness`: dead units,
    how the kernels vary over the frame and with the burst, whether the flow follows a known shift).

    The noise comes from a generator of its own seeded with ``seed``: every validation sees the same
    bursts, and the training noise stream is left untouched.
    """
    was_training = system.training
    system.eval()
    gen = torch.Generator(device=device).manual_seed(seed)
    durations = system.sensor.exposure.durations(torch.float64)
    losses, psnrs, ssims, middle = [], [], [], []
    live: dict[str, float] = {}
    for scenes in batches:
        out = system(scenes.irradiance.to(device), step=0, generator=gen, srgb=scenes.srgb.to(device))
        if not live:
            normalized = system.sensor.normalize(out.burst, durations) if system.normalize else out.burst
            live = gimbal_liveness(system.net, normalized.to(out.burst.dtype))
        losses.append(float(out.loss))
        psnrs.extend(psnr(out.image, out.target, reduction="none").tolist())
        ssims.extend(ssim(out.image, out.target, reduction="none").tolist())
        floor = middle_frame_image(system.sensor, out.burst, durations, system.display).to(out.target.dtype)
        middle.extend(psnr(floor, out.target, reduction="none").tolist())
    system.train(was_training)
    n = max(len(psnrs), 1)
    return {"loss": sum(losses) / max(len(losses), 1), "psnr": sum(psnrs) / n, "ssim": sum(ssims) / n,
            "middle_frame_psnr": sum(middle) / n, **live}


def _nonfinite_terms(out: StepOutput, system: GimbalSystem) -> list[str]:
    """The parts of a training step that are not finite, upstream first (for a divergence message)."""
    loss = system.loss_config
    parts = {"exposure times": system.sensor.exposure.durations(torch.float64), "burst": out.burst,
             "network output": out.image, "reconstruction term (eq. 16)": gradient_l1_loss(out.image, out.target, loss.mu)}
    if loss.anneal:
        parts["alignment term (eq. 18)"] = gradient_l1_loss(out.net.align_estimate, out.target, loss.mu)
    return [name for name, value in parts.items() if not bool(torch.isfinite(value.detach()).all())]


def make_optimizer(net: torch.nn.Module, tcfg: TrainConfig, exposure: list[torch.nn.Parameter] | None = None
                   ) -> torch.optim.Adam:
    """Adam over a network (a :class:`GimbalNet`, or a part of one) and the exposure logits, in up to three groups:
    the network (``train.lr``), the KPN output layer's bias ``kpn.head.bias`` (``train.kernel_bias_lr``) and the
    exposures (``train.exposure_lr``). Each group keeps its full rate as ``base_lr``; :func:`set_learning_rates`
    applies the warm-up (to the network's groups)."""
    named = [(name, p) for name, p in net.named_parameters() if p.requires_grad]
    bias = [p for name, p in named if name.endswith("kpn.head.bias")]
    params = [p for name, p in named if not name.endswith("kpn.head.bias")]
    groups = [{"name": "network", "params": params, "base_lr": tcfg.lr, "warmup": True}]
    if bias:
        groups.append({"name": "kernel_bias", "params": bias, "base_lr": tcfg.kernel_bias_lr or tcfg.lr,
                       "warmup": True})
    if exposure:
        groups.append({"name": "exposure", "params": exposure, "base_lr": tcfg.exposure_lr or tcfg.lr,
                       "warmup": False})
    for group in groups:
        group["lr"] = group["base_lr"]
    return torch.optim.Adam(groups)


def set_learning_rates(opt: torch.optim.Optimizer, tcfg: TrainConfig, step: int) -> None:
    """The learning rates of optimisation step ``step`` (0-based): ``base_lr``, warmed up where the group says."""
    scale = tcfg.lr_scale(step)
    for group in opt.param_groups:
        group["lr"] = group["base_lr"] * (scale if group["warmup"] else 1.0)


def _fingerprint(cfg: Config, variant: str, shards_dir: Path) -> str:
    """What determines a model-variant run: its groups, the variant's merged model, exposure and loss groups, the
    shard index, and the code. ``train.steps`` may grow on resume (unless the anneal follows the run length),
    and ``checkpoint_every``, ``loader`` and ``device`` do not change what is trained."""
    model, exposure, loss = cfg.variant(variant)
    steps_matter = loss.anneal_crossover is not None  # alpha follows train.steps
    train = {k: v for k, v in group_dict(cfg.train).items()
             if k not in ("checkpoint_every", "loader", "device") and (k != "steps" or steps_matter)}
    indexes = [shards_dir / split / "index.json" for split in ("train", "val")]
    return run_fingerprint({
        "variant": variant, "seed": cfg.seed, "target": cfg.eval.target, "sensor": group_dict(cfg.sensor), "exposure": group_dict(exposure),
        "model": group_dict(model), "loss": group_dict(loss), "augment": group_dict(cfg.augment), "train": train,
        "shards": [index.read_bytes().hex() if index.is_file() else None for index in indexes],
    })


def train(
    cfg: Config,
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

    Reads the groups ``seed``, ``sensor``, ``exposure``, ``model``, ``loss``, ``augment``, ``train``,
    ``variants`` and ``eval.target`` of ``cfg``. Resumes from ``checkpoint_path`` when it holds an unfinished run of the same params
    and code; the resumed run equals an uninterrupted one (weights, schedule and dvclive logs).
    Returns the final metrics dict.
    """
    tcfg = cfg.train
    ctx, device = setup_distributed(tcfg.device)
    seeds = Seeds.for_rank(cfg.seed, ctx.rank)
    torch.manual_seed(seeds.torch)
    system = GimbalSystem.from_config(cfg, variant).to(device)
    system.sensor.set_seed(seeds.noise)
    augment, camera, channels = cfg.augment, system.sensor.camera, system.net.channels
    exposure_params = [p for p in system.sensor.parameters() if p.requires_grad]
    opt = make_optimizer(system.net, tcfg, exposure_params)
    gen = torch.Generator().manual_seed(seeds.data)
    run = Resumable(checkpoint_path, _fingerprint(cfg, variant, shards_dir), gen,
                    rngs={"sensor": (system.sensor.rng_state, system.sensor.set_rng_state)})

    def load_model(state: dict[str, Any]) -> None:
        system.load_state_dict(state["system"])
        opt.load_state_dict(state["optimizer"])

    def model_state() -> dict[str, Any]:
        return {"system": system.state_dict(), "optimizer": opt.state_dict()}

    start = run.resume(tcfg.steps, load_model, variant, device)
    model: torch.nn.Module = system
    if ctx.world > 1:
        model = torch.nn.parallel.DistributedDataParallel(
            system, device_ids=[device.index] if device.type == "cuda" else None)

    val_batches = (
        fixed_irradiance_set(shards_dir, "val", tcfg.val_clips, tcfg.batch_size, augment, camera, channels,
                             seeds.validation, tcfg.loader, device)
        if ctx.main else []
    )
    batches = clip_batches(shards_dir, "train", tcfg.batch_size, tcfg.loader, seeds.loader, ctx, device)
    if ctx.main:
        run.open_live(live_dir)
    step_times: list[float] = []
    system.train()
    bar = tqdm(range(start, tcfg.steps), desc=f"train {variant}", initial=start, total=tcfg.steps,
               disable=not ctx.main, dynamic_ncols=True)
    last_val: dict[str, float] = {}
    last_train: dict[str, float] = {}
    step = start
    try:
        for step in bar:
            t0 = time.perf_counter()
            clips = run.clips(step, batches, tcfg.samples_per_clip)
            with torch.inference_mode():  # data preparation: no autograd
                scenes = make_irradiance(clips, augment, camera, channels, gen, exposure=system.sensor.exposure)
            out = model(scenes.irradiance.clone(), step=tcfg.clock_time(step, ctx.world), srgb=scenes.srgb.clone())
            loss_value = float(out.loss.detach())
            if not math.isfinite(loss_value):  # before backward: a NaN graph can crash it (GenGS indexing)
                raise run.diverged(f"train {variant}", step, loss_value, _nonfinite_terms(out, system),
                                   {"train.lr": tcfg.lr, "train.exposure_lr": (tcfg.exposure_lr or tcfg.lr)
                                    if exposure_params else None},
                                   "lower train.lr or train.exposure_lr (changed params start over), or check loss.mu")
            opt.zero_grad(set_to_none=True)
            out.loss.backward()
            set_learning_rates(opt, tcfg, step)
            opt.step()
            step_times.append(time.perf_counter() - t0)
            done = step + 1
            if ctx.main:
                train_psnr = float(psnr(out.image.detach(), out.target).mean())
                sched = system.sensor.schedule_us()
                logged = {"train/loss": loss_value, "train/psnr": train_psnr}
                for i, dt_us in enumerate(sched["durations_us"]):
                    logged[f"exposure_us/dt{i}"] = float(dt_us)
                bar.set_postfix(loss=f"{loss_value:.4f}", psnr=f"{train_psnr:.2f}",
                                dt_us="/".join(f"{d:.0f}" for d in sched["durations_us"]))
                last_train = {"train_psnr": train_psnr, "train_loss": loss_value}
                if done % tcfg.val_every == 0 or done == tcfg.steps:
                    last_val = validate(system, val_batches, seeds.validation, device)
                    logged.update({f"val/{k}": v for k, v in last_val.items()})
                    if tcfg.eligible(last_val):
                        run.offer(done, last_val["psnr"], system.state_dict(), last_val)
                run.log(step, logged)
                if done % tcfg.checkpoint_every == 0 and done < tcfg.steps:
                    run.save(done, model_state())
    except KeyboardInterrupt as exc:
        if isinstance(exc, Interrupted):
            raise
        raise run.interrupted(f"train {variant}", step) from None
    bar.close()

    metrics: dict[str, Any] = {}
    if ctx.main:
        if not last_val:
            last_val = validate(system, val_batches, seeds.validation, device)
            if tcfg.eligible(last_val):
                run.offer(tcfg.steps, last_val["psnr"], system.state_dict(), last_val)
        run.save(tcfg.steps, model_state())  # the last state (a longer run resumes from it), with the best on val
        selected = tcfg.steps
        if tcfg.select == "best_val" and run.best is None:
            log.warning("train %s: no validation had kernels that change with the burst by >= train.min_kernel_change "
                        "= %g (the KPN applies one fixed filter); keeping the last step's weights", variant,
                        tcfg.min_kernel_change)
        if tcfg.select == "best_val" and run.best is not None:
            selected, last_val = run.best["step"], run.best["info"]
            system.load_state_dict(run.best["model"])
            log.info("train %s: keeping step %d, the best val PSNR (%.2f dB)", variant, selected, last_val["psnr"])
        if not last_train and run.history:
            last = run.history[-1][1]
            last_train = {"train_psnr": last["train/psnr"], "train_loss": last["train/loss"]}
        sched = exposure_report(system, variant)
        metrics = {
            "variant": variant,
            "steps": tcfg.steps,
            "selected_step": selected,
            "train_loss": last_train.get("train_loss"),
            "train_psnr": last_train.get("train_psnr"),
            "val_loss": last_val["loss"],
            "val_psnr": last_val["psnr"],
            "val_ssim": last_val["ssim"],
            "val_middle_frame_psnr": last_val["middle_frame_psnr"],
            "exposures_us": sched["durations_us"],
            "liveness": {k: last_val[k] for k in LIVENESS_KEYS if k in last_val},
            "world_size": ctx.world,
        }
        save_system(model_path, system, cfg.raw, variant)
        write_json_atomic(exposures_path, sched)
        plot_schedule(system.sensor.exposure, schedule_plot, title=f"{variant}: shutter schedule")
        write_json_atomic(metrics_path, metrics)
        run.close_live()
        if step_times:
            log.info("train %s: %.3f s per step on %s (world size %d)", variant,
                     sum(step_times) / len(step_times), device, ctx.world)
    if ctx.world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return metrics
