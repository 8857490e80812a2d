"""The one training loop of the single-image baselines (DeblurGAN-v2, DMPHN) on the full-exposure image.

Input: each training clip captured by the *same* simulated sensor as one exposure of the whole budget ``T``
(:func:`gimbal.system.full_exposure_image`, exact Poisson noise re-seeded per step by
:func:`gimbal.runtime.step_noise_seed`), through the floors' display (:class:`gimbal.display.Display`); target: the
run's target (``eval.target``). Scenes come from the one data-to-irradiance path (:mod:`gimbal.data.irradiance`).

Validation (every ``train.val_every`` steps, eval mode, exact Poisson noise of a fixed seed) scores the restored
image and its input on the val split twice: on ``train.val_clips`` training-size crops (``val/psnr``,
``val/input_psnr``) and on the same clips' whole frames as :mod:`gimbal.evaluate` scores the test split
(``val/frame_psnr``, ``val/frame_input_psnr``). With ``train.select: best_val`` the weights written are those of
the validation with the best *whole-frame* val PSNR: the measure the table reports (crops see only the frame
centre and no warp border). Resumable (:class:`gimbal.checkpoint.Resumable`), logged with dvclive, tqdm bar.

A baseline supplies a model with the :class:`Restorer` methods and its own fingerprint and metrics; it never
copies this loop.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any, Protocol

import torch
from tqdm import tqdm

from gimbal.checkpoint import Resumable, run_fingerprint
from gimbal.config import Config
from gimbal.data.irradiance import Scenes, clip_batches, fixed_irradiance_set, make_irradiance
from gimbal.display import Display
from gimbal.errors import Interrupted, ParamError
from gimbal.io import write_json_atomic
from gimbal.metrics import psnr, ssim
from gimbal.models.liveness import restorer_liveness
from gimbal.params import group_dict
from gimbal.runtime import Seeds, setup_distributed, step_noise_seed
from gimbal.sensor.model import Sensor
from gimbal.system import build_sensor, full_exposure_image

__all__ = ["Restorer", "restorer_fingerprint", "train_restorer", "validate_restorer"]

log = logging.getLogger(__name__)


class Restorer(Protocol):
    """What the loop needs of a single-image baseline (images ``(B, C, H, W)`` in [0, 1])."""

    step: int
    network: torch.nn.Module
    """The restoring network (the generator of a GAN): :func:`gimbal.models.liveness.restorer_liveness` inspects it."""

    def training_step(self, blurred: torch.Tensor, sharp: torch.Tensor) -> dict[str, float]:
        """One optimisation step; returns its losses (floats)."""

    def enhance(self, blurred: torch.Tensor) -> torch.Tensor:
        """The restored image, eval mode, no gradient."""

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume."""

    def load_state(self, state: dict[str, Any], where: Any) -> Any:
        """Load a :meth:`state_dict` (read from ``where``, which errors name)."""

    def save(self, path: Any) -> None:
        """Write the model file atomically."""


@torch.no_grad()
def validate_restorer(model: Restorer, sensor: Sensor, batches: list[Scenes], seed: int, device: torch.device | str,
                      display: Display) -> dict[str, float]:
    """Mean PSNR / SSIM (display space, vs ``display``'s target) of the restored full exposure and of the full
    exposure itself (``input_*``) on fixed scene ``batches``; exact Poisson noise seeded by ``seed``."""
    was_training = sensor.training
    sensor.eval()
    sensor.set_seed(seed)
    out: dict[str, list[float]] = {"psnr": [], "ssim": [], "input_psnr": [], "input_ssim": []}
    for scenes in batches:
        irr = scenes.irradiance.to(device)
        blurred = full_exposure_image(sensor, irr, display)
        target = display.ground_truth(irr, scenes.srgb.to(device), sensor.camera).to(blurred.dtype)
        restored = model.enhance(blurred)
        out["psnr"] += psnr(restored, target, reduction="none").tolist()
        out["ssim"] += ssim(restored, target, reduction="none").tolist()
        out["input_psnr"] += psnr(blurred, target, reduction="none").tolist()
        out["input_ssim"] += ssim(blurred, target, reduction="none").tolist()
    sensor.train(was_training)
    return {k: sum(v) / max(len(v), 1) for k, v in out.items()}


def restorer_fingerprint(cfg: Config, group: dict[str, Any]) -> str:
    """What determines a single-image baseline run: its params ``group`` (without ``steps``, which may grow on
    resume), the camera, the scenes' augmentation, the channels, the seed, the validation settings, and the code."""
    val = {k: getattr(cfg.train, k) for k in ("val_every", "val_clips", "samples_per_clip", "select")}
    return run_fingerprint({"seed": cfg.seed, "target": cfg.eval.target, "sensor": group_dict(cfg.sensor),
                            "exposure": group_dict(cfg.exposure), "augment": group_dict(cfg.augment),
                            "channels": cfg.model.channels, "group": {k: v for k, v in group.items() if k != "steps"},
                            "train": val, "full_frame": cfg.eval.full_frame})


def train_restorer(
    cfg: Config,
    name: str,
    model: Restorer,
    steps: int,
    batch_size: int,
    fingerprint: str,
    shards_dir: Path,
    model_path: Path,
    metrics_path: Path,
    live_dir: Path,
    checkpoint_path: Path,
    rates: dict[str, float],
    loss_key: str = "loss",
    summary_keys: tuple[str, ...] = (),
    extra_metrics: dict[str, Any] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Train ``model`` (a :class:`Restorer`) for ``steps`` steps of ``batch_size`` clips on full-exposure /
    target pairs and write the model file, metrics and dvclive logs.

    Reads the groups ``seed``, ``sensor``, ``exposure``, ``augment``, ``model.channels``, ``eval.target``,
    ``eval.full_frame`` and ``train`` (``val_every``, ``val_clips``, ``samples_per_clip``, ``checkpoint_every``,
    ``loader``, ``device``, ``select``). Resumes from ``checkpoint_path`` when it holds a run of ``fingerprint``
    (:func:`restorer_fingerprint`). ``name`` labels the bar, logs and errors; ``rates`` maps the learning-rate
    params to their values (for a divergence message). Returns the metrics written to ``metrics_path``: ``steps``,
    ``selected_step``, ``start_step``, ``train_loss`` (mean ``loss_key`` of the last <= 10 steps) and
    ``train_<key>`` for ``summary_keys``, the chosen validation's ``val_*`` (crops) and ``val_frame_*`` (whole
    frames), each with the input's, and ``extra_metrics``.
    """
    tcfg = cfg.train
    ctx, device = setup_distributed(tcfg.device)
    if ctx.world > 1:
        raise ParamError(f"train_{name} runs in one process; launch it with python, not torchrun")
    seeds = Seeds.for_rank(cfg.seed)
    torch.manual_seed(seeds.torch)
    sensor = build_sensor(cfg, learn_exposure=False).to(device).eval()  # exact Poisson: no gradient needed
    camera, channels, augment = sensor.camera, cfg.model.channels, cfg.augment
    display = Display.for_camera(cfg.eval.target, camera, augment.white_level)
    gen = torch.Generator().manual_seed(seeds.data)
    run = Resumable(checkpoint_path, fingerprint, gen)
    start = run.resume(steps, lambda state: model.load_state(state, checkpoint_path), name, "cpu") if steps > 0 else 0

    sets = {"": dict(full_frame=False), "frame_": dict(full_frame=True, window_frames=cfg.eval.window_frames)}
    val_sets = {prefix: fixed_irradiance_set(shards_dir, "val", tcfg.val_clips, batch_size, augment, camera, channels,
                                             seeds.validation, tcfg.loader, device, **kw) for prefix, kw in sets.items()}

    def validate() -> dict[str, float]:
        scores = {f"{prefix}{k}": v for prefix, batches in val_sets.items()
                  for k, v in validate_restorer(model, sensor, batches, cfg.seed, device, display).items()}
        sensor.set_seed(cfg.seed)  # the first val crops as validate_restorer saw them
        first = full_exposure_image(sensor, val_sets[""][0].irradiance.to(device), display)
        return {**scores, **restorer_liveness(model.network, model.enhance, first)}

    run.open_live(live_dir)
    step_times: list[float] = []
    last_val: dict[str, float] = {}
    if start < steps:
        batches = clip_batches(shards_dir, "train", batch_size, tcfg.loader, seeds.loader, ctx, device)
        bar = tqdm(range(start, steps), desc=f"train {name}", initial=start, total=steps, disable=not progress,
                   dynamic_ncols=True)
        step = start
        try:
            for step in bar:
                t0 = time.perf_counter()
                clips = run.clips(step, batches, tcfg.samples_per_clip)
                with torch.no_grad():
                    scenes = make_irradiance(clips, augment, camera, channels, gen)
                    sensor.set_seed(step_noise_seed(cfg.seed, step))
                    blurred = full_exposure_image(sensor, scenes.irradiance, display)
                    sharp = display.ground_truth(scenes.irradiance, scenes.srgb, camera).to(blurred.dtype)
                losses = model.training_step(blurred, sharp)
                if not math.isfinite(losses[loss_key]):
                    raise run.diverged(f"train {name}", step, losses[loss_key],
                                       [k for k, v in losses.items() if not math.isfinite(v)], rates,
                                       f"lower {' or '.join(rates)} (changed params start over)")
                step_times.append(time.perf_counter() - t0)
                done = step + 1
                logged = {f"train/{k}": v for k, v in losses.items()}
                bar.set_postfix({k: f"{losses[k]:.4f}" for k in (loss_key, *summary_keys)})
                if done % tcfg.val_every == 0 or done == steps:
                    last_val = validate()
                    logged.update({f"val/{k}": v for k, v in last_val.items()})
                    run.offer(done, last_val["frame_psnr"], model.state_dict(), last_val)
                run.log(step, logged)
                if done % tcfg.checkpoint_every == 0 and done < steps:
                    run.save(done, model.state_dict())
        except KeyboardInterrupt as exc:
            if isinstance(exc, Interrupted):
                raise
            raise run.interrupted(f"train {name}", step) from None
        bar.close()
    if not last_val:
        last_val = validate()
        if start == 0:  # nothing was logged (steps 0): log the evaluation so the dvclive plots exist
            run.log(0, {f"val/{k}": v for k, v in last_val.items()})
    if steps > 0:
        run.save(steps, model.state_dict())  # the last state (a longer run resumes from it), with the best on val
    selected = steps
    if tcfg.select == "best_val" and run.best is not None:
        selected, last_val = run.best["step"], run.best["info"]
        model.load_state(run.best["model"], checkpoint_path)
        log.info("train %s: keeping step %d, the best whole-frame val PSNR (%.2f dB)", name, selected,
                 last_val["frame_psnr"])

    recent = [m for _, m in run.history if f"train/{loss_key}" in m][-10:]  # the last <= 10 steps, resumed ones too

    def mean(key: str) -> float | None:
        return sum(r[f"train/{key}"] for r in recent) / len(recent) if recent else None

    metrics: dict[str, Any] = {"steps": steps, "selected_step": selected, "start_step": start,
                               "train_loss": mean(loss_key), **{f"train_{k}": mean(k) for k in summary_keys},
                               **{f"val_{k}": v for k, v in last_val.items()}, **(extra_metrics or {})}
    if step_times:
        log.info("train %s: %.3f s per step on %s", name, sum(step_times) / len(step_times), device)
    model.save(model_path)
    write_json_atomic(metrics_path, metrics)
    run.close_live()
    return metrics
