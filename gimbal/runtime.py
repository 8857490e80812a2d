"""Run machinery shared by every loop: device choice, the distributed context, and named seed streams.

- :func:`resolve_device` is the one place a device spec (``auto | cpu | cuda | cuda:i``) becomes a
  :class:`torch.device`, and the only module of :mod:`gimbal` that asks whether CUDA is available
  (:func:`cuda_available`).
- :func:`setup_distributed` reads what ``torchrun`` sets (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``) and
  picks this rank's device.
- :class:`Seeds` derives every random stream of a run from the one ``seed`` param by a named offset, so
  no loop writes ``seed + 7919`` of its own and the streams of different ranks never coincide.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Literal

import torch
import torch.distributed as dist

from gimbal.errors import ParamError

__all__ = [
    "DATA_SEED_OFFSET",
    "NOISE_SEED_OFFSET",
    "PRECISIONS",
    "VALIDATION_SEED_OFFSET",
    "DeviceError",
    "Dist",
    "Seeds",
    "TrainConfig",
    "apply_thread_budget",
    "thread_budget",
    "cuda_available",
    "resolve_device",
    "setup_distributed",
    "step_noise_seed",
]

PRECISIONS = ("fp32", "bf16")
"""The values of ``train.precision``."""

DEVICE_CHOICES = "auto, cpu, cuda or cuda:N"
"""The one device vocabulary, as error messages name it."""


class DeviceError(ParamError):
    """A device spec is not of :data:`DEVICE_CHOICES`, or names a CUDA device this machine lacks."""


def cuda_available() -> bool:
    """Whether a CUDA device can be used (the only call of ``torch.cuda.is_available`` in :mod:`gimbal`)."""
    return torch.cuda.is_available()


def resolve_device(spec: str | torch.device, what: str = "device") -> torch.device:
    """The :class:`torch.device` of ``spec``: ``auto`` (CUDA when available, else CPU), ``cpu``, ``cuda`` or
    ``cuda:i``.

    ``what`` names where the spec came from (``"params 'train.device'"``, ``"--device"``); a bad spec or a CUDA
    spec on a machine without CUDA raises :class:`DeviceError` with that name and the fix.
    """
    if isinstance(spec, torch.device):
        spec = str(spec)
    if spec == "auto":
        return torch.device("cuda" if cuda_available() else "cpu")
    try:
        dev = torch.device(spec)
    except (RuntimeError, TypeError) as exc:
        raise DeviceError(f"{what}: unknown device {spec!r}; use {DEVICE_CHOICES}") from exc
    if dev.type not in ("cpu", "cuda"):
        raise DeviceError(f"{what}: unknown device {spec!r}; use {DEVICE_CHOICES}")
    if dev.type == "cuda":
        if not cuda_available():
            raise DeviceError(f"{what} is {spec!r} but no CUDA device is available; use 'auto' or 'cpu'")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise DeviceError(f"{what} is {spec!r} but this machine has {torch.cuda.device_count()} CUDA "
                              f"device(s); use cuda:0 .. cuda:{torch.cuda.device_count() - 1}")
    return dev


@dataclass(frozen=True)
class TrainConfig:
    """Params group ``train``: the run settings every training loop shares (the embedded default; paper scale
    in comments). The DeblurGAN-v2 loop reads the validation, checkpoint, loader and device keys of it.

    Attributes:
        steps: optimisation steps (paper: ~1e6).
        batch_size: clips per step and per rank (paper: 2 per GPU).
        lr: Adam learning rate of the network (and of the exposures, unless ``exposure_lr``; paper: 1e-4 for
            both, over ~1e6 steps).
        exposure_lr: Adam learning rate of the exposure logits (``None``: ``lr``). Adam moves a logit by about
            its learning rate per step, so a short run needs a larger one to move the schedule at all.
        kernel_bias_lr: Adam learning rate of the KPN output layer's bias, the part of the predicted kernels
            that does not depend on the burst (``None``: ``lr``). It is a linear filter over the frames, safe at a
            rate at which the ReLU layers behind it would die; the rest of the network learns at ``lr``.
        warmup_steps: the network's learning rates (``lr`` and ``kernel_bias_lr``; not the exposures') rise
            linearly from ``lr / warmup_steps`` to ``lr`` over the first ``warmup_steps`` steps (0: none).
        samples_per_clip: optimisation steps per decoded clip batch, each with a fresh random augmentation
            (crop, shake, light level); > 1 amortises video decoding (paper scale: 1).
        val_every: validate every this many steps (and at the end).
        val_clips: number of held-out clips in the fixed validation set.
        checkpoint_every: save a resumable checkpoint every this many steps.
        loader: ``auto`` (DALI when it works, else PyTorch/PyAV), ``dali`` or ``torch``.
        device: ``auto`` (CUDA when available), ``cpu``, ``cuda`` or ``cuda:N`` (:func:`resolve_device`).
        clock: what the annealed loss (eq. 18, ``beta alpha^t``) and the GenGS temperature count as ``t``:
            ``iterations`` (the paper) or ``examples`` (the released code: examples seen, ``t x batch x GPUs``).
        select: the weights a run writes: ``best_val`` (those of the validation, every ``val_every`` steps, with
            the highest val PSNR: early stopping on the val split) or ``last`` (the final step's; the released code
            validates nothing and keeps its last checkpoint; the paper does not say).
        min_kernel_change: with ``select: best_val``, a validation is eligible only if the merge network's kernels
            change between two different val bursts by at least this much (relative norm,
            :func:`gimbal.models.liveness.kernel_variation`): a KPN that applies one fixed filter to every burst is
            not the paper's method, whatever its val PSNR. 0: every validation is eligible.
        select_after_anneal: with ``select: best_val`` and the annealed loss on (eq. 18), a validation is eligible
            only at or after the anneal's crossover (``beta alpha^t <= 1``: the alignment term no longer outweighs
            the reconstruction term), so the weights kept are not those of a model still pinned by the decaying
            term. ``False``: every validation is eligible.
        precision: ``fp32``, or ``bf16``: the networks (flow, KPN, DeblurGAN-v2, DMPHN) run under bfloat16
            autocast on the CPU or CUDA while the sensor, the exposures, the losses and the optimizer state stay
            float32 (:func:`gimbal.training.loop.networks_in`); the weights are float32 either way.
    """

    steps: int = 400
    batch_size: int = 4
    lr: float = 1e-3
    exposure_lr: float | None = 1e-2
    kernel_bias_lr: float | None = 1e-2
    warmup_steps: int = 50
    samples_per_clip: int = 8
    val_every: int = 50
    val_clips: int = 7
    checkpoint_every: int = 50
    loader: Literal["auto", "dali", "torch"] = "auto"
    device: str = "auto"
    clock: Literal["iterations", "examples"] = "iterations"
    select: Literal["best_val", "last"] = "best_val"
    min_kernel_change: float = 0.01
    select_after_anneal: bool = True
    precision: Literal["fp32", "bf16"] = "fp32"

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ParamError(f"params: 'train.precision' must be 'fp32' or 'bf16', got {self.precision!r}")
        if self.select not in ("best_val", "last"):
            raise ParamError(f"params: 'train.select' must be 'best_val' or 'last', got {self.select!r}")
        if self.clock not in ("iterations", "examples"):
            raise ParamError(f"params: 'train.clock' must be 'iterations' or 'examples', got {self.clock!r}")
        for key in ("steps", "batch_size", "val_every", "val_clips", "checkpoint_every", "samples_per_clip"):
            if getattr(self, key) < 1:
                raise ParamError(f"params: 'train.{key}' must be >= 1, got {getattr(self, key)}")
        for key in ("lr", "exposure_lr", "kernel_bias_lr"):
            value = getattr(self, key)
            if value is not None and not value > 0:
                raise ParamError(f"params: 'train.{key}' must be > 0, got {value}")
        if not 0.0 <= self.min_kernel_change < float("inf"):
            raise ParamError(f"params: 'train.min_kernel_change' must be >= 0, got {self.min_kernel_change}")
        if self.warmup_steps < 0:
            raise ParamError(f"params: 'train.warmup_steps' must be >= 0, got {self.warmup_steps}")
        if self.device != "auto":
            try:
                kind = torch.device(self.device).type
            except (RuntimeError, TypeError):
                kind = None
            if kind not in ("cpu", "cuda"):
                raise DeviceError(f"params: 'train.device' must be {DEVICE_CHOICES}, got {self.device!r}")


    def eligible(self, val: dict[str, float]) -> bool:
        """Whether a validation's weights may be selected (``min_kernel_change``; a model without a KPN always may)."""
        return val.get("kernel_input", float("inf")) >= self.min_kernel_change

    def lr_scale(self, step: int) -> float:
        """Factor of the network's learning rates at optimisation step ``step`` (0-based): the linear warm-up."""
        return min(1.0, (step + 1) / self.warmup_steps) if self.warmup_steps else 1.0

    def clock_time(self, step: int, world: int = 1) -> int:
        """``t`` of the annealed loss and of GenGS at optimisation step ``step`` (see ``clock``), ``world`` ranks."""
        return step * self.batch_size * world if self.clock == "examples" else step


@dataclass(frozen=True)
class Dist:
    """Distributed context (``torchrun`` sets ``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK``)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Whether this is rank 0 (the one that validates, logs and writes outputs)."""
        return self.rank == 0


def setup_distributed(spec: str, what: str = "params 'train.device'") -> tuple[Dist, torch.device]:
    """Initialise the process group when launched by ``torchrun`` and pick this rank's device.

    ``spec`` is a device spec of :func:`resolve_device`; on CUDA each rank takes ``cuda:LOCAL_RANK``.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(spec, what)
    if dev.type == "cuda":
        dev = torch.device(f"cuda:{local}") if dev.index is None or world > 1 else dev
        torch.cuda.set_device(dev)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    return Dist(rank, world, local), dev


def thread_budget() -> int:
    """Threads this process may use: ``GIMBAL_THREADS`` when set, else the cores divided by ``GIMBAL_JOBS`` (the
    number of runs sharing the machine, e.g. ``dvc queue start -j 2``; default 1).

    Two torch processes that each take every core starve each other (OpenMP threads spin while they wait).
    """
    for name in ("GIMBAL_THREADS", "GIMBAL_JOBS"):
        value = os.environ.get(name)
        if value is not None and (not value.isdigit() or int(value) < 1):
            raise ParamError(f"environment: {name} must be a positive integer, got {value!r}")
    if os.environ.get("GIMBAL_THREADS"):
        return int(os.environ["GIMBAL_THREADS"])
    return max(1, (os.cpu_count() or 1) // int(os.environ.get("GIMBAL_JOBS") or 1))


def apply_thread_budget(threads: int | None = None) -> int:
    """Limit torch (intra- and inter-op), OpenMP / MKL and OpenCV to ``threads`` (default :func:`thread_budget`);
    child processes (ffmpeg, workers) inherit the environment variables. Returns the number used."""
    threads = thread_budget() if threads is None else threads
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[name] = str(threads)
    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(threads)
    except RuntimeError:  # only settable before the first parallel work; the intra-op limit still applies
        pass
    try:
        import cv2

        cv2.setNumThreads(threads)
    except ImportError:
        pass
    return threads


VALIDATION_SEED_OFFSET = 10_000
"""``seed + 10_000``: the fixed validation scenes and their sensor noise (the same for every model)."""
DATA_SEED_OFFSET = 7919
"""``seed + 7919 * (rank + 1)``: the training-data augmentation stream (crop, shake, light level)."""
NOISE_SEED_OFFSET = 1000
"""``seed + 1000 * rank``: the sensor-noise stream of a training rank."""


@dataclass(frozen=True)
class Seeds:
    """Every random stream of one training rank, derived from the ``seed`` param by a named offset.

    Attributes:
        torch: torch's global RNG (weight init, dropout): ``seed + rank``.
        loader: the shuffled shard order: ``seed + rank``.
        data: augmentation (:data:`DATA_SEED_OFFSET`).
        noise: sensor noise (:data:`NOISE_SEED_OFFSET`).
        validation: the fixed validation set and its noise (:data:`VALIDATION_SEED_OFFSET`; rank-independent).
    """

    torch: int
    loader: int
    data: int
    noise: int
    validation: int

    @classmethod
    def for_rank(cls, seed: int, rank: int = 0) -> Seeds:
        """The streams of ``rank`` for the run seed ``seed``."""
        return cls(torch=seed + rank, loader=seed + rank, data=seed + DATA_SEED_OFFSET * (rank + 1),
                   noise=seed + NOISE_SEED_OFFSET * rank, validation=seed + VALIDATION_SEED_OFFSET)


def step_noise_seed(seed: int, step: int) -> int:
    """Sensor-noise seed of training step ``step`` for a loop that re-seeds the noise every step (so a resumed
    run draws the same noise without saving the sensor's RNG): ``(seed + 1) * 1_000_003 + step``."""
    return (seed + 1) * 1_000_003 + step
