"""EMVA 1288 release 4.0 descriptor files and their images.

A descriptor is plain text, one command per line (``#`` starts a comment line)::

    v 4.0                          release of the standard the data follow
    n <bits> <width> <height>      ADC bit depth and image size (once)
    b <texp_ns> <photons>          a bright point: exposure time in ns, mean photons per pixel
    d <texp_ns>                    a dark point at that exposure time
    i <image path>                 an image of the point above (relative to the descriptor; '\\' allowed)

A point with exactly two images is a *temporal* point (a pair: mean and temporal variance); a point with
more than two images (``L`` of them) is a *spatial* stack (the averaged image gives the non-uniformities).
Images: 8/16/32-bit PNG or TIFF or ``.npy``, one grayscale image each, values in DN (``0 .. 2^bits - 1``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path, PureWindowsPath

import numpy as np

from gimbal.errors import DataError
from gimbal.imageio import read_frame

__all__ = ["SUPPORTED_VERSION", "Descriptor", "Point", "load_image", "read_descriptor"]

SUPPORTED_VERSION = "4.0"


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


def read_descriptor(path: str | os.PathLike[str]) -> Descriptor:
    """Parse an EMVA 1288 release 4.0 descriptor (see the module docstring). Images are not read here.

    Raises:
        DataError naming the file and line: missing file, another release, a malformed or unknown line,
        a point with fewer than two images, an ``i`` line outside a point, no ``n`` line or no points.
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
    points: list[tuple[int, float, float, list[Path]]] = []
    root = path.parent
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
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
            points.append((lineno, texp_ns * 1e-9, photons, []))
        elif cmd == "i":
            if not points:
                raise DataError(f"{path}: line {lineno}: image line before any 'b' or 'd' point")
            if not rest.strip():
                raise DataError(f"{path}: line {lineno}: expected 'i <image path>'")
            rel = PureWindowsPath(rest.strip()).as_posix() if "\\" in rest else rest.strip()
            points[-1][3].append(root / rel)
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
    for lineno, texp, photons, images in points:
        if len(images) < 2:
            raise DataError(f"{path}: line {lineno}: a point needs at least two images (a pair), got {len(images)}")
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
        size other than the ``n`` line's, negative values or values above ``2^bits - 1``.
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
    img = arr.astype(np.float64)
    if not np.all(np.isfinite(img)):
        raise DataError(f"{path}: image contains NaN or infinite values ({where})")
    lo, hi = float(img.min()), float(img.max())
    if lo < 0 or hi > desc.max_dn:
        raise DataError(f"{path}: values in [{lo:g}, {hi:g}] DN lie outside [0, {desc.max_dn}] of the "
                        f"{desc.bits}-bit 'n' line ({where}); fix the bit depth in the 'n' line, or store the raw "
                        "values unshifted (not MSB-aligned)")
    return img
