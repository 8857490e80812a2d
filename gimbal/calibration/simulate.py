"""Simulated EMVA 1288 data sets: the standard's linear camera with known constants, as image files.

Used by the tests of ``gimbal calibrate`` and by ``examples/calibrate_simulated.py`` (docs/calibration.md).
The simulation is plain numpy and shares no code with the estimator (:mod:`gimbal.calibration.emva`).

Camera model, per pixel (m, n) and exposure time t, with mu_p photons per pixel (units: e-, DN)::

    e = Poisson(eta mu_p g[m, n] + mu_I t)       shot noise of the light and of the dark current
    e = min(e, full_well_e)                      the well saturates
    e = e + dsnu[m, n] + sigma_d N(0, 1)         fixed dark pattern (DSNU) and read noise
    y = clip(round(K e + offset), 0, 2^bits - 1) gain, black level, ADC

``g = 1 + prnu U(-0.5, 0.5)`` (normalized to mean 1) is the PRNU pattern, with the meaning ``prnu`` has in
:class:`~gimbal.sensor.camera.CameraSpec`; its standard deviation (the EMVA PRNU) is about ``prnu / sqrt(12)``.
The data set is an exposure-time series at constant illumination (as the standard's "variation of exposure
time"): ``steps`` exposure times from ``t_min_s`` to ``t_max_s``, each a bright pair and a dark pair, plus a
bright and a dark stack of ``stack_images`` images near 50 % of saturation (``stack_at``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gimbal.errors import ParamError
from gimbal.sensor.camera import CameraSpec

__all__ = ["SimulatedSet", "simulate_dataset", "write_raw_image"]

IMAGE_FORMATS = ("tif", "png", "npy")


@dataclass(frozen=True)
class SimulatedSet:
    """A simulated data set.

    Attributes:
        descriptor: its EMVA 1288 descriptor file.
        truth: the EMVA quantities the simulation implies: ``gain_dn_per_e``, ``read_noise_e``,
            ``dark_current_e_per_s``, ``quantum_efficiency``, ``saturation_e`` (photo-electrons at the full well
            at the exposure where it is reached), ``prnu_std`` (the realized pattern's std / mean), ``dsnu_e``
            (the realized DSNU pattern's std), ``bits``.
    """

    descriptor: Path
    truth: dict[str, float]


def write_raw_image(path: Path, image: np.ndarray, bits: int) -> None:
    """Write integer DN ``image (H, W)`` as an 8-bit (bits <= 8) or 16-bit file; format from the suffix."""
    arr = image.astype(np.uint8 if bits <= 8 else np.uint16)
    ext = path.suffix.lower()
    if ext == ".npy":
        np.save(path, arr)
    elif ext in (".tif", ".tiff"):
        import tifffile

        tifffile.imwrite(path, arr)
    elif ext == ".png":
        from PIL import Image

        Image.fromarray(arr).save(path)
    else:
        raise ParamError(f"{path}: unsupported image format {ext!r}; use one of {IMAGE_FORMATS}")


def simulate_dataset(
    out_dir: str | os.PathLike[str],
    camera: CameraSpec,
    *,
    steps: int = 40,
    stack_images: int = 16,
    width: int = 64,
    height: int = 64,
    t_min_s: float = 1e-3,
    t_max_s: float = 40e-3,
    saturate_at: float = 0.75,
    stack_at: float = 0.5,
    offset_dn: float = 40.0,
    dsnu_e: float = 0.0,
    image_format: str = "tif",
    seed: int = 0,
) -> SimulatedSet:
    """Write a simulated release 4.0 data set (descriptor + images) of ``camera`` into ``out_dir``.

    Args:
        out_dir: folder of the descriptor ``EMVA1288descriptor.txt`` and the ``images/`` it lists (with
            Windows-style ``images\\...`` paths, as real descriptors often have).
        camera: the constants: ``gain_dn_per_e``, ``read_noise_e``, ``dark_current_e_per_s``,
            ``quantum_efficiency``, ``full_well_e`` (a hard clip here), ``prnu``, ``bits``.
        steps: exposure times (bright and dark pairs each).
        stack_images: L of the spatial stacks (0: none).
        width, height: image size in pixels.
        t_min_s, t_max_s: the exposure-time range, s.
        saturate_at: fraction of ``t_max_s`` where the well fills (the rest of the series is saturated).
        stack_at: exposure time of the stacks as a fraction of the one where the well fills (EMVA: 0.5); the
            stacks take the series' exposure time nearest it, or this very time when it lies beyond the series.
        offset_dn: black level, DN (keeps the dark noise off the ADC's 0).
        dsnu_e: standard deviation of the fixed dark pattern, e-.
        image_format: ``tif``, ``png`` or ``npy``.
        seed: the random seed (the same arguments write the same files).
    """
    if image_format not in IMAGE_FORMATS:
        raise ParamError(f"image_format must be one of {IMAGE_FORMATS}, got {image_format!r}")
    if steps < 2 or not 0 < t_min_s < t_max_s or not 0 < saturate_at or not 0 < stack_at:
        raise ParamError("simulate_dataset: need steps >= 2, 0 < t_min_s < t_max_s, saturate_at > 0 and "
                         "stack_at > 0")
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    shape = (height, width)
    gain_map = 1.0 + camera.prnu * (rng.random(shape) - 0.5)
    gain_map /= gain_map.mean()
    dsnu_map = dsnu_e * rng.standard_normal(shape)
    eta, dark_rate, k = camera.quantum_efficiency, camera.dark_current_e_per_s, camera.gain_dn_per_e
    t_sat = saturate_at * t_max_s
    photon_rate = (camera.full_well_e - dark_rate * t_sat) / (eta * t_sat)  # photons / s / pixel
    if photon_rate <= 0:
        raise ParamError("simulate_dataset: the dark current alone fills the well before saturate_at * t_max_s")
    max_dn = (1 << camera.bits) - 1

    def grab(t: float, photons: float) -> np.ndarray:
        e = rng.poisson(eta * photons * gain_map + dark_rate * t).astype(np.float64)
        e = np.minimum(e, camera.full_well_e) + dsnu_map + camera.read_noise_e * rng.standard_normal(shape)
        return np.clip(np.rint(k * e + offset_dn), 0, max_dn)

    lines = ["v 4.0", f"n {camera.bits} {width} {height}"]
    counter = 0

    def point(header: str, t: float, photons: float, count: int) -> None:
        nonlocal counter
        lines.append(header)
        for _ in range(count):
            name = f"image{counter:05d}.{image_format}"
            write_raw_image(out / "images" / name, grab(t, photons), camera.bits)
            lines.append(f"i images\\{name}")
            counter += 1

    times = np.linspace(t_min_s, t_max_s, steps)
    for t in times:
        ns = round(float(t) * 1e9, 1)
        point(f"b {ns:.1f} {photon_rate * t:.3f}", t, photon_rate * t, 2)
        point(f"d {ns:.1f}", t, 0.0, 2)
    if stack_images > 2:
        want = stack_at * t_sat
        t = float(times[np.argmin(np.abs(times - want))]) if want <= t_max_s else want
        ns = round(t * 1e9, 1)
        point(f"b {ns:.1f} {photon_rate * t:.3f}", t, photon_rate * t, stack_images)
        point(f"d {ns:.1f}", t, 0.0, stack_images)
    descriptor = out / "EMVA1288descriptor.txt"
    descriptor.write_text("\n".join(lines) + "\n")
    truth: dict[str, Any] = {
        "gain_dn_per_e": k,
        "read_noise_e": camera.read_noise_e,
        "dark_current_e_per_s": dark_rate,
        "quantum_efficiency": eta,
        "saturation_e": camera.full_well_e - dark_rate * t_sat,
        "prnu_std": float(gain_map.std()),
        "dsnu_e": float(dsnu_map.std()),
        "bits": camera.bits,
    }
    return SimulatedSet(descriptor, truth)
