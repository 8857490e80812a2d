"""The training task of the single-image baselines (DeblurGAN-v2, DMPHN) on the full-exposure image.

Input: each training clip captured by the *same* simulated sensor as one exposure of the whole budget ``T``
(:func:`gimbal.system.full_exposure_image`, exact Poisson noise re-seeded per step by
:func:`gimbal.runtime.step_noise_seed`), through the floors' display (:class:`gimbal.display.Display`); target: the
run's target (``eval.target``). Scenes come from the one data-to-irradiance path (:mod:`gimbal.data.irradiance`).

Validation (every ``train.val_every`` steps, eval mode, exact Poisson noise of a fixed seed) scores the restored
image and its input on the val split twice: on ``train.val_clips`` training-size crops (``val/psnr``,
``val/input_psnr``) and on the same clips' whole frames as :mod:`gimbal.evaluation.evaluate` scores the test split
(``val/frame_psnr``, ``val/frame_input_psnr``). With ``train.select: best_val`` the weights written are those of
the validation with the best *whole-frame* val PSNR: the measure the table reports (crops see only the frame
centre and no warp border). The loop (resume, dvclive, checkpoints, the choice on val) is the one every model trains
through, :func:`gimbal.training.loop.fit`.

A baseline supplies a model with the :class:`Restorer` methods and its own fingerprint and metrics; it never
copies the loop.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch

from gimbal.checkpoint import run_fingerprint
from gimbal.data.augment import AugmentConfig
from gimbal.data.irradiance import Scenes, clip_batches, fixed_irradiance_set, make_irradiance
from gimbal.display import Display
from gimbal.errors import ParamError
from gimbal.eval_config import EvalConfig
from gimbal.io import write_json_atomic
from gimbal.metrics import psnr, ssim
from gimbal.models.liveness import restorer_liveness
from gimbal.params import group_dict
from gimbal.runtime import Dist, Seeds, TrainConfig, setup_distributed, step_noise_seed
from gimbal.sensor.exposure import ExposureConfig
from gimbal.sensor.model import Sensor, SensorConfig
from gimbal.system import build_sensor, full_exposure_image
from gimbal.training.loop import Divergence, FitResult, fit, networks_in

__all__ = ["Restorer", "RestorerTask", "restorer_fingerprint", "train_restorer", "validate_restorer"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RestorerRun:
    """The groups a single-image baseline's training reads besides its own ``baselines.<name>`` group
    (:func:`gimbal.pipeline.restorer_run` takes them from a parsed params file).

    Attributes:
        seed: ``seed``.
        sensor, exposure: the ``sensor`` and ``exposure`` groups (the full exposure's camera and budget).
        augment: the ``augment`` group (the scenes).
        channels: ``model.channels`` (1 grayscale, 3 RGB).
        eval: the ``eval`` group (``target``, ``full_frame`` and ``window_frames`` of the whole val frames).
        train: the ``train`` group (the loop).
    """

    seed: int
    sensor: SensorConfig
    exposure: ExposureConfig
    augment: AugmentConfig
    channels: int
    eval: EvalConfig
    train: TrainConfig


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


def restorer_fingerprint(run: RestorerRun, group: dict[str, Any]) -> str:
    """What determines a single-image baseline run: its params ``group`` (without ``steps``, which may grow on
    resume), the camera, the scenes' augmentation, the channels, the seed, the validation settings, and the code."""
    val = {k: getattr(run.train, k) for k in ("val_every", "val_clips", "samples_per_clip", "select", "precision")}
    return run_fingerprint({"seed": run.seed, "target": run.eval.target, "sensor": group_dict(run.sensor),
                            "exposure": group_dict(run.exposure), "augment": group_dict(run.augment),
                            "channels": run.channels, "group": {k: v for k, v in group.items() if k != "steps"},
                            "train": val, "full_frame": run.eval.full_frame})


class RestorerTask:
    """The :class:`gimbal.training.loop.Task` of a single-image baseline: a :class:`Restorer` trained on full-exposure /
    target pairs, the fixed sensor (exact Poisson noise re-seeded per step), and the val crops and whole val frames.

    The metrics' ``train_loss`` is the mean ``loss_key`` of the last <= 10 steps logged (resumed ones too), not the
    last step's as for the burst models (:class:`gimbal.training.burst.GimbalTask`); each keeps its own.
    """

    score_key = "frame_psnr"  # the checkpoint choice: whole val frames, the measure the table reports

    def __init__(self, run: RestorerRun, name: str, model: Restorer, steps: int, batch_size: int, shards_dir: Path,
                 device: torch.device, model_path: Path, metrics_path: Path, checkpoint_path: Path,
                 rates: dict[str, float], loss_key: str, summary_keys: tuple[str, ...],
                 extra_metrics: dict[str, Any] | None) -> None:
        self.tcfg = run.train
        self.run, self.name, self.model, self.steps, self.device = run, name, model, steps, device
        self.paths, self.where = (model_path, metrics_path), checkpoint_path
        self.shards_dir, self.batch_size = shards_dir, batch_size
        self.rngs: dict[str, Any] = {}
        self.rates, self.loss_key, self.summary_keys, self.extra_metrics = rates, loss_key, summary_keys, extra_metrics
        self.seeds = seeds = Seeds.for_rank(run.seed)
        torch.manual_seed(seeds.torch)
        self.sensor = build_sensor(run, learn_exposure=False).to(device).eval()  # exact Poisson: no gradient needed
        self.display = Display.for_camera(run.eval.target, self.sensor.camera, run.augment.white_level)
        self.generator = torch.Generator().manual_seed(seeds.data)
        self.val_sets: dict[str, list[Scenes]] = {}
        # the networks train.precision applies to: the restoring network and a GAN's discriminator
        discriminator = getattr(model, "discriminator", None)
        self.networks = [model.network, *([discriminator] if isinstance(discriminator, torch.nn.Module) else [])]

    # -- state --------------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return self.model.state_dict()

    def load_state(self, state: dict[str, Any]) -> None:
        self.model.load_state(state, self.where)

    weights = state

    def load_weights(self, weights: dict[str, Any]) -> None:
        self.model.load_state(weights, self.where)

    def start(self, ctx: Dist) -> None:
        """Build the val crops and whole val frames (after resume, as the run's other streams) unless
        :attr:`val_sets` was set."""
        if self.val_sets:
            return
        run, tcfg = self.run, self.tcfg
        sets = {"": dict(full_frame=False), "frame_": dict(full_frame=True, window_frames=run.eval.window_frames)}
        self.val_sets = {prefix: fixed_irradiance_set(self.shards_dir, "val", tcfg.val_clips, self.batch_size,
                                                      run.augment, self.sensor.camera, run.channels,
                                                      self.seeds.validation, tcfg.loader, self.device, **kw)
                         for prefix, kw in sets.items()}

    # -- a step -------------------------------------------------------------------------------------
    def train_step(self, step: int, clips: torch.Tensor) -> dict[str, float]:
        """Capture the full exposure of ``clips`` and take the model's whole optimisation step (its losses)."""
        run, sensor, display = self.run, self.sensor, self.display
        with torch.no_grad():
            scenes = make_irradiance(clips, run.augment, sensor.camera, run.channels, self.generator)
            sensor.set_seed(step_noise_seed(run.seed, step))
            blurred = full_exposure_image(sensor, scenes.irradiance, display)
            sharp = display.ground_truth(scenes.irradiance, scenes.srgb, sensor.camera).to(blurred.dtype)
        with networks_in(self.tcfg.precision, self.device, self.networks):
            return self.model.training_step(blurred, sharp)

    def loss(self, out: dict[str, float]) -> float:
        return out[self.loss_key]

    def divergence(self, out: dict[str, float]) -> Divergence:
        return Divergence([k for k, v in out.items() if not math.isfinite(v)], self.rates,
                          f"lower {' or '.join(self.rates)} (changed params start over)")

    def optimize(self, step: int, out: dict[str, float]) -> None:
        pass  # the model's training_step took the step

    def logged(self, out: dict[str, float]) -> tuple[dict[str, float], dict[str, str]]:
        return {f"train/{k}": v for k, v in out.items()}, {k: f"{out[k]:.4f}" for k in (self.loss_key,
                                                                                         *self.summary_keys)}

    def validate(self) -> dict[str, float]:
        run, sensor, device, display, model = self.run, self.sensor, self.device, self.display, self.model
        scores = {f"{prefix}{k}": v for prefix, batches in self.val_sets.items()
                  for k, v in validate_restorer(model, sensor, batches, run.seed, device, display).items()}
        sensor.set_seed(run.seed)  # the first val crops as validate_restorer saw them
        first = full_exposure_image(sensor, self.val_sets[""][0].irradiance.to(device), display)
        return {**scores, **restorer_liveness(model.network, model.enhance, first)}

    def eligible(self, val: dict[str, float]) -> bool:
        return True

    # -- the outputs --------------------------------------------------------------------------------
    def finish(self, result: FitResult) -> dict[str, Any]:
        model_path, metrics_path = self.paths
        recent = [m for _, m in result.history if f"train/{self.loss_key}" in m][-10:]  # the last <= 10 steps

        def mean(key: str) -> float | None:
            return sum(r[f"train/{key}"] for r in recent) / len(recent) if recent else None

        metrics: dict[str, Any] = {"steps": self.steps, "selected_step": result.selected, "start_step": result.start,
                                   "train_loss": mean(self.loss_key),
                                   **{f"train_{k}": mean(k) for k in self.summary_keys},
                                   **{f"val_{k}": v for k, v in result.val.items()}, **(self.extra_metrics or {})}
        self.model.save(model_path)
        write_json_atomic(metrics_path, metrics)
        return metrics


def train_restorer(
    run: RestorerRun,
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
    target pairs through the one loop (:func:`gimbal.training.loop.fit`, task :class:`RestorerTask`) and write the model
    file, metrics and dvclive logs.

    Reads the groups of ``run`` (:class:`RestorerRun`: ``seed``, ``sensor``, ``exposure``, ``augment``,
    ``model.channels``, ``eval.target``, ``eval.full_frame``, ``eval.window_frames`` and ``train`` (``val_every``, ``val_clips``, ``samples_per_clip``, ``checkpoint_every``,
    ``loader``, ``device``, ``select``, ``precision``). Resumes from ``checkpoint_path`` when it holds a run of
    ``fingerprint`` (:func:`restorer_fingerprint`). ``name`` labels the bar, logs and errors; ``rates`` maps the
    learning-rate params to their values (for a divergence message). Returns the metrics written to
    ``metrics_path``: ``steps``, ``selected_step``, ``start_step``, ``train_loss`` (mean ``loss_key`` of the last
    <= 10 steps) and ``train_<key>`` for ``summary_keys``, the chosen validation's ``val_*`` (crops) and
    ``val_frame_*`` (whole frames), each with the input's, and ``extra_metrics``.
    """
    tcfg = run.train
    ctx, device = setup_distributed(tcfg.device)
    if ctx.world > 1:
        raise ParamError(f"train_{name} runs in one process; launch it with python, not torchrun")
    task = RestorerTask(run, name, model, steps, batch_size, shards_dir, device, model_path, metrics_path,
                        checkpoint_path, rates, loss_key, summary_keys, extra_metrics)
    batches = clip_batches(shards_dir, "train", batch_size, tcfg.loader, task.seeds.loader, ctx, device)
    return fit(task, tcfg, ctx, device, batches, fingerprint, checkpoint_path, live_dir, progress=progress,
               score_label="whole-frame val PSNR")
