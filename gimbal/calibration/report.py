"""From a calibration to a camera preset: the YAML file, the printed table and the figures.

A preset holds the physical :class:`~gimbal.sensor.camera.CameraSpec` fields and a ``name``. EMVA 1288 does not
measure a camera's timing, so a preset has none: the exposure budget, readout time, shortest exposure and idle
slot come from the run's ``sensor.experiment`` (and ``sensor.overrides``), as for the built-in cameras.

Two fields need a conversion: ``prnu`` is the width of the sensor model's uniform gain pattern
``1 + prnu U(-0.5, 0.5)``, so ``prnu = sqrt(12) PRNU`` for the EMVA PRNU (a standard deviation); and
``full_well_e`` is the EMVA saturation capacity ``mu_e.sat`` (the sensor model's soft response then starts at
its default 0.9 of it). DSNU is reported but not written: the sensor model subtracts the mean dark signal and
has no fixed dark pattern.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from gimbal.calibration.descriptor import read_descriptor
from gimbal.calibration.emva import LINEAR_FRACTION, Calibration, LinearFit, calibrate
from gimbal.errors import DataError, GimbalError, ParamError
from gimbal.io import atomic_path
from gimbal.sensor.camera import CameraSpec

__all__ = ["CalibrationResult", "calibrate_files", "format_table", "preset_fields", "preset_text"]

DEFAULT_WAVELENGTH_NM = 525.0
"""EMVA 1288's reference wavelength."""
SQRT12 = math.sqrt(12.0)


@dataclass(frozen=True)
class CalibrationResult:
    """What :func:`calibrate_files` produced: the estimates, the preset fields and the files written."""

    calibration: Calibration
    preset: dict[str, Any]
    preset_path: Path
    ptc_path: Path
    snr_path: Path


def _sig(x: float, digits: int = 6) -> float:
    return float(f"{x:.{digits}g}")


def preset_fields(cal: Calibration, pixel_um: float, wavelength_nm: float = DEFAULT_WAVELENGTH_NM,
                  name: str = "camera") -> dict[str, Any]:
    """The preset of ``cal``: CameraSpec field -> value (SI units; 6 significant digits), plus ``name``.

    Raises:
        ParamError: ``pixel_um`` or ``wavelength_nm`` not positive, or an empty name.
        DataError: the estimates are not a valid camera (QE above 1, PRNU too large ...), naming the descriptor.
    """
    if not (pixel_um > 0 and math.isfinite(pixel_um)):
        raise ParamError(f"--pixel-um must be a positive pixel pitch in micrometres, got {pixel_um}")
    if not (wavelength_nm > 0 and math.isfinite(wavelength_nm)):
        raise ParamError(f"--wavelength-nm must be a positive wavelength in nanometres, got {wavelength_nm}")
    if not name.strip():
        raise ParamError("--name must not be empty")
    eta = cal.quantum_efficiency
    if not 0 < eta <= 1:
        raise DataError(f"{cal.descriptor.path}: quantum efficiency eta = {eta:.3g} is outside (0, 1]: the photon "
                        "counts of the 'b' lines must be the mean photons per pixel during each exposure; check them")
    prnu = SQRT12 * cal.spatial.prnu
    if prnu >= 2:
        raise DataError(f"{cal.descriptor.path}: PRNU {cal.spatial.prnu:.1%} is beyond what the sensor model can "
                        "represent (prnu = sqrt(12) PRNU must be < 2); check the spatial stack")
    return {
        "name": name.strip(),
        "gain_dn_per_e": _sig(cal.gain_dn_per_e),
        "read_noise_e": _sig(cal.read_noise_e),
        "dark_current_e_per_s": _sig(cal.dark_current_e_per_s),
        "full_well_e": _sig(cal.saturation_e),
        "prnu": _sig(prnu),
        "quantum_efficiency": _sig(eta),
        "bits": cal.bits,
        "pixel_area_m2": _sig((pixel_um * 1e-6) ** 2),
        "wavelength_m": _sig(wavelength_nm * 1e-9),
    }


def _fit(f: LinearFit | None, what: str, unit: str) -> str:
    if f is None:
        return "not measured"
    return f"{what}: R^2 {f.r2:.4f}, {f.n} pts, max|res| {100 * f.max_rel_residual:.1f} %, rms {f.rms_residual:.3g} {unit}"


def format_table(cal: Calibration, preset: dict[str, Any], pixel_um: float, wavelength_nm: float) -> str:
    """The printed summary: each preset value with where it comes from and the quality of its fit."""
    d = cal.descriptor
    n_exp = len({round(b.point.texp_s * 1e9, 3) for b in cal.bright})
    sat = cal.bright[cal.saturation_index].point
    head = [
        f"EMVA 1288 release {d.version}: {d.path}",
        (f"  {d.bits}-bit, {d.width} x {d.height} pixels; {len(cal.bright)} bright pairs at {n_exp} exposure "
         f"time(s), {len(cal.dark)} dark pairs"),
        (f"  saturation: {sat.describe()}, {cal.signal_dn[cal.saturation_index]:.1f} DN above dark "
         f"({'maximum of the temporal variance' if cal.saturation_reached else 'NOT reached: lower bound'})"),
        f"  linear range for K and QE: 0-{LINEAR_FRACTION:.0%} of saturation, {int(cal.fit_mask.sum())} bright pairs",
        "",
    ]
    sd = cal.read_noise_e
    dark_how = (_fit(cal.dark_var_fit, "dark var vs t_exp at t=0", "DN^2") if cal.dark_var_fit is not None
                else f"mean dark variance {cal.dark_var_dn2:.3g} DN^2")
    rows = [
        ("system gain K", "gain_dn_per_e", f"{preset['gain_dn_per_e']:.5g}", "DN/e-",
         _fit(cal.gain, "PTC through 0", "DN^2")),
        ("temporal dark noise", "read_noise_e", ("< " if cal.read_noise_upper_limit else "") + f"{sd:.4g}", "e-",
         dark_how),
        ("dark current", "dark_current_e_per_s", f"{preset['dark_current_e_per_s']:.4g}", "e-/s",
         _fit(cal.dark_mean_fit, "dark mean vs t_exp", "DN")),
        ("quantum efficiency", "quantum_efficiency", f"{preset['quantum_efficiency']:.4g}", "e-/p",
         _fit(cal.responsivity, f"R / K, R = {cal.responsivity.slope:.4g} DN/p", "DN")),
        ("saturation capacity", "full_well_e", f"{preset['full_well_e']:.5g}", "e-",
         f"eta mu_p.sat, mu_p.sat = {cal.saturation_photons:.5g} photons (line {sat.line})"),
        ("PRNU (std)", "prnu", f"{100 * cal.spatial.prnu:.3g} %", "",
         f"prnu = sqrt(12) x PRNU = {preset['prnu']:.4g} (uniform width); {cal.spatial.source}"),
        ("DSNU (std)", "-", f"{cal.spatial.dsnu_e:.3g}", "e-", "same images; not modelled by the sensor"),
        ("bit depth", "bits", f"{preset['bits']}", "bit", "the descriptor's 'n' line"),
        ("pixel area", "pixel_area_m2", f"{preset['pixel_area_m2']:.4g}", "m^2", f"--pixel-um {pixel_um:g}"),
        ("wavelength", "wavelength_m", f"{preset['wavelength_m']:.4g}", "m", f"--wavelength-nm {wavelength_nm:g}"),
    ]
    header = ("quantity", "preset key", "value", "unit", "from / fit quality")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r[:4], widths, strict=True)) + "  " + r[4] for r in [header, *rows]]
    notes = [f"note: {n}" for n in cal.notes]
    return "\n".join(head + lines + ([""] + notes if notes else []))


def preset_text(cal: Calibration, preset: dict[str, Any]) -> str:
    """The preset as YAML: a comment header (source, fit quality, what is not in it), then the fields."""
    comments = [
        "gimbal camera preset, written by `gimbal calibrate` (EMVA 1288 release 4.0, photon transfer method)",
        f"from {cal.descriptor.path}",
        (f"K: PTC R^2 {cal.gain.r2:.4f} over {cal.gain.n} points; QE: R^2 {cal.responsivity.r2:.4f}; "
         f"PRNU {100 * cal.spatial.prnu:.3g} % (std), DSNU {cal.spatial.dsnu_e:.3g} e- (not modelled)"),
        *cal.notes,
        *(f"warning: {w}" for w in cal.warnings),
        "No timing: EMVA 1288 does not measure it. The exposure budget, readout, shortest exposure and idle slot",
        "come from sensor.experiment (and sensor.overrides) of the run: `dvc exp run -S sensor.camera=<this file>`.",
    ]
    body = yaml.safe_dump(preset, sort_keys=False, default_flow_style=False)
    return "".join(f"# {c}\n" for c in comments) + body


def calibrate_files(descriptor: str | os.PathLike[str], output: str | os.PathLike[str], pixel_um: float,
                    wavelength_nm: float = DEFAULT_WAVELENGTH_NM, name: str | None = None,
                    allow_outside: bool = False) -> CalibrationResult:
    """Calibrate the data set of ``descriptor`` and write the preset ``output`` (.yaml) with its two figures
    beside it: ``<stem>_ptc.png`` (photon transfer) and ``<stem>_snr.png`` (SNR).

    Args:
        descriptor: EMVA 1288 release 4.0 descriptor file.
        output: the preset to write (``.yaml`` / ``.yml``).
        pixel_um: pixel pitch in micrometres (square pixels): ``pixel_area_m2 = (pixel_um 1e-6)^2``.
        wavelength_nm: the light's wavelength (default 525 nm, EMVA's).
        name: the camera's name in reports (default: the output file's stem).
        allow_outside: read images that the descriptor names outside its own folder (absolute paths, ``..``).
    Raises:
        ParamError for bad arguments, DataError for bad data (each naming the file and the fix); nothing is
        written then. Warnings (:attr:`Calibration.warnings`) are logged and written into the preset's comments.
    """
    out = Path(output)
    if out.suffix.lower() not in (".yaml", ".yml"):
        raise ParamError(f"-o {out}: the preset is a YAML file; name it <camera>.yaml")
    cal = calibrate(read_descriptor(descriptor, allow_outside=allow_outside))
    preset = preset_fields(cal, pixel_um, wavelength_nm, name or out.stem)
    try:
        CameraSpec(**preset, budget_s=1.0, min_exposure_s=0.0, readout_s=0.0)  # the sensor accepts it
    except GimbalError as exc:
        raise DataError(f"{cal.descriptor.path}: the estimates are not a valid camera ({exc})") from exc
    ptc = out.with_name(f"{out.stem}_ptc.png")
    snr = out.with_name(f"{out.stem}_snr.png")
    for target in (out, ptc, snr):
        if target.is_dir():
            raise ParamError(f"-o {out}: {target} is a directory; name the preset file, e.g. {target / 'camera.yaml'}")
    from gimbal.calibration.plot import plot_photon_transfer, plot_snr

    label = preset["name"]
    # all three files or none: each is made under a temp name, and the renames come only after all are made
    with atomic_path(ptc, suffix=".png") as ptc_tmp, atomic_path(snr, suffix=".png") as snr_tmp, \
            atomic_path(out) as out_tmp:
        plot_photon_transfer(cal, ptc_tmp, title=f"{label}: photon transfer (EMVA 1288)")
        plot_snr(cal, snr_tmp, title=f"{label}: signal-to-noise ratio (EMVA 1288)")
        out_tmp.write_bytes(preset_text(cal, preset).encode())
    return CalibrationResult(cal, preset, out, ptc, snr)
