"""Training of the DeblurGAN-v2 baseline on the single full-exposure image (paper Table 1/2 baseline).

Input: the clip captured by the *same* simulated sensor as one exposure of the whole budget ``T``
(:meth:`Sensor.full_exposure`, exact Poisson noise; the brightness eq. 14 normalizes bursts to),
clipped to [0, 1] and gamma-encoded; target: :func:`gimbal.system.ground_truth` (the
middle instant at full-budget brightness, display space). Scenes come from the same augmentation /
irradiance pipeline as :mod:`gimbal.train` (:func:`make_irradiance`, :func:`clip_batches`,
:func:`fixed_irradiance_set`), so the baseline sees the data distribution of the models it is
compared with. No pretrained weights can be downloaded here: it trains from scratch, or starts from
user-given weights (``baselines.deblurgan.weights``); with ``baselines.deblurgan.steps: 0`` those
weights are only validated and written out.

Seeded (data generator, weights, sensor noise re-seeded per step so a resumed run draws the same
noise), resumable from ``checkpoints/deblurgan/last.pt``, logged with dvclive, tqdm progress bar.
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from gimbal.baselines.deblurgan import CHECKPOINT_FORMAT, PARAM_GROUP, DeblurGANConfig, DeblurGANv2, config_from_params
from gimbal.data.augment import AugmentConfig
from gimbal.errors import DataError, ParamError
from gimbal.io import save_torch_atomic, write_json_atomic
from gimbal.losses import psnr, ssim
from gimbal.models.gimbal import ModelConfig
from gimbal.params import get, unknown_key_error
from gimbal.sensor.model import Sensor
from gimbal.system import ground_truth, to_display
from gimbal.train import (
    TrainConfig,
    clip_batches,
    fixed_irradiance_set,
    make_irradiance,
    run_fingerprint,
    seed_from_params,
    setup_distributed,
)

__all__ = [
    "DeblurGANTrainConfig",
    "full_exposure_image",
    "load_deblurgan_weights",
    "to_display",
    "train_deblurgan",
    "validate_deblurgan",
]

log = logging.getLogger(__name__)

VAL_SEED_OFFSET = 10_000  # the validation scenes of gimbal.train (same fixed set, same seed)


@dataclass(frozen=True)
class DeblurGANTrainConfig:
    """Training-loop params of group ``baselines.deblurgan`` (the architecture/loss keys are
    :class:`DeblurGANConfig`'s).

    Attributes:
        steps: generator/discriminator updates (0: no training, only validate and write the model).
        batch_size: clips per step.
        weights: path of weights to start from (a DeblurGAN-v2 checkpoint of this module, or a
            bare generator state dict), or None to train from scratch.
    """

    steps: int = 200
    batch_size: int = 4
    weights: str | None = None

    @classmethod
    def check_keys(cls, params: dict[str, Any]) -> None:
        """Reject unknown keys of ``baselines`` and ``baselines.deblurgan`` ("did you mean ...?")."""
        baselines = params.get("baselines") or {}
        if not isinstance(baselines, dict):
            raise ParamError(f"params: 'baselines' must be a mapping, got {baselines!r}")
        for key in baselines:
            if key != "deblurgan":
                raise unknown_key_error(str(key), ["deblurgan"], "'baselines'")
        group = baselines.get("deblurgan") or {}
        valid = {f.name for f in fields(cls)} | {f.name for f in fields(DeblurGANConfig)} - {"channels", "seed"}
        for key in group:
            if key not in valid:
                raise unknown_key_error(str(key), valid, f"'{PARAM_GROUP}'")

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> DeblurGANTrainConfig:
        cls.check_keys(params)
        steps = get(params, f"{PARAM_GROUP}.steps", int, cls.steps)
        batch = get(params, f"{PARAM_GROUP}.batch_size", int, cls.batch_size)
        weights = get(params, f"{PARAM_GROUP}.weights", None, None)
        if steps < 0:
            raise ParamError(f"params: '{PARAM_GROUP}.steps' must be >= 0 (0: only evaluate given weights), "
                             f"got {steps}")
        if batch < 1:
            raise ParamError(f"params: '{PARAM_GROUP}.batch_size' must be >= 1, got {batch}")
        if weights is not None and not isinstance(weights, str):
            raise ParamError(f"params: '{PARAM_GROUP}.weights' must be a path string or null, got {weights!r}")
        return cls(steps=steps, batch_size=batch, weights=weights or None)


def full_exposure_image(sensor: Sensor, irradiance: torch.Tensor, step: int = 0,
                        generator: torch.Generator | None = None) -> torch.Tensor:
    """The single-image baselines' input: one exposure of the whole budget ``T`` through ``sensor``.

    ``irradiance (B, T_f, C, H, W)`` e-/s -> ``(B, C, H, W)`` display space: the raw image in [0, 1] DN
    (already at the ground truth's brightness, eq. 14 scale ``T / T = 1``), clipped, gamma-encoded. The
    noise model follows ``sensor``'s mode (eval: exact Poisson) and ``generator`` (default: its own stream).
    """
    return to_display(sensor.full_exposure(irradiance, step, generator))


def load_deblurgan_weights(
    params: dict[str, Any], path: str | Path, device: torch.device | str = "cpu"
) -> DeblurGANv2:
    """A fresh :class:`DeblurGANv2` (params ``baselines.deblurgan``, new optimisers, step 0) with the
    networks of ``path``.

    ``path`` is either a checkpoint of :meth:`DeblurGANv2.save` (its architecture keys win over the
    params, generator and discriminator are loaded) or a bare generator state dict (optionally under
    ``generator`` / ``model`` / ``state_dict``, ``module.`` prefixes stripped) for the params' architecture.
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
    config = config_from_params(params)
    if isinstance(state, dict) and state.get("format") == CHECKPOINT_FORMAT and isinstance(state.get("config"), dict):
        arch = {k: state["config"][k] for k in DeblurGANConfig.ARCH_KEYS if k in state["config"]}
        changed = {k: (getattr(config, k), v) for k, v in arch.items() if getattr(config, k) != v}
        if changed:
            log.warning("DeblurGAN-v2: using the architecture of %s: %s", path,
                        ", ".join(f"{k}={v!r} (params: {p!r})" for k, (p, v) in changed.items()))
        model = DeblurGANv2(replace(config, **arch), device=device)
        parts = {"generator": model.generator, "discriminator": model.discriminator}
    else:
        model = DeblurGANv2(config, device=device)
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
    model: DeblurGANv2, sensor: Sensor, batches: list[torch.Tensor], seed: int, device: torch.device | str
) -> dict[str, float]:
    """Mean PSNR / SSIM (display space, vs :func:`ground_truth`) of the restored full exposure and of the
    full exposure itself (``input_*``) on fixed irradiance ``batches``; exact Poisson noise seeded by ``seed``."""
    was_training = sensor.training
    sensor.eval()
    sensor.set_seed(seed)
    out: dict[str, list[float]] = {"psnr": [], "ssim": [], "input_psnr": [], "input_ssim": []}
    for irr in batches:
        irr = irr.to(device)
        blurred = full_exposure_image(sensor, irr)
        target = ground_truth(irr, sensor.camera).to(blurred.dtype)
        restored = model.enhance(blurred)
        out["psnr"] += psnr(restored, target, reduction="none").tolist()
        out["ssim"] += ssim(restored, target, reduction="none").tolist()
        out["input_psnr"] += psnr(blurred, target, reduction="none").tolist()
        out["input_ssim"] += ssim(blurred, target, reduction="none").tolist()
    sensor.train(was_training)
    return {k: sum(v) / max(len(v), 1) for k, v in out.items()}


def _fingerprint(params: dict[str, Any]) -> str:
    """Hash of the params that change what is trained (``steps`` may grow on resume)."""
    group = dict(get(params, PARAM_GROUP, dict, {}) or {})
    group.pop("steps", None)
    relevant = {"seed": params.get("seed"), "sensor": params.get("sensor"), "augment": params.get("augment"),
                "channels": ModelConfig.from_params(params).channels, "deblurgan": group}
    return run_fingerprint(relevant)


def _noise_seed(seed: int, step: int) -> int:
    """Sensor-noise seed of training step ``step`` (re-seeded per step: exact on resume)."""
    return (seed + 1) * 1_000_003 + step


def _save_checkpoint(path: Path, model: DeblurGANv2, generator: torch.Generator, fingerprint: str) -> None:
    """Atomically write the model checkpoint (loadable by :meth:`DeblurGANv2.load`) plus the loop state."""
    state = {**model.state_dict(), "data_generator": generator.get_state(), "torch_rng": torch.get_rng_state(),
             "fingerprint": fingerprint}
    save_torch_atomic(path, state)


def _try_resume(path: Path, model: DeblurGANv2, generator: torch.Generator, fingerprint: str, steps: int) -> int:
    """Load ``path`` into ``model`` / ``generator`` if it was written for the same params; return the start step."""
    if not path.is_file():
        return 0
    try:
        extra = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - a broken checkpoint is ignored, training starts over
        log.warning("ignoring unreadable checkpoint %s (%s)", path, exc)
        return 0
    if not isinstance(extra, dict) or extra.get("fingerprint") != fingerprint:
        log.info("ignoring checkpoint %s: written for other params or code", path)
        return 0
    if int(extra.get("step", 0)) >= steps:
        log.info("not resuming from %s: it is a finished run (step %s of %d); training again", path,
                 extra.get("step"), steps)
        return 0
    model.load(path)
    generator.set_state(extra["data_generator"])
    torch.set_rng_state(extra["torch_rng"])
    log.info("resuming DeblurGAN-v2 from step %d (%s)", model.step, path)
    return model.step


def train_deblurgan(
    params: dict[str, Any],
    shards_dir: Path,
    model_path: Path,
    metrics_path: Path,
    live_dir: Path,
    checkpoint_path: Path,
    progress: bool = True,
) -> dict[str, Any]:
    """Train DeblurGAN-v2 on full-exposure / ground-truth pairs and write model, metrics and dvclive logs.

    Params: ``baselines.deblurgan.*`` (architecture, loss, lr, steps, batch_size, weights), ``seed``,
    ``sensor.*``, ``model.channels``, ``augment.*``, ``train.val_every``, ``train.val_clips``,
    ``train.checkpoint_every``, ``train.loader``, ``train.device``. Resumes from ``checkpoint_path`` when
    it was written for the same params. Returns the metrics written to ``metrics_path``: ``train_loss``
    (generator loss, mean of the last <= 10 steps), ``train_content``, ``val_psnr`` / ``val_ssim`` (restored)
    and ``val_input_psnr`` / ``val_input_ssim`` (the full exposure itself) on the fixed validation scenes of
    :mod:`gimbal.train` (test split).
    """
    cfg = TrainConfig.from_params(params)
    dcfg = DeblurGANTrainConfig.from_params(params)
    seed = seed_from_params(params)
    ctx, device = setup_distributed(cfg.device)
    if ctx.world > 1:
        raise ParamError("train_deblurgan runs in one process; launch it with python, not torchrun")
    torch.manual_seed(seed)
    sensor = Sensor.from_params(params, learn_exposure=False).to(device).eval()  # exact Poisson: no gradient needed
    camera = sensor.camera
    channels = ModelConfig.from_params(params).channels
    augment = AugmentConfig.from_params(params)
    gen = torch.Generator().manual_seed(seed + 7919)
    fingerprint = _fingerprint(params)

    if dcfg.weights is not None:
        model = load_deblurgan_weights(params, dcfg.weights, device)
    else:
        model = DeblurGANv2.from_params(params, device=device)
    start = _try_resume(checkpoint_path, model, gen, fingerprint, dcfg.steps) if dcfg.steps > 0 else 0
    if dcfg.steps == 0 and dcfg.weights is None:
        log.warning("DeblurGAN-v2: steps is 0 and no weights are given: writing the untrained generator")

    val_batches = fixed_irradiance_set(shards_dir, "test", cfg.val_clips, dcfg.batch_size, augment, camera, channels,
                                       seed + VAL_SEED_OFFSET, cfg.loader, device)
    from dvclive import Live

    live = Live(str(live_dir), resume=start > 0, save_dvc_exp=False, dvcyaml=None)
    recent: deque[dict[str, float]] = deque(maxlen=10)
    step_times: list[float] = []
    last_val: dict[str, float] = {}
    if start < dcfg.steps:
        batches = clip_batches(shards_dir, "train", dcfg.batch_size, cfg.loader, seed, ctx, device)
        bar = tqdm(range(start, dcfg.steps), desc="train deblurgan", initial=start, total=dcfg.steps,
                   disable=not progress, dynamic_ncols=True)
        for step in bar:
            t0 = time.perf_counter()
            if (step - start) % cfg.samples_per_clip == 0:
                clips = next(batches)
            with torch.no_grad():
                irr = make_irradiance(clips, augment, camera, channels, gen)
                sensor.set_seed(_noise_seed(seed, step))
                blurred = full_exposure_image(sensor, irr)
                sharp = ground_truth(irr, camera).to(blurred.dtype)
            losses = model.training_step(blurred, sharp)
            if not math.isfinite(losses["loss_g"]):
                raise FloatingPointError(f"train deblurgan: generator loss became {losses['loss_g']} at step {step}")
            step_times.append(time.perf_counter() - t0)
            recent.append(losses)
            done = step + 1
            for k, v in losses.items():
                live.log_metric(f"train/{k}", v)
            bar.set_postfix(loss_g=f"{losses['loss_g']:.4f}", mse=f"{losses['mse']:.5f}")
            if done % cfg.val_every == 0 or done == dcfg.steps:
                last_val = validate_deblurgan(model, sensor, val_batches, seed, device)
                for k, v in last_val.items():
                    live.log_metric(f"val/{k}", v)
            live.next_step()
            if done % cfg.checkpoint_every == 0 and done < dcfg.steps:
                _save_checkpoint(checkpoint_path, model, gen, fingerprint)
        bar.close()
    if not last_val:
        last_val = validate_deblurgan(model, sensor, val_batches, seed, device)
        if start == 0:  # nothing was logged (steps 0): log the evaluation so the dvclive plots exist
            for k, v in last_val.items():
                live.log_metric(f"val/{k}", v)
            live.next_step()

    def mean(key: str) -> float | None:
        return sum(r[key] for r in recent) / len(recent) if recent else None

    metrics: dict[str, Any] = {
        "steps": dcfg.steps,
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
    _save_checkpoint(checkpoint_path, model, gen, fingerprint)
    model.save(model_path)
    write_json_atomic(metrics_path, metrics)
    live.end()
    return metrics
