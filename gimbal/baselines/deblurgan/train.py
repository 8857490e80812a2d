"""Training recipe of the DeblurGAN-v2 baseline on the single full-exposure image (paper Table 1/2 baseline).

Input: the clip captured by the *same* simulated sensor as one exposure of the whole budget ``T``
(:func:`gimbal.system.full_exposure_image`, exact Poisson noise; the brightness eq. 14 normalizes bursts to),
through the floors' display (:class:`gimbal.display.Display`: fixed gain, clip, display curve); target: the run's
target (``eval.target``; default the sRGB middle frame, the authors'). Scenes come from the one data-to-irradiance path
(:mod:`gimbal.data.irradiance`), so the baseline sees the data distribution of the models it is compared
with. No pretrained weights can be downloaded here: it trains from scratch, or starts from user-given
weights (``baselines.deblurgan.weights``); with ``baselines.deblurgan.steps: 0`` those weights are only
validated and written out.

Seeded (:class:`gimbal.runtime.Seeds`; the sensor noise is re-seeded per step, :func:`gimbal.runtime.step_noise_seed`),
resumable from ``checkpoints/deblurgan/last.pt`` through :class:`gimbal.checkpoint.Resumable` (a killed and
resumed run equals an uninterrupted one), logged with dvclive, tqdm progress bar.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from gimbal.baselines.deblurgan.model import CHECKPOINT_FORMAT, PARAM_GROUP, DeblurGANConfig, DeblurGANv2
from gimbal.checkpoint import Resumable, run_fingerprint, verify_checksum
from gimbal.config import Config
from gimbal.data.irradiance import Scenes, clip_batches, fixed_irradiance_set, make_irradiance
from gimbal.display import Display
from gimbal.errors import DataError, Interrupted, ParamError
from gimbal.io import write_json_atomic
from gimbal.metrics import psnr, ssim
from gimbal.params import group_dict
from gimbal.runtime import Seeds, setup_distributed, step_noise_seed
from gimbal.sensor.model import Sensor
from gimbal.system import build_sensor, full_exposure_image

__all__ = ["load_deblurgan_weights", "train_deblurgan", "validate_deblurgan"]

log = logging.getLogger(__name__)


def load_deblurgan_weights(
    config: DeblurGANConfig, channels: int, seed: int, path: str | Path, device: torch.device | str = "cpu"
) -> DeblurGANv2:
    """A fresh :class:`DeblurGANv2` (``config``, new optimisers, step 0) with the networks of ``path``.

    ``path`` is either a checkpoint of :meth:`DeblurGANv2.save` (its architecture keys win over the
    config, generator and discriminator are loaded) or a bare generator state dict (optionally under
    ``generator`` / ``model`` / ``state_dict``, ``module.`` prefixes stripped) for the config's architecture.
    Raises :class:`DataError` naming the file and the param when it is missing or does not fit.
    """
    path = Path(path)
    where = f"{path} (params '{PARAM_GROUP}.weights')"
    if not path.is_file():
        raise DataError(f"{where}: weights file not found; fix the path or set it to null to train from scratch")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # any unpickling/zip error means a bad file
        raise DataError(f"{where}: not a readable torch weights file ({exc})") from exc
    state = verify_checksum(state, where)
    if isinstance(state, dict) and state.get("format") == CHECKPOINT_FORMAT and isinstance(state.get("config"), dict):
        saved = state["config"]
        mine = config.arch(channels)
        arch = {k: saved[k] for k in DeblurGANConfig.ARCH_KEYS if k in saved}
        changed = {k: (mine[k], v) for k, v in arch.items() if mine[k] != v}
        if changed:
            log.warning("DeblurGAN-v2: using the architecture of %s: %s", path,
                        ", ".join(f"{k}={v!r} (params: {p!r})" for k, (p, v) in changed.items()))
        channels = arch.get("channels", channels)
        model = DeblurGANv2(replace(config, **{k: v for k, v in arch.items() if k != "channels"}), channels, seed,
                            device=device)
        parts = {"generator": model.generator, "discriminator": model.discriminator}
    else:
        model = DeblurGANv2(config, channels, seed, device=device)
        for key in ("generator", "model", "state_dict"):
            if isinstance(state, dict) and isinstance(state.get(key), dict):
                state = state[key]
                break
        if not isinstance(state, dict):
            raise DataError(f"{where}: expected a state dict, got {type(state).__name__}")
        state = {"generator": {str(k).removeprefix("module."): v for k, v in state.items()}}
        parts = {"generator": model.generator}
    try:
        for key, module in parts.items():
            module.load_state_dict(state[key])
    except (RuntimeError, KeyError, TypeError) as exc:
        raise DataError(f"{where}: weights do not fit the DeblurGAN-v2 {key} ({str(exc)[:300]}); check "
                        f"'{PARAM_GROUP}.width_mult/fpn_channels/head_channels'") from exc
    return model


@torch.no_grad()
def validate_deblurgan(
    model: DeblurGANv2, sensor: Sensor, batches: list[Scenes], seed: int, device: torch.device | str, display: Display
) -> dict[str, float]:
    """Mean PSNR / SSIM (display space, vs ``display``'s target) of the restored full exposure and of the
    full exposure itself (``input_*``) on fixed scene ``batches``; exact Poisson noise seeded by ``seed``."""
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



def _fingerprint(cfg: Config) -> str:
    """What determines a DeblurGAN-v2 run: its group (``steps`` may grow on resume), the camera, the scenes'
    augmentation, the channels, the seed, and the code."""
    group = {k: v for k, v in group_dict(cfg.baselines.deblurgan).items() if k != "steps"}
    return run_fingerprint({"seed": cfg.seed, "target": cfg.eval.target, "sensor": group_dict(cfg.sensor), "exposure": group_dict(cfg.exposure),
                            "augment": group_dict(cfg.augment), "channels": cfg.model.channels, "deblurgan": group,
                            "samples_per_clip": cfg.train.samples_per_clip})


def train_deblurgan(
    cfg: Config,
    shards_dir: Path,
    model_path: Path,
    metrics_path: Path,
    live_dir: Path,
    checkpoint_path: Path,
    progress: bool = True,
) -> dict[str, Any]:
    """Train DeblurGAN-v2 on full-exposure / ground-truth pairs and write model, metrics and dvclive logs.

    Reads the groups ``baselines.deblurgan`` (architecture, loss, lr, steps, batch_size, weights), ``seed``,
    ``sensor``, ``exposure``, ``model.channels``, ``augment`` and ``train`` (``val_every``, ``val_clips``,
    ``samples_per_clip``, ``checkpoint_every``, ``loader``, ``device``, ``select``: the weights written are those of
    the validation with the best val PSNR, or the last). Resumes from ``checkpoint_path`` when it
    was written for the same params and code. Returns the metrics written to ``metrics_path``: ``train_loss``
    (generator loss, mean of the last <= 10 steps), ``train_content``, ``val_psnr`` / ``val_ssim`` (restored)
    and ``val_input_psnr`` / ``val_input_ssim`` (the full exposure itself) on the fixed validation scenes of
    :mod:`gimbal.train` (val split).
    """
    tcfg, dcfg = cfg.train, cfg.baselines.deblurgan
    ctx, device = setup_distributed(tcfg.device)
    if ctx.world > 1:
        raise ParamError("train_deblurgan runs in one process; launch it with python, not torchrun")
    seeds = Seeds.for_rank(cfg.seed)
    torch.manual_seed(seeds.torch)
    sensor = build_sensor(cfg, learn_exposure=False).to(device).eval()  # exact Poisson: no gradient needed
    camera, channels, augment = sensor.camera, cfg.model.channels, cfg.augment
    display = Display.for_camera(cfg.eval.target, camera, augment.white_level)
    gen = torch.Generator().manual_seed(seeds.data)

    if dcfg.weights is not None:
        model = load_deblurgan_weights(dcfg, channels, cfg.seed, dcfg.weights, device)
    else:
        model = DeblurGANv2(dcfg, channels, cfg.seed, device=device)
    run = Resumable(checkpoint_path, _fingerprint(cfg), gen)
    start = run.resume(dcfg.steps, lambda state: model.load_state(state, checkpoint_path), "DeblurGAN-v2",
                       "cpu") if dcfg.steps > 0 else 0
    if dcfg.steps == 0 and dcfg.weights is None:
        log.warning("DeblurGAN-v2: steps is 0 and no weights are given: writing the untrained generator")

    val_batches = fixed_irradiance_set(shards_dir, "val", tcfg.val_clips, dcfg.batch_size, augment, camera, channels,
                                       seeds.validation, tcfg.loader, device)
    run.open_live(live_dir)
    step_times: list[float] = []
    last_val: dict[str, float] = {}
    if start < dcfg.steps:
        batches = clip_batches(shards_dir, "train", dcfg.batch_size, tcfg.loader, seeds.loader, ctx, device)
        bar = tqdm(range(start, dcfg.steps), desc="train deblurgan", initial=start, total=dcfg.steps,
                   disable=not progress, dynamic_ncols=True)
        try:
            step = start
            for step in bar:
                t0 = time.perf_counter()
                clips = run.clips(step, batches, tcfg.samples_per_clip)
                with torch.no_grad():
                    scenes = make_irradiance(clips, augment, camera, channels, gen)
                    sensor.set_seed(step_noise_seed(cfg.seed, step))
                    blurred = full_exposure_image(sensor, scenes.irradiance, display)
                    sharp = display.ground_truth(scenes.irradiance, scenes.srgb, camera).to(blurred.dtype)
                losses = model.training_step(blurred, sharp)
                if not math.isfinite(losses["loss_g"]):
                    raise run.diverged("train deblurgan", step, losses["loss_g"],
                                       [k for k, v in losses.items() if not math.isfinite(v)], {"baselines.deblurgan.lr": dcfg.lr},
                                       "lower baselines.deblurgan.lr (changed params start over)")
                step_times.append(time.perf_counter() - t0)
                done = step + 1
                logged = {f"train/{k}": v for k, v in losses.items()}
                bar.set_postfix(loss_g=f"{losses['loss_g']:.4f}", mse=f"{losses['mse']:.5f}")
                if done % tcfg.val_every == 0 or done == dcfg.steps:
                    last_val = validate_deblurgan(model, sensor, val_batches, cfg.seed, device, display)
                    logged.update({f"val/{k}": v for k, v in last_val.items()})
                    run.offer(done, last_val["psnr"], model.state_dict(), last_val)
                run.log(step, logged)
                if done % tcfg.checkpoint_every == 0 and done < dcfg.steps:
                    run.save(done, model.state_dict())
        except KeyboardInterrupt as exc:
            if isinstance(exc, Interrupted):
                raise
            raise run.interrupted("train deblurgan", step) from None
        bar.close()
    if not last_val:
        last_val = validate_deblurgan(model, sensor, val_batches, cfg.seed, device, display)
        if start == 0:  # nothing was logged (steps 0): log the evaluation so the dvclive plots exist
            run.log(0, {f"val/{k}": v for k, v in last_val.items()})

    recent = [m for _, m in run.history if "train/loss_g" in m][-10:]  # the last <= 10 steps, resumed ones too

    def mean(key: str) -> float | None:
        return sum(r[f"train/{key}"] for r in recent) / len(recent) if recent else None

    if dcfg.steps > 0:
        run.save(dcfg.steps, model.state_dict())  # the last state (a longer run resumes from it), with the best on val
    selected = dcfg.steps
    if tcfg.select == "best_val" and run.best is not None:
        selected, last_val = run.best["step"], run.best["info"]
        model.load_state(run.best["model"], checkpoint_path)
        log.info("train deblurgan: keeping step %d, the best val PSNR (%.2f dB)", selected, last_val["psnr"])

    metrics: dict[str, Any] = {
        "steps": dcfg.steps,
        "selected_step": selected,
        "start_step": start,
        "weights": dcfg.weights,
        "train_loss": mean("loss_g"),
        "train_content": mean("content"),
        "train_loss_d": mean("loss_d"),
        "val_psnr": last_val["psnr"],
        "val_ssim": last_val["ssim"],
        "val_input_psnr": last_val["input_psnr"],
        "val_input_ssim": last_val["input_ssim"],
        "perceptual": "substitute" if model.content_loss.uses_substitute else "vgg19",
    }
    if step_times:
        log.info("train deblurgan: %.3f s per step on %s", sum(step_times) / len(step_times), device)
    model.save(model_path)
    write_json_atomic(metrics_path, metrics)
    run.close_live()
    return metrics
