"""Inference on a real burst: n frames + their exposure times -> the merged image.

The trained :class:`~gimbal.system.GimbalSystem` expects what its sensor model produced in
training: a raw, dark-subtracted burst ``(B, n, C, H, W)`` in [0, 1] DN (``DN / (2^m - 1)``)
with exposure durations ``dt_i`` in seconds; it applies eq. (14) (``Y_i * T / dt_i``, with the
*model's* budget ``T``, the brightness scale it was trained on) and the flow + KPN network.

Reading frames (:func:`read_frame`, :func:`load_burst`):

* 8/16-bit PNG (grayscale or RGB; decoded with PyAV/ffmpeg because Pillow truncates 16-bit
  RGB PNG to 8 bits), TIFF (tifffile; integer or float), raw ``.npy`` arrays ``(H, W)`` or
  ``(H, W, C)``; any other extension Pillow reads (8-bit).
* Integer values are DN: ``burst = (value - black_level) / (white_level - black_level)``,
  clamped below at 0. ``white_level`` defaults to ``2^bits - 1`` with ``bits`` the camera's
  ADC depth, capped at the file's container depth (so 8-bit files use 255). m-bit data
  stored MSB-aligned in 16-bit files (``dn << (16 - m)``) needs ``white_level = (2^m - 1) << (16 - m)``
  (65472 for the 10-bit jetcam19m, 65520 for 12-bit): nothing is auto-detected, but the error
  for values above the white level says which value to pass.
* Floating-point arrays are taken as already normalized to [0, 1] unless a white level (or
  bit depth) is given explicitly.

Writing (:func:`write_image`): ``.png`` 16-bit (PyAV), ``.tif``/``.tiff`` 16-bit (tifffile),
``.jpg``/``.jpeg`` 8-bit (Pillow), ``.npy`` float32 unclipped; always atomically.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gimbal.errors import DataError, ParamError, ShapeError
from gimbal.io import atomic_path
from gimbal.sensor.camera import ALIASES, CameraSpec, camera_names, get_camera
from gimbal.system import GimbalSystem, checkpoint_reason, load_system
from gimbal.tiling import MAX_FLOW_PX, plan_tiles, reconstruct_tiled

log = logging.getLogger("gimbal.infer")

US = 1e-6  # seconds per microsecond
SCHEDULE_TOL_US = 0.01  # slack when checking a schedule against the budget (as gimbal.sensor.exposure)
SCHEDULE_MATCH_REL = 0.01  # a given exposure "matches" the model's within max(1 us, 1 %)
SCHEDULE_MATCH_ABS_US = 1.0
LUMA_709 = (0.2126, 0.7152, 0.0722)  # Rec. 709 luminance weights of linear RGB (raw DN are linear)

OUTPUT_EXTS = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".npy")
LINEAR_OUTPUT_EXTS = (".png", ".tif", ".tiff", ".npy")
DEFAULT_MAX_MEMORY_GB = 2.0  # working memory of the network's forward passes (gimbal.tiling.plan_tiles)
GB = 1e9


class UsageError(ParamError):
    """The command-line arguments are inconsistent (with each other, the camera or the model)."""


# ----------------------------------------------------------------------------- reading frames
def _read_png(path: Path) -> np.ndarray:
    """Decode a PNG exactly (8/16-bit gray or RGB) with ffmpeg's PNG decoder via PyAV."""
    import av

    try:
        with av.open(str(path)) as container:
            frame = next(container.decode(video=0))
    except (av.error.FFmpegError, StopIteration, OSError) as exc:
        raise DataError(f"{path}: cannot decode PNG ({exc}); check that the file is a valid PNG image") from exc
    fmt = frame.format.name
    native = {"gray": "gray", "gray16be": "gray16le", "rgb24": "rgb24", "rgb48be": "rgb48le",
              "monob": "gray", "pal8": "rgb24"}
    if fmt in {"rgba", "rgba64be", "ya8", "ya16be"}:
        raise DataError(f"{path}: PNG has an alpha channel ({fmt}); save the frame as grayscale or RGB")
    if fmt not in native:
        raise DataError(f"{path}: unsupported PNG pixel format {fmt}; save it as 8/16-bit grayscale or RGB")
    return frame.to_ndarray(format=native[fmt])


def _read_tiff(path: Path) -> np.ndarray:
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            arr, axes = series.asarray(), series.axes
    except (tifffile.TiffFileError, OSError, ValueError, IndexError) as exc:
        raise DataError(f"{path}: cannot read TIFF ({exc}); check that the file is a valid TIFF image") from exc
    if "S" in axes and axes.index("S") != len(axes) - 1:  # planar RGB -> channel last
        arr = np.moveaxis(arr, axes.index("S"), -1)
        axes = axes.replace("S", "") + "S"
    extra = [(a, s) for a, s in zip(axes, arr.shape, strict=True) if a not in "YXS" and s > 1]
    if extra:
        raise DataError(f"{path}: multi-page/multi-dimensional TIFF (axes {axes}, shape {arr.shape}); "
                        "give one single-image TIFF per frame")
    return arr.reshape([s for a, s in zip(axes, arr.shape, strict=True) if a in "YXS"])


def _read_npy(path: Path) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise DataError(f"{path}: cannot read .npy array ({exc}); save it with numpy.save") from exc


def _read_pillow(path: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            if im.mode == "P":
                im = im.convert("RGB")
            return np.asarray(im)
    except (UnidentifiedImageError, OSError) as exc:
        raise DataError(f"{path}: cannot read image ({exc}); use PNG, TIFF or .npy frames") from exc


def read_frame(path: str | os.PathLike[str]) -> np.ndarray:
    """Read one frame with its stored values unchanged.

    Returns:
        ``(H, W)`` or ``(H, W, C)`` (C = 1 or 3) array of the file's own dtype (uint8, uint16, float...).
    Raises:
        DataError naming the file if it is missing, unreadable, or not a grayscale/RGB image.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: frame file not found")
    ext = path.suffix.lower()
    if ext == ".png":
        arr = _read_png(path)
    elif ext in (".tif", ".tiff"):
        arr = _read_tiff(path)
    elif ext == ".npy":
        arr = _read_npy(path)
    else:
        arr = _read_pillow(path)
    if arr.dtype == bool or arr.dtype.kind not in "uif":
        raise DataError(f"{path}: unsupported pixel type {arr.dtype}; use unsigned integers (DN) or floats")
    if arr.ndim == 3 and arr.shape[-1] == 4:
        raise DataError(f"{path}: frame has 4 channels (RGBA?); save it as grayscale or RGB")
    if not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[-1] in (1, 3))):
        raise DataError(f"{path}: expected a grayscale (H, W) or RGB (H, W, 3) frame, got shape {arr.shape}")
    if min(arr.shape[:2]) < 1:
        raise DataError(f"{path}: empty frame of shape {arr.shape}")
    return arr


def _container_bits(dtype: np.dtype) -> int | None:
    """Bits of an integer dtype (8 for uint8, 16 for uint16...), None for floats."""
    return None if dtype.kind == "f" else dtype.itemsize * 8


@dataclass
class Burst:
    """A burst read from files.

    Attributes:
        frames: ``(n, C, H, W)`` float32 in [0, 1] DN (dark/black level subtracted).
        paths: the frame files, in burst order.
        dtype: the files' common stored dtype.
        white_level, black_level: stored values mapped to 1 and 0.
    """

    frames: np.ndarray
    paths: list[Path]
    dtype: np.dtype
    white_level: float
    black_level: float

    @property
    def channels(self) -> int:
        return int(self.frames.shape[1])

    @property
    def size(self) -> tuple[int, int]:
        """``(H, W)``."""
        return int(self.frames.shape[2]), int(self.frames.shape[3])


def white_level_for(dtype: np.dtype, camera_bits: int, bits: int | None = None,
                    white_level: float | None = None) -> float:
    """The stored value that means full scale (``2^m - 1`` DN) for frames of ``dtype``.

    Precedence: ``white_level``; else ``2^bits - 1``; else floats -> 1.0 (already normalized)
    and integers -> ``2^min(camera_bits, container bits) - 1``.
    """
    if white_level is not None:
        if not (white_level > 0 and math.isfinite(white_level)):
            raise UsageError(f"--white-level must be a positive number, got {white_level}")
        return float(white_level)
    if bits is not None:
        if not 1 <= bits <= 32:
            raise UsageError(f"--bits must be in [1, 32], got {bits}")
        return float((1 << bits) - 1)
    container = _container_bits(dtype)
    if container is None:
        return 1.0
    return float((1 << min(camera_bits, container)) - 1)


def _too_bright_hint(arr: np.ndarray, white: float, dtype: np.dtype) -> str:
    """Suggest the right --white-level / --bits for values above the white level."""
    vmax = float(arr.max())
    container = _container_bits(dtype)
    if container is None:
        return "pass --white-level (the value of a saturated pixel) for DN-valued float data"
    top = int(white) + 1
    bits = top.bit_length() - 1 if white == int(white) and top & (top - 1) == 0 else None  # white = 2^bits - 1
    if bits is not None and bits < container:
        shift = container - bits
        if np.all(np.remainder(arr.astype(np.int64), 1 << shift) == 0):
            return (f"the data look like {bits}-bit values shifted left by {shift} (MSB-aligned); pass "
                    f"--white-level {((1 << bits) - 1) << shift}")
    need = max(int(vmax).bit_length(), 1)
    return f"pass --bits {need} (or more) if the sensor data are {need}-bit, or the camera's --white-level"


def load_burst(paths: Sequence[str | os.PathLike[str]], camera_bits: int, bits: int | None = None,
               white_level: float | None = None, black_level: float = 0.0) -> Burst:
    """Read ``n`` frames and convert them to a burst in [0, 1] DN (see the module docstring).

    Args:
        paths: frame files in capture order.
        camera_bits: ADC bit depth m of the camera (default white level ``2^m - 1``).
        bits: bit depth of the stored values, overriding ``camera_bits``.
        white_level: stored value of a saturated pixel, overriding ``bits``.
        black_level: stored value of a black pixel (sensor pedestal), subtracted first.
    Returns:
        :class:`Burst` with ``frames (n, C, H, W)`` float32.
    Raises:
        DataError: a frame is missing/unreadable, or frames differ in size, channels or dtype, or
            values exceed the white level.
    """
    if not paths:
        raise UsageError("no frames given")
    raws = [read_frame(p) for p in paths]
    first, p0 = raws[0], Path(paths[0])
    for raw, p in zip(raws[1:], paths[1:], strict=True):
        p = Path(p)
        if raw.shape[:2] != first.shape[:2]:
            raise DataError(f"{p}: frame size {raw.shape[1]}x{raw.shape[0]} differs from {p0} "
                            f"({first.shape[1]}x{first.shape[0]}); all frames of a burst must have the same size")
        c, c0 = (raw.shape[2] if raw.ndim == 3 else 1), (first.shape[2] if first.ndim == 3 else 1)
        if c != c0:
            raise DataError(f"{p}: frame has {c} channel(s) but {p0} has {c0}; all frames must be gray or all RGB")
        if raw.dtype != first.dtype:
            raise DataError(f"{p}: bit depth/pixel type {raw.dtype} differs from {p0} ({first.dtype}); "
                            "save all frames of a burst with the same bit depth")
    dtype = first.dtype
    white = white_level_for(dtype, camera_bits, bits, white_level)
    if not (math.isfinite(black_level) and 0 <= black_level < white):
        raise UsageError(f"--black-level must be in [0, white level {white:g}), got {black_level}")
    frames = []
    for raw, p in zip(raws, paths, strict=True):
        if not np.all(np.isfinite(raw)):
            raise DataError(f"{p}: frame contains NaN or infinite values")
        vmax = float(raw.max())
        if vmax > white * (1 + 1e-6):
            raise DataError(f"{p}: values up to {vmax:g} exceed the white level {white:g}; "
                            f"{_too_bright_hint(raw, white, dtype)}")
        x = (raw.astype(np.float64) - black_level) / (white - black_level)
        x = np.clip(x, 0.0, 1.0).astype(np.float32)
        frames.append(x[:, :, None] if x.ndim == 2 else x)
    stack = np.stack(frames).transpose(0, 3, 1, 2)  # (n, H, W, C) -> (n, C, H, W)
    return Burst(np.ascontiguousarray(stack), [Path(p) for p in paths], dtype, white, float(black_level))


def match_channels(frames: np.ndarray, channels: int, convert: bool, what: str = "model") -> np.ndarray:
    """Make ``frames (n, C, H, W)`` have ``channels`` colour channels.

    Without ``convert`` a mismatch raises :class:`UsageError`; with it, gray is replicated to
    RGB and RGB is reduced to Rec. 709 luminance (the data are linear DN).
    """
    c = frames.shape[1]
    if c == channels:
        return frames
    kind = {1: "grayscale", 3: "RGB"}
    if not convert:
        raise UsageError(f"the frames are {kind.get(c, f'{c}-channel')} but the {what} expects "
                         f"{kind.get(channels, f'{channels}-channel')} input; pass --convert-channels "
                         "to convert them (RGB -> luminance, gray -> replicated RGB)")
    if c == 1:
        return np.ascontiguousarray(np.repeat(frames, channels, axis=1))
    if c == 3 and channels == 1:
        w = np.asarray(LUMA_709, dtype=np.float32).reshape(1, 3, 1, 1)
        return np.ascontiguousarray((frames * w).sum(axis=1, keepdims=True))
    raise UsageError(f"cannot convert {c}-channel frames to {channels} channels")


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
    dts = [float(d) for d in exposures_us]
    if not dts:
        raise UsageError("no exposure times given (--exposures-us)")
    bad = [d for d in dts if not (math.isfinite(d) and d > 0)]
    if bad:
        raise UsageError(f"exposure times must be positive microseconds, got {dts}")
    dt_min = camera.min_exposure_s / US
    short = [d for d in dts if d < dt_min - SCHEDULE_TOL_US]
    if short:
        raise UsageError(f"exposure(s) {short} us are shorter than the camera '{label}' minimum "
                         f"dt_min = {dt_min:g} us")
    n, ro, budget = len(dts), camera.readout_s / US, camera.budget_s / US
    total = sum(dts) + n * ro
    if total > budget + SCHEDULE_TOL_US:
        raise UsageError(f"exposures {dts} us plus {n} readouts of {ro:g} us take {total:g} us, more than the "
                         f"budget T = {budget:g} us of camera '{label}'; shorten the exposures "
                         "or pass --budget-us / --readout-us for your camera setup")


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

    Reads with ``weights_only=True`` (no code runs); falls back to rebuilding the system when the
    entry is missing (older checkpoints).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: model file not found; train it first (dvc repro) or pass the right --model path")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types (UnpicklingError, RuntimeError, EOFError...)
        raise DataError(f"{path}: not a gimbal model checkpoint ({checkpoint_reason(exc)}); pass the .pt file "
                        "written by training (models/<variant>.pt) to --model") from exc
    if not isinstance(state, dict):
        raise DataError(f"{path}: not a gimbal model checkpoint (top level is {type(state).__name__})")
    sched = state.get("exposures")
    if not isinstance(sched, dict) or "durations_us" not in sched:
        system = load_system(path)
        sched = {"variant": state.get("variant"), "camera": system.sensor.camera.name,
                 **system.sensor.schedule_us()}
    return sched


# ----------------------------------------------------------------------------- running the model
def resolve_device(device: str) -> torch.device:
    """``auto`` -> CUDA if available else CPU; otherwise the named device (checked)."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise UsageError(f"--device: unknown device '{device}' (use auto, cpu, cuda or cuda:N)") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"--device {device}: CUDA is not available on this machine; use --device cpu")
    return dev


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
        max_flow_px: flow magnitude (pixels) the tile margins allow for (see :mod:`gimbal.tiling`).
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
                            max_flow_px)
    if out.tiles > 1:
        log.info("tiled: %d tiles of %dx%d (overlap %d px, margin %d px, %d per pass, ~%.2f GB per pass)",
                 out.tiles, plan.tile[1], plan.tile[0], plan.overlap, plan.margin, plan.batch,
                 plan.estimated_bytes / GB)
    return out.image[0].float().numpy(), out.linear[0].float().numpy()


# ----------------------------------------------------------------------------- writing images
def to_uint(image: np.ndarray, bits: int = 16) -> np.ndarray:
    """``(C, H, W)`` float in [0, 1] -> ``(H, W)`` or ``(H, W, C)`` unsigned ints, ``round(clip(x) * (2^bits - 1))``."""
    top = (1 << bits) - 1
    q = np.rint(np.clip(image, 0.0, 1.0) * top).astype(np.uint16 if bits > 8 else np.uint8)
    q = q.transpose(1, 2, 0)
    return np.ascontiguousarray(q[:, :, 0] if q.shape[2] == 1 else q)


def _png16_bytes(arr: np.ndarray) -> bytes:
    """Encode ``(H, W)`` / ``(H, W, 3)`` uint16 as a 16-bit PNG (Pillow cannot write 16-bit RGB PNG)."""
    import av

    gray = arr.ndim == 2
    ctx = av.CodecContext.create("png", "w")
    ctx.width, ctx.height = arr.shape[1], arr.shape[0]
    ctx.pix_fmt = "gray16be" if gray else "rgb48be"
    ctx.time_base = Fraction(1, 1)
    frame = av.VideoFrame.from_ndarray(arr, format="gray16le" if gray else "rgb48le").reformat(format=ctx.pix_fmt)
    packets = list(ctx.encode(frame)) + list(ctx.encode(None))
    return b"".join(bytes(p) for p in packets)


def check_output_path(path: str | os.PathLike[str], allowed: Sequence[str] = OUTPUT_EXTS,
                      flag: str = "-o") -> Path:
    """Raise :class:`UsageError` unless ``path`` has a supported extension."""
    path = Path(path)
    if path.suffix.lower() not in allowed:
        raise UsageError(f"{flag} {path}: unsupported extension '{path.suffix}'; use one of {', '.join(allowed)}")
    if path.is_dir():
        raise UsageError(f"{flag} {path}: is a directory; give a file name")
    if not path.parent.is_dir():
        raise UsageError(f"{flag} {path}: directory {path.parent} does not exist; create it first or write elsewhere")
    return path


def write_image(path: str | os.PathLike[str], image: np.ndarray) -> Path:
    """Write ``image (C, H, W)`` (float, [0, 1] nominal) atomically; format by extension.

    ``.png`` / ``.tif`` / ``.tiff``: 16-bit; ``.jpg`` / ``.jpeg``: 8-bit (quality 95);
    ``.npy``: float32 ``(H, W, C)`` unclipped.
    """
    path = check_output_path(path)
    ext = path.suffix.lower()
    with atomic_path(path) as tmp:
        if ext == ".png":
            tmp.write_bytes(_png16_bytes(to_uint(image, 16)))
        elif ext in (".tif", ".tiff"):
            import tifffile

            q = to_uint(image, 16)
            tifffile.imwrite(tmp, q, photometric="minisblack" if q.ndim == 2 else "rgb")
        elif ext in (".jpg", ".jpeg"):
            from PIL import Image

            Image.fromarray(to_uint(image, 8)).save(tmp, format="JPEG", quality=95)
        else:
            np.save(tmp, np.ascontiguousarray(image.transpose(1, 2, 0), dtype=np.float32))
    return path


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
) -> InferResult:
    """Merge a real burst with a trained model and write the result (the ``gimbal infer`` command).

    Checks, in order: argument consistency (counts, positive exposures, output extensions),
    the model (burst length n, camera), the capture schedule against the camera (each
    ``dt_i >= dt_min``, ``sum(dt_i) + n dt_ro <= T``), then the frames (readable, same size,
    channels and bit depth, values within the white level). Warns when the camera or the
    schedule differs from the model's training setup.

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
    """
    warnings: list[str] = []

    def warn(msg: str) -> None:
        warnings.append(msg)
        log.warning(msg)

    if len(frames) != len(exposures_us):
        raise UsageError(f"{len(frames)} frame(s) given but {len(exposures_us)} exposure time(s); "
                         "give one --exposures-us value per frame, in the same order")
    bad = [d for d in exposures_us if not (math.isfinite(float(d)) and float(d) > 0)]
    if bad:
        raise UsageError(f"exposure times must be positive microseconds, got {list(exposures_us)}")
    if output is None and output_linear is None:
        raise UsageError("nothing to write: give -o/--output and/or --output-linear")
    outs = []
    if output is not None:
        outs.append(check_output_path(output))
    if output_linear is not None:
        outs.append(check_output_path(output_linear, LINEAR_OUTPUT_EXTS, "--output-linear"))
    inputs = {Path(f).resolve() for f in frames}
    for o in outs:
        if o.resolve() in inputs:
            raise UsageError(f"{o}: output would overwrite an input frame; choose another name")
    missing = [str(f) for f in frames if not Path(f).is_file()]
    if missing:
        raise DataError(f"{', '.join(missing)}: frame file(s) not found")
    dev = resolve_device(device)

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
    data = match_channels(burst.frames, system.net.channels, convert_channels)
    h, w = burst.size
    log.info("burst: %d x %s frames of %dx%d (%s, white level %g, black level %g) on %s", n,
             {1: "gray", 3: "RGB"}.get(burst.channels, f"{burst.channels}-channel"), w, h, burst.dtype,
             burst.white_level, burst.black_level, dev)
    image, linear = reconstruct_burst(system, data, exposures_us, max_memory_gb, max_flow_px)
    if output is not None:
        log.info("wrote %s", write_image(output, image))
    if output_linear is not None:
        log.info("wrote %s (linear)", write_image(output_linear, linear))
    burst = dataclasses.replace(burst, frames=data)
    return InferResult(image, linear, sched, model_schedule, burst, warnings)
