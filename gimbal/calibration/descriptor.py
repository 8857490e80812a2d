"""EMVA 1288 release 4.0 descriptor files and their images.

A descriptor is plain text, one command per line. ``#`` at the start of a line, or after a space or tab,
starts a comment that runs to the end of the line (so an image path cannot contain " #")::

    v 4.0                          release of the standard the data follow
    n <bits> <width> <height>      ADC bit depth and image size (once)
    b <texp_ns> <photons>          a bright point: exposure time in ns, mean photons per pixel
    d <texp_ns>                    a dark point at that exposure time
    i <image path>                 an image of the point above (relative to the descriptor; '\\' allowed)

A point with exactly two images is a *temporal* point (a pair: mean and temporal variance); a point with
:data:`MIN_STACK_IMAGES` or more images (``L`` of them) is a *spatial* stack (the averaged image gives the
non-uniformities). A point with three images is refused: it is most often a pair with a stray ``i`` line, not a
stack. No image may be listed twice in one point.

Images: 8/16/32-bit PNG or TIFF or ``.npy``, one grayscale image each, raw integer values in DN
(``0 .. 2^bits - 1``, in a file type that holds ``bits`` bits). Image paths are relative to the descriptor's
folder and must stay inside it (no absolute paths, no ``..`` out of it) unless ``allow_outside`` is given.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path, PureWindowsPath

import numpy as np

from gimbal.errors import DataError
from gimbal.inference.frame_files import read_frame

__all__ = ["MIN_STACK_IMAGES", "SUPPORTED_VERSION", "Descriptor", "Point", "load_image", "read_descriptor",
           "strip_comment"]

SUPPORTED_VERSION = "4.0"
MIN_STACK_IMAGES = 4
"""Fewest images of a spatial stack; two images are a pair, three are refused (a pair and a stray line)."""
_COMMENT = re.compile(r"(^|\s)#")


@dataclass(frozen=True)
class Point:
    """One operating point of the descriptor.

    Attributes:
        line: line number of its ``b`` / ``d`` command (1-based), for messages.
        texp_s: exposure time in seconds.
        photons: mean photons per pixel ``mu_p`` during the exposure; 0 for a dark point.
        images: the image files, resolved against the descriptor's folder.
    """

    line: int
    texp_s: float
    photons: float
    images: tuple[Path, ...]

    @property
    def dark(self) -> bool:
        """A ``d`` point (no light)."""
        return self.photons == 0.0

    @property
    def spatial(self) -> bool:
        """A stack of more than two images (spatial non-uniformity), else a temporal pair."""
        return len(self.images) > 2

    def describe(self) -> str:
        """``"b 2000 us, 1091 photons (line 9)"``-style label for messages and tables."""
        kind = "d" if self.dark else "b"
        light = "" if self.dark else f", {self.photons:.6g} photons"
        return f"{kind} {self.texp_s * 1e6:.6g} us{light} (line {self.line})"


@dataclass(frozen=True)
class Descriptor:
    """A parsed descriptor file.

    Attributes:
        path: the descriptor file.
        version: the ``v`` line (always :data:`SUPPORTED_VERSION` once parsed).
        bits: ADC bit depth from the ``n`` line.
        width, height: image size in pixels from the ``n`` line.
        points: every ``b`` / ``d`` point in file order.
    """

    path: Path
    version: str
    bits: int
    width: int
    height: int
    points: tuple[Point, ...]

    @property
    def max_dn(self) -> int:
        """Largest digital number, ``2^bits - 1``."""
        return (1 << self.bits) - 1


def _number(token: str, path: Path, lineno: int, what: str) -> float:
    try:
        value = float(token.replace(",", "."))
    except ValueError:
        raise DataError(f"{path}: line {lineno}: {what} must be a number, got {token!r}") from None
    if not np.isfinite(value):
        raise DataError(f"{path}: line {lineno}: {what} must be finite, got {token!r}")
    return value


def _check_version(version: str | None, path: Path, lineno: int) -> None:
    if version is None:
        raise DataError(f"{path}: no 'v {SUPPORTED_VERSION}' line; gimbal calibrate reads EMVA 1288 release "
                        f"{SUPPORTED_VERSION} descriptors: add 'v {SUPPORTED_VERSION}' as the first line if the "
                        "data follow release 4.0")
    try:
        ok = float(version) == float(SUPPORTED_VERSION)
    except ValueError:
        ok = False
    if not ok:
        raise DataError(f"{path}: line {lineno}: descriptor of EMVA 1288 release {version}; gimbal calibrate reads "
                        f"release {SUPPORTED_VERSION} descriptors ('v {SUPPORTED_VERSION}'): export the data set "
                        "again as release 4.0")


def strip_comment(line: str) -> str:
    """``line`` without its comment (``#`` at the start or after whitespace, to the end of the line), stripped."""
    m = _COMMENT.search(line)
    return (line[:m.start()] if m else line).strip()


def _image_path(raw: str, root: Path, allow_outside: bool, path: Path, lineno: int) -> Path:
    """The image of an ``i`` line resolved against the descriptor's folder ``root``; outside it only if allowed."""
    win = PureWindowsPath(raw)
    rel = win.as_posix() if "\\" in raw else raw
    if allow_outside:
        return root / rel
    if win.anchor or Path(rel).is_absolute():
        raise DataError(f"{path}: line {lineno}: image path '{raw}' is absolute; image paths are relative to the "
                        "descriptor's folder: move the images into it (or pass --allow-outside to read them where "
                        "they are)")
    target = root / rel
    try:
        target.resolve().relative_to(root.resolve())
    except ValueError:
        raise DataError(f"{path}: line {lineno}: image path '{raw}' leads outside the descriptor's folder "
                        f"{root}; keep the images in the data set's folder (or pass --allow-outside to read them "
                        "where they are)") from None
    return target


def read_descriptor(path: str | os.PathLike[str], allow_outside: bool = False) -> Descriptor:
    """Parse an EMVA 1288 release 4.0 descriptor (see the module docstring). Images are not read here.

    Args:
        path: the descriptor file.
        allow_outside: accept image paths that are absolute or lead outside the descriptor's folder.
    Raises:
        DataError naming the file and line: missing file, another release, a malformed or unknown line,
        a point with fewer than two or exactly three images, an image listed twice in a point, an image path
        outside the descriptor's folder (unless ``allow_outside``), an ``i`` line outside a point, no ``n``
        line or no points.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: descriptor file not found; pass the EMVA 1288 descriptor (.txt) of the data set")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read the descriptor as UTF-8 text ({exc})") from exc
    version: tuple[str, int] | None = None
    fmt: tuple[int, int, int] | None = None
    points: list[tuple[int, float, float, list[Path], list[int]]] = []
    root = path.parent
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = strip_comment(raw)
        if not line:
            continue
        cmd, rest = (line.split(None, 1) + [""])[:2]
        args = rest.split()
        if cmd == "v":
            if len(args) != 1:
                raise DataError(f"{path}: line {lineno}: expected 'v <release>', got {line!r}")
            version = (args[0], lineno)
            _check_version(args[0], path, lineno)
        elif cmd == "n":
            if fmt is not None:
                raise DataError(f"{path}: line {lineno}: a second 'n' line; give 'n <bits> <width> <height>' once")
            if len(args) != 3 or not all(a.isdigit() for a in args):
                raise DataError(f"{path}: line {lineno}: expected 'n <bits> <width> <height>' (integers), got {line!r}")
            bits, width, height = (int(a) for a in args)
            if not 1 <= bits <= 24 or width < 2 or height < 2:
                raise DataError(f"{path}: line {lineno}: bits must be in [1, 24] and the image at least 2 x 2 "
                                f"pixels, got {line!r}")
            fmt = (bits, width, height)
        elif cmd in ("b", "d"):
            want = 2 if cmd == "b" else 1
            if len(args) != want:
                usage = "b <texp_ns> <photons_per_pixel>" if cmd == "b" else "d <texp_ns>"
                raise DataError(f"{path}: line {lineno}: expected '{usage}', got {line!r}")
            texp_ns = _number(args[0], path, lineno, "the exposure time (ns)")
            photons = _number(args[1], path, lineno, "the photon count") if cmd == "b" else 0.0
            if texp_ns <= 0 or photons < 0 or (cmd == "b" and photons == 0):
                raise DataError(f"{path}: line {lineno}: the exposure time must be > 0 ns and a bright point's "
                                f"photons > 0, got {line!r} (a dark point is a 'd' line)")
            points.append((lineno, texp_ns * 1e-9, photons, [], []))
        elif cmd == "i":
            if not points:
                raise DataError(f"{path}: line {lineno}: image line before any 'b' or 'd' point")
            if not rest.strip():
                raise DataError(f"{path}: line {lineno}: expected 'i <image path>'")
            image = Path(os.path.normpath(_image_path(rest.strip(), root, allow_outside, path, lineno)))
            images, lines = points[-1][3], points[-1][4]
            if image in images:
                first = lines[images.index(image)]
                raise DataError(f"{path}: line {lineno}: '{rest.strip()}' is listed twice in the point of line "
                                f"{points[-1][0]} (first on line {first}); a pair or stack is distinct exposures: "
                                "list each image once")
            images.append(image)
            lines.append(lineno)
        else:
            raise DataError(f"{path}: line {lineno}: unknown command {cmd!r}; a release 4.0 descriptor has "
                            "'v', 'n', 'b', 'd' and 'i' lines")
    _check_version(version[0] if version else None, path, version[1] if version else 0)
    if fmt is None:
        raise DataError(f"{path}: no 'n <bits> <width> <height>' line; add it after the 'v' line")
    if not points:
        raise DataError(f"{path}: no 'b' or 'd' points; the descriptor lists no measurements")
    seen: dict[tuple[bool, float, float], int] = {}
    out = []
    for lineno, texp, photons, images, lines in points:
        if len(images) < 2:
            raise DataError(f"{path}: line {lineno}: a point needs at least two images (a pair), got {len(images)}")
        if 2 < len(images) < MIN_STACK_IMAGES:
            raise DataError(f"{path}: line {lineno}: the point has {len(images)} images (lines {lines[0]}-"
                            f"{lines[-1]}); a point is a pair of exactly 2 images or a spatial stack of "
                            f"{MIN_STACK_IMAGES} or more: remove the stray 'i' line, or give it its own 'b' / 'd' "
                            "line")
        key = (len(images) > 2, texp, photons)
        if key in seen:
            raise DataError(f"{path}: line {lineno}: the same point as line {seen[key]} (same exposure time and "
                            "photons); merge or remove one")
        seen[key] = lineno
        out.append(Point(lineno, texp, photons, tuple(images)))
    bits, width, height = fmt
    return Descriptor(path, version[0] if version else SUPPORTED_VERSION, bits, width, height, tuple(out))


def load_image(path: Path, desc: Descriptor, point: Point) -> np.ndarray:
    """Read one image of ``point`` as ``(height, width)`` float64 DN and check it against the descriptor.

    Raises:
        DataError naming the image (and the descriptor line): missing or unreadable file, a colour image, a
        size other than the ``n`` line's, a file type with fewer bits than the ``n`` line (8-bit files of a
        12-bit camera), floating-point values that are not whole DN (images normalised to [0, 1]), negative
        values or values above ``2^bits - 1``.
    """
    where = f"{desc.path}: line {point.line}"
    if not path.is_file():
        raise DataError(f"{path}: image not found ({where}, {point.describe()}); check the 'i' path, which is "
                        "relative to the descriptor's folder")
    arr = read_frame(path)
    if arr.ndim == 3:
        if arr.shape[2] != 1:
            raise DataError(f"{path}: colour image with {arr.shape[2]} channels ({where}); EMVA 1288 data are one "
                            "raw channel: save the sensor's raw values as a grayscale image")
        arr = arr[:, :, 0]
    if arr.shape != (desc.height, desc.width):
        raise DataError(f"{path}: image of {arr.shape[1]} x {arr.shape[0]} pixels, but the descriptor's 'n' line "
                        f"says {desc.width} x {desc.height} ({where}); all images of a data set must have that size")
    if arr.dtype.kind in "ui" and arr.dtype.itemsize * 8 < desc.bits:
        raise DataError(f"{path}: {arr.dtype.itemsize * 8}-bit image ({arr.dtype}), but the descriptor's 'n' line "
                        f"says {desc.bits} bits ({where}); save the camera's raw {desc.bits}-bit values in a 16-bit "
                        "file, or fix the bit depth in the 'n' line if the camera ran in a lower-bit mode")
    img = arr.astype(np.float64)
    if not np.all(np.isfinite(img)):
        raise DataError(f"{path}: image contains NaN or infinite values ({where})")
    lo, hi = float(img.min()), float(img.max())
    if arr.dtype.kind == "f" and not np.array_equal(img, np.round(img)):
        raise DataError(f"{path}: floating-point image with values that are not whole DN (in [{lo:.4g}, {hi:.4g}]"
                        f"{', normalised?' if hi <= 1 else ''}) ({where}); EMVA 1288 data are the camera's raw "
                        f"integer values: save them unscaled as integers (0 .. {desc.max_dn} DN)")
    if lo < 0 or hi > desc.max_dn:
        raise DataError(f"{path}: values in [{lo:g}, {hi:g}] DN lie outside [0, {desc.max_dn}] of the "
                        f"{desc.bits}-bit 'n' line ({where}); fix the bit depth in the 'n' line, or store the raw "
                        "values unshifted (not MSB-aligned)")
    return img
