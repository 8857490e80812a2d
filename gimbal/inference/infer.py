"""Inference on a real burst: n frames + their exposure times -> the merged image.

The trained :class:`~gimbal.system.GimbalSystem` expects what its sensor model produced in
training: a raw, dark-subtracted burst ``(B, n, C, H, W)`` in [0, 1] DN (``DN / (2^m - 1)``)
with exposure durations ``dt_i`` in seconds; it applies eq. (14) (``Y_i * T / dt_i``, with the
*model's* budget ``T``, the brightness scale it was trained on) and the flow + KPN network.

Reading frames and writing images: :mod:`gimbal.inference.frame_files`.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gimbal.errors import DataError, ModelFileWrongKind, ParamError, ShapeError
from gimbal.inference.frame_files import (
    LINEAR_OUTPUT_EXTS,
    Burst,
    OutputFiles,
    UsageError,
    check_output_path,
    load_burst,
    match_channels,
)
from gimbal.inference.onnx_merge import OnnxSystem
from gimbal.inference.tiling import MAX_FLOW_PX, plan_tiles, reconstruct_tiled
from gimbal.runtime import resolve_device
from gimbal.sensor.camera import ALIASES, CameraSpec, camera_names, get_camera
from gimbal.system import GimbalSystem, load_system, read_system_file

log = logging.getLogger("gimbal.inference.infer")

US = 1e-6  # seconds per microsecond
SCHEDULE_TOL_US = 0.01  # slack when checking a schedule against the budget (as gimbal.sensor.exposure)
SCHEDULE_MATCH_REL = 0.01  # a given exposure "matches" the model's within max(1 us, 1 %)
SCHEDULE_MATCH_ABS_US = 1.0
#: the shortest exposure accepted whatever the camera's dt_min (us). No camera shutter is shorter, and eq. 14
#: scales frame i by T / dt_i: an exposure given in the wrong unit (1e-9 us) would blow the merge up
MIN_EXPOSURE_US = 0.1

DEFAULT_MAX_MEMORY_GB = 2.0  # working memory of the network's forward passes (gimbal.inference.tiling.plan_tiles)
GB = 1e9

#: warn when more than this fraction of the normalized burst's values (every frame and channel) reaches the white
#: level. Eq. (14) scales frame i by T / dt_i; a raw burst of the given exposures saturates there only where the
#: scene is brighter than a full-budget exposure can hold (highlights, which the ground truth clips as well), while
#: ordinary, already exposed video frames, or a white level set too low, saturate most of the image.
SATURATION_WARN_FRACTION = 0.25
#: a merge beyond this magnitude (linear units, 1 = the white level of a full-budget exposure) is refused like NaN:
#: no sane weights give it from a burst in [0, 1] DN
MAX_PLAUSIBLE_MERGE = 1e6


# ----------------------------------------------------------------------------- the schedule
def camera_for(system: GimbalSystem, name: str | None = None, budget_us: float | None = None,
               readout_us: float | None = None) -> CameraSpec:
    """The capture camera: preset ``name`` (default: the model's camera) with budget/readout overrides (us)."""
    if name is None:
        base = system.sensor.camera
    else:
        try:
            base = get_camera(name)
        except ParamError as exc:
            raise UsageError(f"--camera {name}: unknown camera; use one of {', '.join(camera_names())}") from exc
    return with_timing(base, budget_us, readout_us)


def with_timing(base: CameraSpec, budget_us: float | None = None, readout_us: float | None = None) -> CameraSpec:
    """``base`` with the ``--budget-us`` / ``--readout-us`` overrides (us; None keeps the camera's)."""
    changes: dict[str, float] = {}
    for flag, value, field in (("--budget-us", budget_us, "budget_s"), ("--readout-us", readout_us, "readout_s")):
        if value is not None:
            if not math.isfinite(value) or value < 0 or (field == "budget_s" and value == 0):
                raise UsageError(f"{flag} must be a {'positive' if field == 'budget_s' else 'non-negative'} "
                                 f"number of microseconds, got {value}")
            changes[field] = value * US
    return base.replace(**changes) if changes else base


def camera_label(name: str | None, camera: CameraSpec) -> str:
    """How messages name the capture camera: the preset name, plus the name given to ``--camera``
    when that differs (an experiment name such as ``indoor`` is a preset with other timing)."""
    if name is None:
        return camera.name
    key = name.strip().lower().replace("-", "_")
    return camera.name if ALIASES.get(key, key) == camera.name else f"{key} ({camera.name})"


def schedule_us(exposures_us: Sequence[float], camera: CameraSpec) -> dict[str, Any]:
    """The shutter schedule (Fig. 3) of back-to-back exposures, in microseconds.

    Same keys as :meth:`gimbal.sensor.exposure.Exposure.to_us` (so :func:`gimbal.sensor.plot.plot_schedule`
    draws it): ``t_1 = 0``, ``t_{i+1} = t_i + dt_i + dt_ro``, idle = ``T - sum(dt_i + dt_ro)``.
    """
    dts = [float(d) for d in exposures_us]
    ro = camera.readout_s / US
    starts, t = [], 0.0
    for d in dts:
        starts.append(round(t, 6))
        t += d + ro
    budget = camera.budget_s / US
    return {
        "n": len(dts),
        "budget_us": round(budget, 6),
        "readout_us": round(ro, 6),
        "min_exposure_us": round(camera.min_exposure_s / US, 6),
        "starts_us": starts,
        "durations_us": dts,
        "readout_starts_us": [round(s + d, 6) for s, d in zip(starts, dts, strict=True)],
        "idle_us": round(budget - t, 6),
        "idle_slot": budget - t > SCHEDULE_TOL_US,
        "learned": False,
    }


def check_exposures(exposures_us: Sequence[float], camera: CameraSpec, label: str | None = None) -> None:
    """Raise :class:`UsageError` unless every ``dt_i >= dt_min`` and ``sum(dt_i) + n dt_ro <= T`` (eqs. 12-13).

    ``label`` names the camera in the messages (default: ``camera.name``; see :func:`camera_label`).
    """
    label = camera.name if label is None else label
    check_exposure_values(exposures_us)
    dts = [float(d) for d in exposures_us]
    n, ro, budget = len(dts), camera.readout_s / US, camera.budget_s / US
    dt_min = camera.min_exposure_s / US
    lo, hi = max(dt_min, MIN_EXPOSURE_US), budget - n * ro
    where = (f"each must be in [{lo:g}, {hi:g}] us for camera '{label}' (at least its shortest exposure "
             f"dt_min = {dt_min:g} us and {MIN_EXPOSURE_US:g} us; at most the budget T = {budget:g} us less {n} "
             f"readouts of {ro:g} us)")
    short = [d for d in dts if d < dt_min - SCHEDULE_TOL_US]
    if short:
        raise UsageError(f"--exposures-us: exposure(s) {short} us are shorter than the camera '{label}' minimum "
                         f"dt_min = {dt_min:g} us; {where}")
    total = sum(dts) + n * ro
    if total > budget + SCHEDULE_TOL_US:
        raise UsageError(f"--exposures-us: exposures {dts} us plus {n} readouts of {ro:g} us take {total:g} us, "
                         f"more than the budget T = {budget:g} us of camera '{label}'; shorten the exposures "
                         f"({where}, and together within the budget) or pass --budget-us / --readout-us for your "
                         "camera setup")


def check_exposure_values(exposures_us: Sequence[float]) -> None:
    """Raise :class:`UsageError` naming ``--exposures-us``, the values and the valid range unless every exposure
    is a finite number of microseconds of at least :data:`MIN_EXPOSURE_US` (the camera's limits:
    :func:`check_exposures`)."""
    dts = [float(d) for d in exposures_us]
    if not dts:
        raise UsageError("no exposure times given (--exposures-us)")
    bad = [d for d in dts if not (math.isfinite(d) and d >= MIN_EXPOSURE_US)]
    if bad:
        raise UsageError(f"--exposures-us {' '.join(f'{d:g}' for d in bad)}: exposure times must be positive "
                         f"microseconds of at least {MIN_EXPOSURE_US:g} us (the shortest shutter; the valid range "
                         "ends at the camera's budget T less its readouts), e.g. 872 234 583; got "
                         f"{' '.join(f'{d:g}' for d in dts)}")


def schedule_matches(a_us: Sequence[float], b_us: Sequence[float]) -> bool:
    """True if two exposure lists agree within max(1 us, 1 %) each."""
    if len(a_us) != len(b_us):
        return False
    return all(abs(a - b) <= max(SCHEDULE_MATCH_ABS_US, SCHEDULE_MATCH_REL * abs(b))
               for a, b in zip(a_us, b_us, strict=True))


def format_schedule(sched: dict[str, Any]) -> str:
    """One line: exposures, starts, readout, budget and idle time in microseconds."""
    def f(xs: Sequence[float]) -> str:
        return ", ".join(f"{x:.1f}" for x in xs)

    return (f"exposures [{f(sched['durations_us'])}] us, starts [{f(sched['starts_us'])}] us, "
            f"readout {sched['readout_us']:.1f} us, budget T {sched['budget_us']:.1f} us, "
            f"idle {sched['idle_us']:.1f} us")


def read_model_schedule(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The learned shutter schedule (``exposures`` entry, microseconds) of a checkpoint from ``save_system``.

    Reads through :func:`gimbal.system.read_system_file` (``weights_only=True``: no code runs; every failure a
    :class:`~gimbal.errors.ModelFileError` naming the file); falls back to rebuilding the system when the entry is
    missing (older checkpoints).
    """
    path = Path(path)
    state = read_system_file(path, fix="pass the .pt file written by training (models/<variant>.pt) to --model")
    sched = state.get("exposures")
    if sched is None:
        system = load_system(path)
        sched = {"variant": state.get("variant"), "camera": system.sensor.camera.name,
                 **system.sensor.schedule_us()}
    problem = schedule_problem(sched)
    if problem:
        raise ModelFileWrongKind(f"{path}: the stored shutter schedule ('exposures') is malformed: {problem}; the "
                                 "file is damaged or not written by gimbal's training: re-train or restore it")
    return sched


_SCHEDULE_NUMBERS = ("budget_us", "readout_us", "min_exposure_us", "idle_us")
_SCHEDULE_LISTS = ("starts_us", "durations_us", "readout_starts_us")


def schedule_problem(sched: Any) -> str | None:
    """What is wrong with a stored schedule (the keys of :func:`schedule_us`), in a few words; ``None`` if nothing.

    It must be a mapping with ``n`` (a positive int), finite numbers under :data:`_SCHEDULE_NUMBERS`, ``n`` finite
    numbers under each of :data:`_SCHEDULE_LISTS` (positive durations), and strings (or null) for ``variant``
    and ``camera``."""
    if not isinstance(sched, dict):
        return f"a {type(sched).__name__}, not a mapping"
    n = sched.get("n")
    if not (isinstance(n, int) and not isinstance(n, bool) and n >= 1):
        return f"'n' is {n!r}, not a positive int" if "n" in sched else "no 'n' (the burst length)"

    def number(x: Any) -> bool:
        return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)

    for key in _SCHEDULE_NUMBERS:
        if not number(sched.get(key)):
            return f"'{key}' is {sched.get(key)!r}, not a finite number" if key in sched else f"no '{key}'"
    for key in _SCHEDULE_LISTS:
        xs = sched.get(key)
        if not (isinstance(xs, (list, tuple)) and len(xs) == n and all(number(x) for x in xs)):
            return (f"'{key}' is {str(xs)[:80]}, not a list of n = {n} finite numbers" if key in sched
                    else f"no '{key}'")
    if any(d <= 0 for d in sched["durations_us"]):
        return f"'durations_us' {sched['durations_us']} holds an exposure <= 0"
    for key in ("variant", "camera"):
        if not isinstance(sched.get(key), (str, type(None))):
            return f"'{key}' is {sched.get(key)!r}, not a name"
    return None


# ----------------------------------------------------------------------------- running the model
def saturated_fraction(frames: np.ndarray, exposures_us: Sequence[float], budget_s: float) -> float:
    """Fraction of the values of the exposure-normalized burst (eq. 14, ``Y_i * T / dt_i``) at or above 1.

    Args:
        frames: ``(n, C, H, W)`` raw burst in [0, 1] DN.
        exposures_us: the ``n`` exposure durations in microseconds.
        budget_s: the model's budget ``T`` in seconds (the scale eq. 14 normalizes to).
    """
    saturated = sum(int(np.count_nonzero(frame >= float(dt) * US / budget_s))
                    for frame, dt in zip(frames, exposures_us, strict=True))
    return saturated / max(frames.size, 1)


def check_merge(image: np.ndarray, linear: np.ndarray, model: str | os.PathLike[str]) -> None:
    """Raise :class:`DataError` naming ``model`` when a merge holds NaN/infinite or implausibly large values
    (beyond :data:`MAX_PLAUSIBLE_MERGE`): the weights are the likely cause, not the burst, which is checked."""
    bad = int(np.count_nonzero(~np.isfinite(image))) + int(np.count_nonzero(~np.isfinite(linear)))
    if bad:
        raise DataError(f"{model}: the merge has {bad} non-finite value(s) (NaN or infinity); the model file is the "
                        "likely cause (corrupt weights or a diverged training run): re-train or restore it")
    peak = max(float(np.abs(image).max(initial=0.0)), float(np.abs(linear).max(initial=0.0)))
    if peak > MAX_PLAUSIBLE_MERGE:
        raise DataError(f"{model}: the merge reaches {peak:.3g} (a burst in [0, 1] DN merges to about [0, 1]); the "
                        "model file is the likely cause (corrupt weights or a diverged training run): re-train or "
                        "restore it")


@torch.inference_mode()
def reconstruct_burst(system: GimbalSystem, frames: np.ndarray, exposures_us: Sequence[float],
                      max_memory_gb: float = DEFAULT_MAX_MEMORY_GB, max_flow_px: float = MAX_FLOW_PX) -> tuple[
        np.ndarray, np.ndarray]:
    """Run the model on one burst, in overlapping tiles when it does not fit ``max_memory_gb``.

    Args:
        system: a loaded system (eval mode).
        frames: ``(n, C, H, W)`` float32 in [0, 1] DN.
        exposures_us: the ``n`` exposure durations in microseconds.
        max_memory_gb: budget (1e9 bytes) for the network's working memory per forward pass;
            the frames and the result come on top (``(n + 3) C + 1`` floats per pixel).
        max_flow_px: flow magnitude (pixels) the tile margins allow for (see :mod:`gimbal.inference.tiling`).
        Several tiles show a progress bar on stderr while info messages are logged (not under ``gimbal -q``).
    Returns:
        ``(image, linear)``, each ``(C, H, W)`` float32: the display-space (gamma) merge and the
        linear eq. (15) merge, unclipped. Equal to the untiled merge within ~1e-5 while flows stay
        within ``max_flow_px``.
    """
    if frames.ndim != 4:
        raise ShapeError(f"frames must be (n, C, H, W), got {frames.shape}")
    if not (isinstance(max_memory_gb, (int, float)) and math.isfinite(max_memory_gb) and max_memory_gb > 0):
        raise UsageError(f"--max-memory-gb must be a positive number of gigabytes, got {max_memory_gb}")
    if not (isinstance(max_flow_px, (int, float)) and math.isfinite(max_flow_px) and max_flow_px >= 0):
        raise UsageError(f"--max-flow-px must be a non-negative number of pixels, got {max_flow_px}")
    burst = torch.from_numpy(np.ascontiguousarray(frames, dtype=np.float32)).unsqueeze(0)  # stays on the CPU
    device = next(system.parameters()).device
    durations_s = torch.tensor([float(d) for d in exposures_us], dtype=torch.float64, device=device) * US
    plan = plan_tiles(system.net, (frames.shape[2], frames.shape[3]), max_memory_gb * GB, max_flow_px)
    out = reconstruct_tiled(system, burst, durations_s, plan.tile, plan.overlap, plan.margin, plan.batch,
                            max_flow_px, progress=log.isEnabledFor(logging.INFO))
    if out.tiles > 1:
        log.info("tiled: %d tiles of %dx%d (overlap %d px, margin %d px, %d per pass, ~%.2f GB per pass)",
                 out.tiles, plan.tile[1], plan.tile[0], plan.overlap, plan.margin, plan.batch,
                 plan.estimated_bytes / GB)
    return out.image[0].float().numpy(), out.linear[0].float().numpy()


# ----------------------------------------------------------------------------- the whole command
@dataclass
class InferResult:
    """What :func:`infer_files` did.

    Attributes:
        image, linear: ``(C, H, W)`` float32 display-space and linear merges.
        schedule: the capture schedule used (microseconds, :func:`schedule_us` keys).
        model_schedule: the schedule the model was trained with (checkpoint ``exposures``).
        burst: the frames as fed to the model.
        warnings: warning messages emitted.
    """

    image: np.ndarray
    linear: np.ndarray
    schedule: dict[str, Any]
    model_schedule: dict[str, Any]
    burst: Burst
    warnings: list[str]


def infer_files(
    frames: Sequence[str | os.PathLike[str]],
    exposures_us: Sequence[float],
    model: str | os.PathLike[str],
    output: str | os.PathLike[str] | None = None,
    output_linear: str | os.PathLike[str] | None = None,
    camera: str | None = None,
    bits: int | None = None,
    white_level: float | None = None,
    black_level: float = 0.0,
    budget_us: float | None = None,
    readout_us: float | None = None,
    device: str = "auto",
    convert_channels: bool = False,
    max_memory_gb: float = DEFAULT_MAX_MEMORY_GB,
    max_flow_px: float = MAX_FLOW_PX,
    backend: str = "torch",
    gain: float = 1.0,
) -> InferResult:
    """Merge a real burst with a trained model and write the result (the ``gimbal infer`` command).

    Checks, in order: argument consistency (counts, exposures of at least :data:`MIN_EXPOSURE_US`, output
    extensions, two different output files that are not input frames), the output folders (writable: the temp
    files are made first), the model (burst length n, camera; its tensor checksum), the capture schedule against
    the camera (each ``dt_i >= dt_min``, ``sum(dt_i) + n dt_ro <= T``), then the frames (readable, same size,
    channels and bit depth, values within the white level). Warns when the camera or the schedule differs from the
    model's training setup, and when more than :data:`SATURATION_WARN_FRACTION` of the normalized burst saturates.
    Refuses a merge with non-finite or implausible values (:func:`check_merge`), naming the model file. The outputs
    appear together (:class:`~gimbal.inference.frame_files.OutputFiles`), only when everything succeeded: a refused or
    failed run writes nothing.

    Args:
        frames: n frame files in capture order.
        exposures_us: their exposure durations in microseconds.
        model: checkpoint written by :func:`gimbal.system.save_system`.
        output: display-space merge (16-bit PNG/TIFF, 8-bit JPEG, float .npy); None to skip.
        output_linear: linear merge (16-bit PNG/TIFF, float .npy); None to skip.
        camera: capture camera preset (default: the model's).
        bits, white_level, black_level: how stored values map to DN (see :func:`load_burst`).
        budget_us, readout_us: camera timing overrides in microseconds.
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:N``.
        convert_channels: convert gray <-> RGB frames to the model's channel count.
        max_memory_gb, max_flow_px: tiling (see :func:`reconstruct_burst`).
        backend: ``torch`` (``model`` a ``.pt`` file) or ``onnx`` (``model`` a ``.onnx`` file from ``gimbal export
            --onnx``, run by onnxruntime: :class:`gimbal.inference.onnx_merge.OnnxSystem`).
        gain: digital gain (> 0) on the burst's DN before the network: for a network trained at another light level
            (``gimbal plan``'s ``merge_model.gain``; its output has its training light's brightness).
    """
    warnings: list[str] = []

    def warn(msg: str) -> None:
        warnings.append(msg)
        log.warning(msg)

    if len(frames) != len(exposures_us):
        raise UsageError(f"{len(frames)} frame(s) given but {len(exposures_us)} exposure time(s); "
                         "give one --exposures-us value per frame, in the same order")
    check_exposure_values(exposures_us)
    check_backend(backend, model)
    if output is None and output_linear is None:
        raise UsageError("nothing to write: give -o/--output and/or --output-linear")
    outs = []
    if output is not None:
        outs.append(check_output_path(output))
    if output_linear is not None:
        outs.append(check_output_path(output_linear, LINEAR_OUTPUT_EXTS, "--output-linear"))
    if len(outs) == 2 and _same_file(*outs):
        raise UsageError(f"-o {outs[0]} and --output-linear {outs[1]} are the same file, so one would overwrite the "
                         "other; give two different names")
    inputs = {Path(f).resolve() for f in frames}
    for o in outs:
        if o.resolve() in inputs or any(_same_file(o, Path(f)) for f in frames):
            raise UsageError(f"{o}: output would overwrite an input frame; choose another name")
    missing = [str(f) for f in frames if not Path(f).is_file()]
    if missing:
        raise DataError(f"{', '.join(missing)}: frame file(s) not found")
    dev = resolve_device(device, "--device")
    with OutputFiles(outs) as files:  # the temps now: an unwritable folder fails before any work
        result = _infer(frames, exposures_us, model, camera, bits, white_level, black_level, budget_us, readout_us,
                        dev, convert_channels, max_memory_gb, max_flow_px, warn, backend, gain)
        if output is not None:
            files.write(outs[0], result.image)
        if output_linear is not None:
            files.write(outs[-1], result.linear)
    if output is not None:
        log.info("wrote %s", outs[0])
    if output_linear is not None:
        log.info("wrote %s (linear)", outs[-1])
    result.warnings = warnings
    return result


BACKENDS = ("torch", "onnx")


def check_backend(backend: str, model: str | os.PathLike[str]) -> None:
    """Raise :class:`UsageError` unless ``backend`` is one of :data:`BACKENDS` and ``model`` is its kind of file
    (``.onnx`` for ``onnx``, a PyTorch model file otherwise)."""
    if backend not in BACKENDS:
        raise UsageError(f"--backend {backend}: unknown backend; use one of {', '.join(BACKENDS)}")
    onnx_file = Path(model).suffix.lower() == ".onnx"
    if backend == "onnx" and not onnx_file:
        raise UsageError(f"--backend onnx runs an ONNX file, got --model {model}; export it first with `gimbal export "
                         f"--onnx {Path(model).with_suffix('.onnx').name} --model {model}` and pass that file")
    if backend == "torch" and onnx_file:
        raise UsageError(f"--model {model} is an ONNX file; pass --backend onnx to run it with onnxruntime")


def _same_file(a: Path, b: Path) -> bool:
    """Whether two paths name one file: equal once resolved, or the same existing file (a hard link)."""
    if a.resolve() == b.resolve():
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _infer(frames: Sequence[str | os.PathLike[str]], exposures_us: Sequence[float], model: str | os.PathLike[str],
           camera: str | None, bits: int | None, white_level: float | None, black_level: float,
           budget_us: float | None, readout_us: float | None, dev: torch.device, convert_channels: bool,
           max_memory_gb: float, max_flow_px: float, warn: Any, backend: str = "torch",
           gain: float = 1.0) -> InferResult:
    """The work of :func:`infer_files` once its arguments are checked: the merge, not yet written."""
    if backend == "onnx":
        system: Any = OnnxSystem(model, dev.type)
        model_schedule = system.schedule
    else:
        model_schedule = read_model_schedule(model)
        system = load_system(model, dev)
    n = system.sensor.n
    if len(frames) != n:
        raise UsageError(f"the model {model} merges bursts of n={n} frames, got {len(frames)}; "
                         f"capture {n} frames (model schedule: {model_schedule['durations_us']} us)")
    cam = camera_for(system, camera, budget_us, readout_us)
    if cam.name != system.sensor.camera.name:
        warn(f"capture camera '{cam.name}' differs from the model's training camera "
             f"'{system.sensor.camera.name}' (noise and gain differ); results may degrade")
    check_exposures(exposures_us, cam, camera_label(camera, cam))
    sched = schedule_us(exposures_us, cam)
    log.info("schedule used: %s", format_schedule(sched))
    if not schedule_matches(sched["durations_us"], model_schedule["durations_us"]):
        warn(f"exposures {sched['durations_us']} us differ from the schedule the model was trained with "
             f"({format_schedule(model_schedule)}); the network is tuned to that schedule, capture with "
             "it for best results")

    burst = load_burst(frames, cam.bits, bits, white_level, black_level)
    if not (math.isfinite(gain) and gain > 0):
        raise UsageError(f"--gain must be a finite number > 0, got {gain}")
    data = match_channels(burst.frames, system.net.channels, convert_channels) * np.float32(gain)
    h, w = burst.size
    log.info("burst: %d x %s frames of %dx%d (%s, white level %g, black level %g) on %s", n,
             {1: "gray", 3: "RGB"}.get(burst.channels, f"{burst.channels}-channel"), w, h, burst.dtype,
             burst.white_level, burst.black_level, dev)
    budget_s = system.sensor.camera.budget_s
    saturated = saturated_fraction(data, exposures_us, budget_s)
    if saturated > SATURATION_WARN_FRACTION:
        what = (f"{saturated:.0%} of the burst's values saturate once normalized by eq. 14 (Y_i * T / dt_i, "
                f"T = {budget_s / US:g} us; above {SATURATION_WARN_FRACTION:.0%} is suspect)")
        fix = (f"make a raw burst from them with `gimbal simulate-burst IMAGE --camera {cam.name} --exposures-us "
               f"{' '.join(f'{d:g}' for d in exposures_us)} -o DIR`, or linearise them (inverse sRGB gamma), scale "
               "frame i by dt_i / T and save them as 16-bit PNG/TIFF")
        if burst.dtype == np.uint8:
            raise DataError(f"{burst.paths[0]}: {what}: these 8-bit frames look like ordinary photos (gamma-encoded "
                            f"and already exposed), not raw captures of the given exposures, and would merge to a "
                            f"white image; {fix}")
        warn(f"{what}, so the merge will be washed out: the frames are likely not raw captures of the given "
             "exposures (e.g. ordinary video frames), or --white-level / --camera do not match how they were "
             f"captured and stored; for ordinary frames, {fix}")
    image, linear = reconstruct_burst(system, data, exposures_us, max_memory_gb, max_flow_px)
    check_merge(image, linear, model)
    burst = dataclasses.replace(burst, frames=data)
    return InferResult(image, linear, sched, model_schedule, burst, [])
