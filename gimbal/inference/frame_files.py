"""Reading and writing the image files of :mod:`gimbal.inference.infer` (``gimbal infer``).

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
* Frames whose headers declare more than the memory left are refused before any is decoded
  (:mod:`gimbal.inference.imageheader`).

Writing (:func:`write_image`, :class:`OutputFiles` for outputs that appear together): ``.png`` 16-bit
(PyAV), ``.tif``/``.tiff`` 16-bit (tifffile), ``.jpg``/``.jpeg`` 8-bit (Pillow), ``.npy`` float32
unclipped; always atomically.
"""

from __future__ import annotations

import contextlib
import errno
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Self

import numpy as np

from gimbal.errors import DataError, DiskFullError, GimbalError, ParamError
from gimbal.inference.imageheader import check_frames_fit
from gimbal.io import atomic_path, disk_full_named

LUMA_709 = (0.2126, 0.7152, 0.0722)  # Rec. 709 luminance weights of linear RGB (raw DN are linear)
OUTPUT_EXTS = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".npy")
LINEAR_OUTPUT_EXTS = (".png", ".tif", ".tiff", ".npy")


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
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as exc:
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
    check_frames_fit([path])
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
        DataError: a frame is missing/unreadable or too large for the memory, or frames differ in size,
            channels or dtype, or values exceed the white level.
    """
    if not paths:
        raise UsageError("no frames given")
    check_frames_fit(paths)  # frames whose headers declare more than the memory left: refused before decoding
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


def _encode(tmp: Path, ext: str, image: np.ndarray) -> None:
    """Write ``image (C, H, W)`` to ``tmp`` in the format of extension ``ext`` (see :func:`write_image`)."""
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


def _encoded_bytes(ext: str, image: np.ndarray) -> int:
    """About the size of ``image`` written with extension ``ext`` (uncompressed: the most it takes)."""
    per = 1 if ext in (".jpg", ".jpeg") else (4 if ext == ".npy" else 2)
    return int(image.size * per)


class OutputFiles:
    """Output images written together: temp files beside each path are made when entered (an unwritable
    folder or a full disk fails before any work), filled by :meth:`write`, and renamed onto their paths
    only when the block ends without an error; on any error every temp is removed and no output changes."""

    def __init__(self, paths: Sequence[str | os.PathLike[str]]) -> None:
        self.paths = [Path(p) for p in paths]
        self._stack = contextlib.ExitStack()
        self._tmps: dict[Path, Path] = {}

    def __enter__(self) -> Self:
        with self._stack as stack:
            for path in self.paths:
                try:
                    self._tmps[path] = stack.enter_context(atomic_path(path))
                except OSError as exc:
                    raise output_error(path, exc) from exc
            self._stack = stack.pop_all()
        return self

    def write(self, path: str | os.PathLike[str], image: np.ndarray) -> Path:
        """Fill the temp of ``path`` (one of the paths given) with ``image (C, H, W)`` (see :func:`write_image`);
        a full disk is a :class:`~gimbal.errors.DiskFullError` naming ``path``."""
        path = Path(path)
        ext = path.suffix.lower()
        with disk_full_named(path, lambda: _encoded_bytes(ext, image)):
            _encode(self._tmps[path], ext, image)
        return path

    def __exit__(self, *exc_info: object) -> bool | None:
        if exc_info[0] is not None:
            return self._stack.__exit__(*exc_info)
        try:
            return self._stack.__exit__(None, None, None)  # fsync and rename every temp
        except OSError as exc:
            raise output_error(self.paths[0], exc) from exc


def output_error(path: Path, exc: OSError) -> Exception:
    """The one-line error of an output ``path`` that cannot be written: a :class:`~gimbal.errors.DiskFullError`
    for a full disk, a :class:`DataError` naming the file, its folder and the fix otherwise (``exc`` itself when
    it is already one of gimbal's)."""
    if isinstance(exc, GimbalError):
        return exc
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return DiskFullError(f"no space left on device writing {path}; free some space (or write elsewhere) and "
                             "re-run")
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return DataError(f"{path}: cannot write in folder {path.parent} ({exc.strerror}); choose a folder you can "
                         "write to, or change its permissions")
    if exc.errno == errno.EISDIR:
        return DataError(f"{path}: is a directory; give a file name")
    return DataError(f"{path}: cannot write it ({exc.strerror or exc}); check the path and re-run")


def write_image(path: str | os.PathLike[str], image: np.ndarray) -> Path:
    """Write ``image (C, H, W)`` (float, [0, 1] nominal) atomically; format by extension.

    ``.png`` / ``.tif`` / ``.tiff``: 16-bit; ``.jpg`` / ``.jpeg``: 8-bit (quality 95);
    ``.npy``: float32 ``(H, W, C)`` unclipped. Several outputs that must appear together: :class:`OutputFiles`.
    """
    path = check_output_path(path)
    with OutputFiles([path]) as files:
        files.write(path, image)
    return path
