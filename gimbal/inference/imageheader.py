"""Frame files by their headers: the size a PNG, TIFF, ``.npy`` or Pillow image declares, read without decoding
its pixels (:func:`frame_header`), and the check that a burst of them fits the memory this process can still
allocate (:func:`check_frames_fit`), so a header that claims 60000 x 60000 is refused, naming the file, before
anything is allocated (:mod:`gimbal.inference.frame_files` reads the frames after it).
"""

from __future__ import annotations

import contextlib
import math
import os
import resource
import struct
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gimbal.errors import DataError


@dataclass(frozen=True)
class FrameHeader:
    """What a frame file's header declares, read without decoding the pixels.

    Attributes:
        width, height, channels: the image's size (``channels``: samples per pixel, alpha included).
        itemsize: bytes per stored sample.
        shape: the array's shape when the file is an array that is not an image's ``(H, W)`` / ``(H, W, C)``
            (then ``width`` holds its size).
    """

    width: int
    height: int
    channels: int
    itemsize: int
    shape: tuple[int, ...] | None = None

    @property
    def values(self) -> int:
        """Samples in the image: ``width * height * channels``."""
        return self.width * self.height * self.channels

    def describe(self) -> str:
        """``a 60000 x 60000 image of 3 channel(s) at 16 bits`` (or ``an array of shape (...) at N bits``)."""
        if self.shape is not None:
            return f"an array of shape {self.shape} at {8 * self.itemsize} bits"
        return f"a {self.width} x {self.height} image of {self.channels} channel(s) at {8 * self.itemsize} bits"


_PNG_CHANNELS = {0: 1, 2: 3, 3: 3, 4: 2, 6: 4}  # IHDR colour type -> samples per decoded pixel (palette -> RGB)


def _png_header(path: Path) -> FrameHeader | None:
    with open(path, "rb") as fh:
        head = fh.read(26)
    if len(head) < 26 or head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        return None
    w, h, depth, color = struct.unpack(">IIBB", head[16:26])
    return FrameHeader(w, h, _PNG_CHANNELS.get(color, 4), 2 if depth > 8 else 1)


def _tiff_header(path: Path) -> FrameHeader | None:
    import tifffile

    with tifffile.TiffFile(path) as tif:
        series = tif.series[0]
        shape, axes, itemsize = tuple(series.shape), series.axes, series.dtype.itemsize
    dims = dict(zip(axes, shape, strict=True))
    other = math.prod(s for a, s in zip(axes, shape, strict=True) if a not in "YX")
    return FrameHeader(int(dims.get("X", 1)), int(dims.get("Y", 1)), int(other), int(itemsize))


def _npy_header(path: Path) -> FrameHeader | None:
    fmt = np.lib.format
    with open(path, "rb") as fh:
        version = fmt.read_magic(fh)
        if version == (1, 0):
            shape, _, dtype = fmt.read_array_header_1_0(fh)
        elif version == (2, 0):
            shape, _, dtype = fmt.read_array_header_2_0(fh)
        else:
            return None
    if len(shape) not in (2, 3):
        return FrameHeader(math.prod(shape), 1, 1, int(dtype.itemsize), tuple(int(d) for d in shape))
    return FrameHeader(int(shape[1]), int(shape[0]), int(shape[2]) if len(shape) == 3 else 1, int(dtype.itemsize))


def _pillow_header(path: Path) -> FrameHeader | None:
    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None  # the size is what is asked here
        try:
            with Image.open(path) as im:
                w, h, bands, mode = im.width, im.height, len(im.getbands()), im.mode
        finally:
            Image.MAX_IMAGE_PIXELS = limit
    return FrameHeader(w, h, 3 if mode == "P" else bands, 2 if ";16" in mode else (4 if mode in ("I", "F") else 1))


def frame_header(path: str | os.PathLike[str]) -> FrameHeader | None:
    """The size a frame file declares in its header (PNG, TIFF, ``.npy``, Pillow formats), read without decoding
    its pixels; ``None`` when the header cannot be read (:func:`read_frame` then reports the file)."""
    path = Path(path)
    ext = path.suffix.lower()
    reader = {".png": _png_header, ".tif": _tiff_header, ".tiff": _tiff_header, ".npy": _npy_header}.get(
        ext, _pillow_header)
    try:
        return reader(path)
    except Exception:  # noqa: BLE001 - any unreadable header: the decoder names the file and the problem
        return None


def available_memory_bytes() -> int | None:
    """Bytes this process can still allocate: the least of the system's available memory (``MemAvailable``), the
    room left under the address-space limit (``ulimit -v``) and under the cgroup's limit (containers, batch
    jobs); ``None`` when none of them can be read."""
    room: list[int] = []
    with contextlib.suppress(OSError, ValueError, StopIteration):
        text = Path("/proc/meminfo").read_text()
        room.append(int(next(line for line in text.splitlines() if line.startswith("MemAvailable:")).split()[1]) * 1024)
    with contextlib.suppress(OSError, ValueError, IndexError):
        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
        if soft != resource.RLIM_INFINITY:
            used = int(Path("/proc/self/statm").read_text().split()[0]) * os.sysconf("SC_PAGE_SIZE")
            room.append(max(soft - used, 0))
    with contextlib.suppress(OSError, ValueError):
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit != "max":
            room.append(max(int(limit) - int(Path("/sys/fs/cgroup/memory.current").read_text()), 0))
    return min(room) if room else None


#: bytes a frame takes per stored sample beyond the sample itself, about: three float32 copies on the way to the
#: burst (the converted frame, the stack, its contiguous (n, C, H, W) copy: 12), the float64 temporaries of the
#: conversion (16, one frame at a time, counted for each), and its share of the merge's float32 outputs
WORKING_BYTES_PER_VALUE = 28


def check_frames_fit(paths: Sequence[str | os.PathLike[str]], extra_bytes: float = 0.0, fix: str = "") -> None:
    """Refuse, from the files' headers and before any pixel is decoded, frames whose decoding would not fit the
    memory this process can still allocate (:func:`available_memory_bytes`): a header that claims 60000 x 60000
    fails here naming the file instead of a ``MemoryError`` later.

    Args:
        paths: the frame files that are held in memory together (a burst).
        extra_bytes: memory needed on top of the frames (e.g. the network's working memory).
        fix: what to do instead, appended to the message.
    Raises:
        DataError naming the largest frame, its declared size, the memory needed and the memory available.
    """
    headers = [(Path(p), frame_header(p)) for p in paths]
    known = [(p, h) for p, h in headers if h is not None]
    if not known:
        return
    need = sum(h.values * (h.itemsize + WORKING_BYTES_PER_VALUE) for _, h in known) + extra_bytes
    avail = available_memory_bytes()
    if avail is None or need <= avail:
        return
    path, big = max(known, key=lambda ph: ph[1].values * ph[1].itemsize)
    many = f" (with the other {len(paths) - 1} frame(s) of the burst)" if len(paths) > 1 else ""
    raise DataError(f"{path}: its header declares {big.describe()}; reading it{many} needs about {need / 1e9:.3g} "
                    f"GB of memory but only {avail / 1e9:.3g} GB is available; {fix or 'crop or downscale the frames'}")
