"""Offline sample videos: simulated drone flights over photos bundled with scikit-image.

The embedded default pipeline must run with no network (docs/protocol.md), yet the
data should look like real footage. We render a smooth, seeded camera flight (pan,
zoom, slight roll and a little pitch/yaw) over a real photograph, add the small
high-frequency shake of an unstabilized camera, warp through homographies
(bilinear, float64) and encode H.264 like a downloaded mp4. The ``fetch`` stage then ingests
these files through the same yt-dlp path as real YouTube sources.

Coordinates: pixel centres at integers (``align_corners=True``); a homography ``H``
maps homogeneous output-frame pixels ``(x, y, 1)`` to photo pixels.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from gimbal.data.video import write_video
from gimbal.errors import ParamError
from gimbal.io import atomic_dir
from gimbal.params import check_seed

_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")

# Flight envelope (chosen to look like a calm drone shot; all smooth terms are sums of a
# few sinusoids with random phase, so they are bounded and C-infinity).
_ZOOM_RANGE = (0.45, 0.85)  # side of the view window as a fraction of the largest window that fits
_ROLL_MAX = np.deg2rad(3.0)  # slow roll amplitude
_TILT_MAX = np.deg2rad(2.0)  # slow pitch / yaw amplitude
_SHAKE_PX = 0.6  # high-frequency translation shake, std in output pixels
_SHAKE_ROLL = np.deg2rad(0.15)  # high-frequency roll shake, std
_SHAKE_CLIP = 3.0  # shake is clipped at this many std (keeps the window inside the photo)
_SHAKE_BAND_HZ = (6.0, 14.0)  # propeller / airframe vibration band


def bundled_images() -> dict[str, Path]:
    """Names -> paths of the photos that ship inside the scikit-image package (no download).

    ``skimage.data`` fetches many of its images with pooch on demand; only the files
    physically present in the package's ``data`` folder are offered here.
    """
    import skimage.data

    data_dir = Path(skimage.data.__file__).parent
    return {p.stem: p for p in sorted(data_dir.iterdir()) if p.suffix.lower() in _IMAGE_SUFFIXES}


def load_photo(name: str) -> np.ndarray:
    """Load bundled photo ``name`` as ``(H, W, 3)`` uint8 RGB (grey images are replicated, alpha dropped)."""
    from skimage import io as skio

    images = bundled_images()
    if name not in images:
        raise ParamError(
            f"samples.images: '{name}' is not a photo bundled with scikit-image; choose from {sorted(images)}"
        )
    img = np.asarray(skio.imread(images[name]))
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=-1)
    img = img[..., :3]
    if img.dtype != np.uint8:
        img = (255 * (img.astype(np.float64) / max(float(img.max()), 1.0))).round().astype(np.uint8)
    return np.ascontiguousarray(img)


def _smooth_signal(rng: np.random.Generator, t: np.ndarray, cycles: tuple[float, float], k: int = 3) -> np.ndarray:
    """Smooth random signal in [-1, 1]: sum of ``k`` sinusoids, ``cycles`` per clip duration (t in [0, 1])."""
    amps = rng.uniform(0.3, 1.0, size=k)
    amps /= amps.sum()
    freqs = rng.uniform(*cycles, size=k)
    phases = rng.uniform(0.0, 2 * np.pi, size=k)
    return (amps[:, None] * np.sin(2 * np.pi * freqs[:, None] * t[None] + phases[:, None])).sum(0)


def _shake(rng: np.random.Generator, times: np.ndarray, std: float, dims: int) -> np.ndarray:
    """Band-limited vibration ``(T, dims)`` with the given std, clipped at ``_SHAKE_CLIP`` std."""
    k = 6
    freqs = rng.uniform(*_SHAKE_BAND_HZ, size=(k, dims))
    phases = rng.uniform(0.0, 2 * np.pi, size=(k, dims))
    amps = rng.rayleigh(1.0, size=(k, dims))
    sig = (amps[None] * np.sin(2 * np.pi * freqs[None] * times[:, None, None] + phases[None])).sum(1)
    sig = sig / np.sqrt((amps**2).sum(0) / 2)[None]  # unit std
    return std * np.clip(sig, -_SHAKE_CLIP, _SHAKE_CLIP)


def _rotation(yaw: np.ndarray, pitch: np.ndarray, roll: np.ndarray) -> np.ndarray:
    """Camera rotations ``(T, 3, 3)`` = Rz(roll) @ Rx(pitch) @ Ry(yaw) (angles in radians)."""
    cz, sz = np.cos(roll), np.sin(roll)
    cx, sx = np.cos(pitch), np.sin(pitch)
    cy, sy = np.cos(yaw), np.sin(yaw)
    one, zero = np.ones_like(roll), np.zeros_like(roll)
    rz = np.stack([np.stack([cz, -sz, zero], -1), np.stack([sz, cz, zero], -1), np.stack([zero, zero, one], -1)], -2)
    rx = np.stack([np.stack([one, zero, zero], -1), np.stack([zero, cx, -sx], -1), np.stack([zero, sx, cx], -1)], -2)
    ry = np.stack([np.stack([cy, zero, sy], -1), np.stack([zero, one, zero], -1), np.stack([-sy, zero, cy], -1)], -2)
    return rz @ rx @ ry


def random_flight(
    photo_size: tuple[int, int],
    out_size: tuple[int, int],
    frames: int,
    fps: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """A smooth random drone flight over a photo, as homographies ``(T, 3, 3)`` float64.

    ``H[t]`` maps output pixels of frame ``t`` (size ``out_size = (height, width)``) to
    pixels of the photo (size ``photo_size = (height, width)``). The camera pans across
    the photo, zooms in and out, rolls slightly and tilts (pitch/yaw rotation homography
    ``K R K^-1`` with focal length = output width), plus a band-limited 6-14 Hz shake.
    Every frame's view stays inside the photo, so no border is ever visible.
    """
    (ph, pw), (oh, ow) = photo_size, out_size
    if frames < 1 or fps <= 0:
        raise ParamError(f"samples: frames must be >= 1 and fps > 0, got frames={frames}, fps={fps}")
    times = np.arange(frames) / fps  # seconds
    u = np.linspace(0.0, 1.0, frames)  # clip-relative time for the slow motion

    zoom = _ZOOM_RANGE[0] + (_ZOOM_RANGE[1] - _ZOOM_RANGE[0]) * 0.5 * (1 + _smooth_signal(rng, u, (0.2, 0.8)))
    roll = _ROLL_MAX * _smooth_signal(rng, u, (0.2, 1.0))
    yaw = _TILT_MAX * _smooth_signal(rng, u, (0.2, 1.0))
    pitch = _TILT_MAX * _smooth_signal(rng, u, (0.2, 1.0))
    pan = 0.5 * (1 + np.stack([_smooth_signal(rng, u, (0.3, 0.9)), _smooth_signal(rng, u, (0.3, 0.9))], -1))
    shake_xy = _shake(rng, times, _SHAKE_PX, 2)
    roll = roll + _shake(rng, times, _SHAKE_ROLL, 1)[:, 0]

    # Local camera map (output pixels -> photo offsets from the view centre, in output-pixel units):
    # centre the output frame, rotate in 3D about the optical axis (K R K^-1), then shift by the shake.
    f = float(ow)
    k = np.array([[f, 0, (ow - 1) / 2], [0, f, (oh - 1) / 2], [0, 0, 1.0]])
    k_inv = np.linalg.inv(k)
    k0 = np.array([[f, 0, 0], [0, f, 0], [0, 0, 1.0]])  # same intrinsics, principal point at the origin
    shift = np.tile(np.eye(3), (frames, 1, 1))
    shift[:, :2, 2] = shake_xy
    local = shift @ k0[None] @ _rotation(yaw, pitch, roll) @ k_inv[None]

    corners = np.array([[0, 0, 1], [ow - 1, 0, 1], [0, oh - 1, 1], [ow - 1, oh - 1, 1]], dtype=np.float64).T
    c = local @ corners  # (T, 3, 4)
    c = c[:, :2] / c[:, 2:]  # corner offsets in output-pixel units
    lo, hi = c.min(-1), c.max(-1)  # (T, 2)
    # Scale (photo px per output px) such that the largest fitting window is zoom=1.
    s_fit = np.minimum((pw - 1) / (hi[:, 0] - lo[:, 0]), (ph - 1) / (hi[:, 1] - lo[:, 1]))
    scale = zoom * s_fit
    # Centre range that keeps all four corners inside the photo; pan in [0, 1] spans it.
    cmin = -scale[:, None] * lo
    cmax = np.array([pw - 1, ph - 1])[None] - scale[:, None] * hi
    centre = cmin + pan * (cmax - cmin)

    place = np.zeros((frames, 3, 3))
    place[:, 0, 0] = place[:, 1, 1] = scale
    place[:, :2, 2] = centre
    place[:, 2, 2] = 1.0
    return place @ local


#: mantissa bits the camera path keeps before rendering (:func:`_snap`): ~1e-6 relative, far below a pixel
_PATH_BITS = 20


def _snap(x: np.ndarray, bits: int = _PATH_BITS) -> np.ndarray:
    """Round every value of ``x`` to ``bits`` significant bits (exact float64 operations only).

    The camera path goes through ``sin``/``cos`` and small matrix products whose last bits depend on the
    CPU (numpy picks SIMD math kernels per instruction set; BLAS/LAPACK kernels differ). Rounded to 20 bits,
    an ulp-level difference changes a value only if it lies within an ulp of a rounding boundary (odds of
    order 1e-9 per value), so every machine renders the same path.
    """
    mantissa, exponent = np.frexp(np.asarray(x, dtype=np.float64))
    return np.ldexp(np.round(mantissa * 2.0**bits), exponent - bits)


def _gaussian_taps(sigma: float) -> np.ndarray:
    """Normalised 1-D Gaussian taps for ``sigma`` (px), odd length >= 3 (kornia's antialias kernel size)."""
    size = max(int(4.0 * sigma), 3)
    size += 1 - size % 2
    x = np.arange(size, dtype=np.float64) - size // 2
    taps = _snap(np.exp(-(x**2) / (2.0 * sigma**2)))  # exp's last bits are CPU-dependent: snapped
    return taps / taps.sum()


def _blur(img: np.ndarray, sigma: tuple[float, float]) -> np.ndarray:
    """Separable Gaussian blur of ``img`` ``(H, W, C)`` float64, reflected borders; taps summed in a fixed order."""
    for axis, s in enumerate(sigma):
        taps = _gaussian_taps(s)
        r = len(taps) // 2
        n = img.shape[axis]
        if n <= r:  # too small to reflect: nothing sensible to smooth
            continue
        pad = [(0, 0)] * img.ndim
        pad[axis] = (r, r)
        padded = np.pad(img, pad, mode="reflect")
        out = np.zeros_like(img)
        for k, w in enumerate(taps):
            out += w * np.take(padded, np.arange(k, k + n), axis=axis)
        img = out
    return img


def _lerp_axis(img: np.ndarray, pos: np.ndarray, axis: int) -> np.ndarray:
    """Linear interpolation of ``img`` along ``axis`` at positions ``pos`` (pixel centres at integers)."""
    n = img.shape[axis]
    pos = np.clip(pos, 0.0, n - 1.0)
    i0 = np.floor(pos)
    frac = pos - i0
    i0 = i0.astype(np.intp)
    i1 = np.minimum(i0 + 1, n - 1)
    shape = [1] * img.ndim
    shape[axis] = len(pos)
    lo, hi = np.take(img, i0, axis=axis), np.take(img, i1, axis=axis)
    return lo + frac.reshape(shape) * (hi - lo)


def _resize(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of ``img`` ``(H, W, C)`` to ``size = (h, w)``, corners aligned (``align_corners=True``)."""
    for axis, (n_in, n_out) in enumerate(zip(img.shape[:2], size)):
        img = _lerp_axis(img, np.arange(n_out, dtype=np.float64) * ((n_in - 1) / (n_out - 1)), axis)
    return img


def _bilinear(img: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Sample ``img`` ``(H, W, C)`` at pixels ``(x, y)`` (any shape S) -> ``S + (C,)``; border-clamped."""
    hgt, wid = img.shape[:2]
    x = np.clip(x, 0.0, wid - 1.0)
    y = np.clip(y, 0.0, hgt - 1.0)
    x0, y0 = np.floor(x), np.floor(y)
    fx, fy = (x - x0)[..., None], (y - y0)[..., None]
    x0, y0 = x0.astype(np.intp), y0.astype(np.intp)
    x1, y1 = np.minimum(x0 + 1, wid - 1), np.minimum(y0 + 1, hgt - 1)
    top = img[y0, x0] + fx * (img[y0, x1] - img[y0, x0])
    bottom = img[y1, x0] + fx * (img[y1, x1] - img[y1, x0])
    return top + fy * (bottom - top)


def render_flight(photo: np.ndarray, homographies: np.ndarray, out_size: tuple[int, int]) -> np.ndarray:
    """Warp ``photo`` ``(H, W, 3)`` uint8 through ``homographies`` ``(T, 3, 3)`` -> frames ``(T, h, w, 3)`` uint8.

    The photo is first resampled so that the most zoomed-in frame samples it at 1:1 (a Gaussian of sigma
    ``(f - 1) / 2`` against aliasing when shrinking by ``f``, then bilinear; bilinear when enlarging); each
    frame then samples it bilinearly at ``H[t] @ (x, y, 1)`` for every output pixel (border-clamped).

    Same bytes on every machine and at any thread count: the path is snapped (:func:`_snap`), then every
    step is float64 element-wise arithmetic (``+ - * /``, sqrt, floor, round: exactly rounded in IEEE 754,
    hence the same on any CPU) in a fixed order, single-threaded. No convolution, matrix product or
    library kernel whose summation order or instruction set could move a value across a rounding boundary.
    """
    oh, ow = out_size
    h = _snap(homographies)
    # photo px per output px of each frame (sqrt |det| of the linear part), element-wise
    scale = np.sqrt(np.abs(h[:, 0, 0] * h[:, 1, 1] - h[:, 0, 1] * h[:, 1, 0]))
    img = photo.astype(np.float64)  # grey levels 0..255
    f = float(scale.min())  # shrink factor that brings the most zoomed-in frame to 1:1
    if abs(1.0 / f - 1.0) > 1e-3:
        if f > 1.0:
            img = _blur(img, ((f - 1.0) / 2.0, (f - 1.0) / 2.0))
        size = (max(2, round(img.shape[0] / f)), max(2, round(img.shape[1] / f)))
        ry, rx = (size[0] - 1) / (img.shape[0] - 1), (size[1] - 1) / (img.shape[1] - 1)
        img = _resize(img, size)
        h = h * np.array([rx, ry, 1.0])[None, :, None]  # rows x and y of H now map to the resized photo
    ys, xs = np.mgrid[0:oh, 0:ow].astype(np.float64)
    out = np.empty((len(h), oh, ow, photo.shape[-1]), dtype=np.uint8)
    for t, m in enumerate(h):
        w = m[2, 0] * xs + m[2, 1] * ys + m[2, 2]
        px = (m[0, 0] * xs + m[0, 1] * ys + m[0, 2]) / w
        py = (m[1, 0] * xs + m[1, 1] * ys + m[1, 2]) / w
        out[t] = np.clip(np.rint(_bilinear(img, px, py)), 0, 255).astype(np.uint8)
    return out


def _rng(seed: int, name: str) -> np.random.Generator:
    """Per-photo generator: adding or removing photos does not change the others' flights."""
    return np.random.default_rng([seed, zlib.crc32(name.encode())])


def render_sample(name: str, width: int, height: int, frames: int, fps: float, seed: int) -> np.ndarray:
    """Frames ``(frames, height, width, 3)`` uint8 of the simulated flight over bundled photo ``name``."""
    if width < 8 or height < 8:
        raise ParamError(f"samples: width/height must be >= 8, got {width}x{height}")
    photo = load_photo(name)
    hs = random_flight(photo.shape[:2], (height, width), frames, fps, _rng(seed, name))
    return render_flight(photo, hs, (height, width))


@dataclass(frozen=True)
class SamplesConfig:
    """Params group ``samples``: the offline synthetic flights.

    Attributes:
        images: scikit-image photos to fly over.
        width, height: frame size in pixels.
        frames: frames per flight.
        fps: frame rate.
        crf: H.264 quality of the written videos.
        seed: seed of the flights' random camera paths (independent of the training ``seed``).
        out_dir: output folder.
    """

    images: tuple[str, ...] = ("astronaut", "brick", "camera", "cell", "chelsea", "coffee", "coins", "grass", "gravel",
                               "hubble_deep_field", "ihc", "moon", "motorcycle_left", "rocket")
    width: int = 176
    height: int = 144
    frames: int = 82
    fps: float = 30.0
    crf: int = 12
    seed: int = 0
    out_dir: str = "data/samples"

    def __post_init__(self) -> None:
        check_seed(self.seed, "samples.seed")


def flight_file(name: str) -> str:
    """File name of the flight over photo ``name`` in ``samples.out_dir``."""
    return f"flight_{name}.mp4"


def make_samples(
    names: Sequence[str],
    out_dir: str | os.PathLike[str],
    width: int,
    height: int,
    frames: int,
    fps: float,
    seed: int,
    crf: int = 12,
    progress: bool = True,
) -> list[Path]:
    """Write ``out_dir/flight_<name>.mp4`` (H.264, ``crf``) for every name; returns the paths.

    ``out_dir`` is replaced as a whole (atomically), so it holds exactly these videos.
    Deterministic for a given ``seed``.
    """
    if not names:
        raise ParamError("samples.images: empty list; name at least one scikit-image photo, e.g. [astronaut]")
    available = bundled_images()
    missing = [n for n in names if n not in available]
    if missing:
        raise ParamError(f"samples.images: {missing} not bundled with scikit-image; choose from {sorted(available)}")
    if len(set(names)) != len(names):
        raise ParamError(f"samples.images: duplicate names in {list(names)}")
    out_dir = Path(out_dir)
    with atomic_dir(out_dir) as tmp:
        for name in tqdm(names, desc="samples", unit="video", disable=not progress):
            video = render_sample(name, width, height, frames, fps, seed)
            write_video(tmp / flight_file(name), video, fps, codec="libx264", crf=crf)
    return [out_dir / flight_file(n) for n in names]
