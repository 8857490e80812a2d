"""The one training loop: every model (ours, the variants, the KPN, DeblurGAN-v2, DMPHN) trains through :func:`fit`.

:func:`fit` owns what every run shares: resume and the checkpoints (:class:`gimbal.checkpoint.Resumable`), the
loader position (:class:`ClipReplay`), the dvclive logs (:class:`gimbal.training.live.LiveLog`), the step loop with its
bar, the divergence check, validation every ``train.val_every`` steps, the checkpoint choice on val (``train.select``,
:meth:`TrainConfig.eligible`), the network precision (``train.precision``, :func:`networks_in`) and the Ctrl-C /
SIGTERM mapping. A model brings a small task object (:class:`Task`): how a step trains on a clip batch, how it validates,
what it saves and resumes, and what it writes at the end. :mod:`gimbal.training.burst` (ours, its variants and the KPN)
and :mod:`gimbal.baselines.single` (the single-image baselines) hold the two tasks.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn
from tqdm import tqdm

from gimbal.checkpoint import Resumable
from gimbal.errors import DivergenceError, Interrupted, ParamError
from gimbal.runtime import PRECISIONS, Dist, TrainConfig
from gimbal.training.live import LiveLog

__all__ = ["ClipReplay", "Divergence", "FitResult", "Task", "diverged", "fit", "interrupted", "networks_in"]

log = logging.getLogger(__name__)


def _float32(obj: Any) -> Any:
    """``obj`` (a tensor, or tuples / lists / dicts / dataclasses of them) with every floating tensor in float32."""
    if isinstance(obj, torch.Tensor):
        return obj.float() if obj.is_floating_point() else obj
    if isinstance(obj, (list, tuple)):
        return type(obj)(_float32(x) for x in obj)
    if isinstance(obj, dict):
        return {k: _float32(v) for k, v in obj.items()}
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.replace(obj, **{f.name: _float32(getattr(obj, f.name)) for f in dataclasses.fields(obj)})
    return obj


@contextmanager
def networks_in(precision: str, device: torch.device | str, networks: Iterable[nn.Module]) -> Iterator[None]:
    """Within this context each of ``networks`` runs in ``train.precision``: under ``bf16`` every call of one of them
    runs under ``torch.autocast(<device type>, dtype=torch.bfloat16)`` and its outputs come back as float32; under
    ``fp32`` nothing changes. Only these modules' forward passes are autocast: the sensor, the exposures, the losses
    (reductions included) and the optimizers around them stay float32, and so do the weights (autocast casts
    copies)."""
    if precision == "fp32":
        yield
        return
    if precision != "bf16":
        raise ParamError(f"params: 'train.precision' must be {' or '.join(PRECISIONS)}, got {precision!r}")
    kind = torch.device(device).type
    open_: list[torch.autocast] = []

    def enter(_module: nn.Module, _args: Any) -> None:
        ctx = torch.autocast(kind, dtype=torch.bfloat16)
        ctx.__enter__()
        open_.append(ctx)

    def leave(_module: nn.Module, _args: Any, output: Any) -> Any:
        open_.pop().__exit__(None, None, None)
        return _float32(output)

    handles = []
    for net in networks:
        handles += [net.register_forward_pre_hook(enter), net.register_forward_hook(leave)]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
        while open_:  # a forward pass that raised left its autocast open
            open_.pop().__exit__(None, None, None)


class ClipReplay:
    """The loader position: step ``s`` trains on clip batch ``s // samples_per_clip`` of ``batches``. A resumed run
    draws (replays) the batches before its first step: the shuffled order is seeded, so they are the ones the killed
    run drew, and the next ones follow as they would have."""

    def __init__(self, batches: Iterator[Any], samples_per_clip: int) -> None:
        self.batches, self.samples_per_clip = batches, samples_per_clip
        self._drawn = 0
        self._clips: Any = None

    def __call__(self, step: int) -> Any:
        """The clip batch of ``step`` (0-based)."""
        while self._drawn <= step // self.samples_per_clip:
            self._clips = next(self.batches)
            self._drawn += 1
        return self._clips


@dataclass
class Divergence:
    """What a divergence message says besides the step and the loss: the non-finite ``terms`` (upstream first), the
    learning ``rates`` in force (param name -> value) and the ``fix``."""

    terms: list[str]
    rates: dict[str, float | None]
    fix: str


def diverged(name: str, step: int, loss: float, why: Divergence, run: Resumable) -> DivergenceError:
    """The one-line :class:`~gimbal.errors.DivergenceError` of a non-finite ``loss`` at ``step`` of run ``name``: the
    non-finite terms, the learning rates in force, the last good checkpoint of ``run`` kept, and the fix."""
    where = ", ".join(why.terms) if why.terms else "no single term (their sum overflowed)"
    lrs = ", ".join(f"{k} = {v:g}" for k, v in why.rates.items() if v is not None)
    kept = (f"the last good checkpoint {run.path} (step {run.saved_step}) is kept" if run.saved_step is not None
            else "no checkpoint was written before it")
    return DivergenceError(f"{name}: loss became {loss} at step {step} (non-finite: {where}); learning rates "
                           f"{lrs}; {kept}; {why.fix}")


def interrupted(name: str, step: int, run: Resumable) -> Interrupted:
    """The :class:`~gimbal.errors.Interrupted` of a Ctrl-C at ``step`` of run ``name``: where a rerun resumes (the
    last checkpoint ``run`` wrote or resumed from)."""
    resume = f"step {run.saved_step}" if run.saved_step is not None else "step 0 (no checkpoint yet)"
    return Interrupted(f"{name}: interrupted at step {step}; `dvc repro` resumes from {resume} ({run.path})")


class Task(Protocol):
    """What :func:`fit` needs of a model. A task is built with its model, optimizer(s), sensor and validation set
    before :func:`fit` runs, seeded as its run requires."""

    name: str
    """Labels the bar, the log lines and the errors (``train <name>``)."""
    steps: int
    """Optimisation steps of the run (``0``: validate and write only)."""
    generator: torch.Generator
    """The data-augmentation generator (saved with every checkpoint)."""
    rngs: dict[str, Any]
    """Other RNG streams by name, as ``(get_state, set_state)`` (saved with every checkpoint)."""
    score_key: str
    """The validation key the checkpoint choice maximises (``psnr``, ``frame_psnr``)."""

    def load_state(self, state: dict[str, Any]) -> None:
        """Resume from a :meth:`state` read back from the checkpoint."""

    def state(self) -> dict[str, Any]:
        """Everything of the model needed to resume (weights, optimizer state)."""

    def weights(self) -> dict[str, Any]:
        """What a validation's checkpoint choice keeps (loaded back with :meth:`load_weights`)."""

    def load_weights(self, weights: dict[str, Any]) -> None:
        """Load a :meth:`weights` (the chosen validation's)."""

    def start(self, ctx: Dist) -> None:
        """Called once after resume, before the first step (e.g. to wrap the model for several ranks)."""

    def train_step(self, step: int, clips: torch.Tensor) -> Any:
        """Augment ``clips`` and run the forward pass of optimisation step ``step`` (0-based); returns what
        :meth:`loss`, :meth:`divergence` and :meth:`optimize` take."""

    def loss(self, out: Any) -> float:
        """The step's loss, checked for being finite before :meth:`optimize`."""

    def divergence(self, out: Any) -> Divergence:
        """What a divergence message of this step names."""

    def optimize(self, step: int, out: Any) -> None:
        """Backward pass and optimizer step (a task whose :meth:`train_step` did them does nothing)."""

    def logged(self, out: Any) -> tuple[dict[str, float], dict[str, str]]:
        """The step's dvclive metrics (``train/...``, ...) and the bar's postfix."""

    def validate(self) -> dict[str, float]:
        """Validation metrics (eval mode, fixed noise); logged under ``val/``."""

    def eligible(self, val: dict[str, float]) -> bool:
        """Whether the weights of a validation may be chosen."""

    def finish(self, result: FitResult) -> dict[str, Any]:
        """Write the model file and the metrics of the chosen weights (main rank); returns the metrics."""


@dataclass
class FitResult:
    """What :func:`fit` hands to :meth:`Task.finish` (on the main rank)."""

    start: int
    """The step the run resumed from (0: a fresh run)."""
    selected: int
    """The step of the weights the task holds now (the chosen validation's, or the last)."""
    val: dict[str, float]
    """The validation of the selected weights."""
    history: list[tuple[int, dict[str, float]]] = field(default_factory=list)
    """Every ``(step, metrics)`` logged, resumed steps included."""
    step_times: list[float] = field(default_factory=list)
    """Seconds of each step trained in this process."""


def fit(task: Task, tcfg: TrainConfig, ctx: Dist, device: torch.device, batches: Iterator[torch.Tensor] | None,
        fingerprint: str, checkpoint_path: Path, live_dir: Path, progress: bool = True,
        resume_device: torch.device | str = "cpu", unlive_warning: str | None = None,
        score_label: str = "val PSNR", score_unit: str = " dB") -> dict[str, Any]:
    """Train ``task`` for ``task.steps`` steps on ``batches`` (clip batches, :func:`gimbal.data.irradiance.clip_batches`;
    read ``train.samples_per_clip`` steps each) and choose its weights on val.

    Reads ``train.val_every``, ``checkpoint_every``, ``samples_per_clip`` and ``select`` of ``tcfg``. Resumes from
    ``checkpoint_path`` when it holds an unfinished run of ``fingerprint``: a killed and rerun run ends with the
    weights, choice and logs of an uninterrupted one. Only the main rank (``ctx.main``) validates, logs and writes
    checkpoints. A non-finite loss raises :class:`~gimbal.errors.DivergenceError` before the optimizer step, Ctrl-C
    :class:`~gimbal.errors.Interrupted`; both say where a rerun resumes.

    ``unlive_warning``: logged when ``train.select`` is ``best_val`` and no validation was eligible. ``score_label``
    names the score in the log line of the choice, ``score_unit`` its unit. The task then holds the chosen weights, and the main rank returns
    what its :meth:`Task.finish` wrote (the metrics); the other ranks return ``{}``.
    """
    steps = task.steps
    run = Resumable(checkpoint_path, fingerprint, task.generator, rngs=task.rngs)
    start = run.resume(steps, task.load_state, task.name, resume_device) if steps > 0 else 0
    task.start(ctx)
    live = LiveLog(live_dir, run.history)  # the history the checkpoint saves; only the main rank logs
    step_times: list[float] = []
    last_val: dict[str, float] = {}
    if start < steps:
        assert batches is not None
        replay = ClipReplay(batches, tcfg.samples_per_clip)
        bar = tqdm(range(start, steps), desc=f"train {task.name}", initial=start, total=steps,
                   disable=not (progress and ctx.main), dynamic_ncols=True)
        step = start
        try:
            for step in bar:
                t0 = time.perf_counter()
                clips = replay(step)
                out = task.train_step(step, clips)
                loss = task.loss(out)
                if not math.isfinite(loss):  # before backward: a NaN graph can crash it (GenGS indexing)
                    why = task.divergence(out)
                    raise diverged(f"train {task.name}", step, loss, why, run)
                task.optimize(step, out)
                step_times.append(time.perf_counter() - t0)
                done = step + 1
                if ctx.main:
                    logged, postfix = task.logged(out)
                    bar.set_postfix(postfix)
                    if done % tcfg.val_every == 0 or done == steps:
                        last_val = task.validate()
                        logged.update({f"val/{k}": v for k, v in last_val.items()})
                        if task.eligible(last_val):
                            run.offer(done, last_val[task.score_key], task.weights(), last_val)
                    live.log(step, logged)
                    if done % tcfg.checkpoint_every == 0 and done < steps:
                        run.save(done, task.state())
        except KeyboardInterrupt as exc:
            if isinstance(exc, Interrupted):
                raise
            raise interrupted(f"train {task.name}", step, run) from None
        bar.close()
    if not ctx.main:
        return {}

    if not last_val:  # nothing trained (steps 0): validate what the task holds
        last_val = task.validate()
        if task.eligible(last_val):
            run.offer(steps, last_val[task.score_key], task.weights(), last_val)
        if start == 0:  # nothing was logged: log the validation so the dvclive plots exist
            live.log(0, {f"val/{k}": v for k, v in last_val.items()})
    if steps > 0:
        run.save(steps, task.state())  # the last state (a longer run resumes from it), with the best on val
    selected = steps
    if tcfg.select == "best_val" and run.best is None and unlive_warning:
        log.warning("train %s: %s; keeping the last step's weights", task.name, unlive_warning)
    if tcfg.select == "best_val" and run.best is not None:
        selected, last_val = run.best["step"], run.best["info"]
        task.load_weights(run.best["model"])
        log.info("train %s: keeping step %d, the best %s (%.2f%s)", task.name, selected, score_label,
                 last_val[task.score_key], score_unit)
    if step_times:
        log.info("train %s: %.3f s per step on %s (world size %d)", task.name, sum(step_times) / len(step_times),
                 device, ctx.world)
    metrics = task.finish(FitResult(start, selected, last_val, list(run.history), step_times))
    live.close()
    return metrics
