"""``gimbal plan``: the exposure schedule for a camera at a light level and a vibration level, read off a trained grid.

A trained grid is the Fig. 9 sweep (``sweeps/fig9``): the learned-exposure model retrained at light levels x shake
levels for one camera, two training seeds or more per cell, scored on test (``cells.json``, one record per cell and
seed: e-bar, d-bar, the learned schedule, the test PSNR, the model file). :func:`plan` places a working point
(e-bar, d-bar) on that grid and returns:

- the schedule: the seed means of the learned schedules (durations, starts, idle time) at the four cells around the
  point, interpolated bilinearly in (log e-bar, log d-bar). Bilinear interpolation on a rectilinear grid is a convex
  combination of the corner values, so along each axis it is monotone wherever the cells are (between two cells a
  duration moves from one cell's value to the other's and never past them), and every schedule it gives fits the
  budget as the cells' do (each cell's exposures, readouts and idle time sum to T, and so does any convex
  combination). No extrapolation: a point outside the grid is refused, or with ``clamp`` moved to its edge and
  marked ``extrapolated``;
- the merge model: the network of the nearest cell in (log e-bar, log d-bar), its lowest training seed, named;
- the PSNR expected there (the cells' seed-mean test PSNR, interpolated the same way) and how far the point lies from
  what was trained (the ratios to the nearest cell's e-bar and d-bar, and the seed spread of the schedules around it).

The engineer's units (:func:`ebar_from_light`, :func:`dbar_from_vibration`):

- light: e-bar directly; or the illuminance at the sensor ``E_v`` (lux); or the scene's luminance ``L`` (cd/m^2)
  through a lens of f-number ``N`` and transmission ``tau``: ``E_v = pi tau L / (4 N^2)`` (a distant scene on the
  optical axis; the cos^4 fall-off off axis is not counted). Lux are converted to W/m^2 at the camera's model
  wavelength ``lambda``: ``E = E_v / (683 lm/W x V(lambda))`` (CIE 1924 photopic luminosity ``V``, linear between
  its 10 nm values), then to photo-electrons per pixel over the budget ``T`` as the sensor does (eq. 4):
  ``e-bar = E x A x QE x lambda / (h c) x T`` (pixel area ``A``, quantum efficiency ``QE``);
- vibration: d-bar directly; or the rms of the gyro's angular rate about pitch and yaw ``omega`` (deg/s), averaged
  over the budget T (a gyro low-passed at about 1 / T); or the std ``theta`` of the angle the camera turns over T
  (deg): ``theta = omega T``. The shake is the released random walk of ``F - 1`` frame steps over T (F: the grid's
  training window, 241 frames), so its per-frame std is ``sigma = theta / sqrt(F - 1)`` about pitch and yaw (roll a
  tenth of it, the released ratio; roll does not move the principal point). d-bar is then that walk's blur diameter
  (:func:`gimbal.planning.working_point.blur_diameter_px`) with the lens's focal length in the camera's pixels
  ``f = focal length / pixel pitch`` (pitch ``sqrt(A)``; square pixels, ``fx = fy = f``), as the merge runs on the
  camera's own pixels. (The sweep's cells keep the released intrinsics' aspect, ``fy = 1.78 fx``, and are placed
  by the same d-bar.)
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gimbal.data.augment import AugmentConfig
from gimbal.errors import DataError, ParamError
from gimbal.planning.working_point import blur_diameter_px
from gimbal.sensor.camera import CameraSpec, camera_from_file, get_camera

__all__ = ["LUMINOUS_EFFICACY_LM_W", "Grid", "PlanError", "dbar_from_vibration", "ebar_at_light", "ebar_from_light",
           "load_grid", "luminosity", "plan", "resolve_camera", "summary"]

LUMINOUS_EFFICACY_LM_W = 683.0
"""lm/W at the peak of the photopic luminosity (555 nm): the definition of the candela."""

_V_NM = (380, 390, 400, 410, 420, 430, 440, 450, 460, 470, 480, 490, 500, 510, 520, 530, 540, 550, 560, 570, 580,
         590, 600, 610, 620, 630, 640, 650, 660, 670, 680, 690, 700, 710, 720, 730, 740, 750, 760, 770, 780)
_V = (0.000039, 0.00012, 0.000396, 0.00121, 0.004, 0.0116, 0.023, 0.038, 0.06, 0.091, 0.139, 0.208, 0.323, 0.503,
      0.71, 0.862, 0.954, 0.995, 0.995, 0.952, 0.87, 0.757, 0.631, 0.503, 0.381, 0.265, 0.175, 0.107, 0.061, 0.032,
      0.017, 0.00821, 0.0041, 0.00209, 0.00105, 0.00052, 0.000249, 0.00012, 0.00006, 0.00003, 0.000015)
"""CIE 1924 photopic luminosity V(lambda) at 10 nm steps."""


class PlanError(ParamError):
    """A working point or a camera the trained grid cannot answer for (outside the grid, another camera)."""


def luminosity(wavelength_m: float) -> float:
    """CIE 1924 photopic luminosity ``V`` at ``wavelength_m`` (linear between the 10 nm table values).

    Raises:
        PlanError: a wavelength outside 380-780 nm (lux do not describe it).
    """
    nm = wavelength_m * 1e9
    if not _V_NM[0] <= nm <= _V_NM[-1]:
        raise PlanError(f"the camera's wavelength {nm:.0f} nm is outside the visible 380-780 nm, where lux and cd/m^2 "
                        "say nothing; give the light as --ebar")
    i = min(int((nm - _V_NM[0]) // 10), len(_V_NM) - 2)
    frac = (nm - _V_NM[i]) / 10
    return _V[i] + frac * (_V[i + 1] - _V[i])


def _one_positive(what: str, choices: str, options: tuple[tuple[str, float | None], ...]) -> tuple[str, float]:
    """The one ``(flag, value)`` of ``options`` given (not None), checked finite and > 0; else :class:`PlanError`
    naming ``what`` and its ``choices``."""
    given = {k: v for k, v in options if v is not None}
    if len(given) != 1:
        raise PlanError(f"give the {what} as exactly one of {choices}, got {sorted(given) or 'none'}")
    (name, value), = given.items()
    if not value > 0 or not math.isfinite(value):
        raise PlanError(f"{name} must be a number > 0, got {value}")
    return name, value


def ebar_from_light(camera: CameraSpec, budget_s: float, *, ebar: float | None = None, lux: float | None = None,
                    luminance_cd_m2: float | None = None, f_number: float | None = None,
                    transmission: float = 1.0) -> float:
    """e-bar (mean photo-electrons per pixel at full exposure, e-) from exactly one of ``ebar``; ``lux`` (illuminance
    at the sensor); ``luminance_cd_m2`` with ``f_number`` (and the lens ``transmission``). See the module's
    docstring for the conversion. ``budget_s``: the exposure budget T (s) the grid was trained at.

    Raises:
        PlanError: none or more than one light given, or a value <= 0.
    """
    _one_positive("light", "--ebar, --lux or --luminance (with --f-number)",
                  (("--ebar", ebar), ("--lux", lux), ("--luminance", luminance_cd_m2)))
    if ebar is not None:
        return float(ebar)
    if luminance_cd_m2 is not None:
        if f_number is None or not f_number > 0:
            raise PlanError(f"--luminance needs the lens's --f-number (> 0), got {f_number}")
        if not 0 < transmission <= 1:
            raise PlanError(f"--transmission must be in (0, 1], got {transmission}")
        lux = math.pi * transmission * luminance_cd_m2 / (4 * f_number ** 2)
    irradiance = float(lux) / (LUMINOUS_EFFICACY_LM_W * luminosity(camera.wavelength_m))  # W/m^2
    return float(camera.electron_rate(irradiance)) * budget_s


def dbar_from_vibration(*, dbar: float | None = None, gyro_dps: float | None = None,
                        angle_std_deg: float | None = None, focal_px: float | None = None, budget_s: float,
                        frames: int) -> float:
    """d-bar (px) from exactly one of ``dbar``; ``gyro_dps`` (rms angular rate about pitch and yaw, deg/s, averaged
    over T); ``angle_std_deg`` (std of the angle turned over T, deg), each with ``focal_px`` (the lens's focal length
    in the camera's pixels). ``budget_s``: T; ``frames``: the random walk's frames over T. See the module's
    docstring.

    Raises:
        PlanError: none or more than one vibration given, a value <= 0, or no focal length for an angle.
    """
    name, _ = _one_positive("vibration", "--dbar, --gyro-dps or --angle-std-deg",
                            (("--dbar", dbar), ("--gyro-dps", gyro_dps), ("--angle-std-deg", angle_std_deg)))
    if dbar is not None:
        return float(dbar)
    if focal_px is None or not focal_px > 0:
        raise PlanError(f"{name} needs the lens's focal length: --focal-mm (with the camera's pixel pitch) or "
                        "--focal-px")
    theta = angle_std_deg if angle_std_deg is not None else gyro_dps * budget_s  # type: ignore[operator]
    sigma = theta / math.sqrt(frames - 1)
    # square pixels: fx = fy = focal_px (the released intrinsics' fy is 1.78 fx; d-bar describes either)
    aug = AugmentConfig(shake_std_deg=(sigma / 10, sigma, sigma), intrinsics=(1000.0, 1000.0, 500.0, 500.0),
                        intrinsics_size=(1000, 1000), shake_focal_net_px=float(focal_px))
    return blur_diameter_px(aug, frames, draws=512)


def resolve_camera(camera: str, experiment: str = "synthetic") -> CameraSpec:
    """A built-in camera name (:func:`gimbal.sensor.camera.get_camera`) or the path of a preset file
    (``gimbal calibrate``'s, with ``experiment``'s timing). Unknown names raise :class:`ParamError`."""
    path = Path(camera)
    if path.suffix.lower() in (".yaml", ".yml", ".json") or path.is_file():
        return camera_from_file(path, experiment, "--camera")
    return get_camera(camera)


@dataclass(frozen=True)
class Grid:
    """A trained grid read from ``cells.json`` (:func:`load_grid`).

    Attributes:
        path: the cells.json read; models are named relative to ``cells_dir``.
        camera: the camera every cell was trained for.
        ebars, dbars: the grid's e-bar (ascending, one per light level: the mean of its cells) and d-bar levels.
        cells: ``(i, j)`` (e-bar index, d-bar index) -> the records of that cell, one per seed.
        window_frames, budget_us, readout_us, min_exposure_us: the training window and timing.
    """

    path: Path
    cells_dir: Path
    camera: str
    ebars: tuple[float, ...]
    dbars: tuple[float, ...]
    cells: Mapping[tuple[int, int], Sequence[Mapping[str, Any]]]
    window_frames: int
    budget_us: float
    readout_us: float


def load_grid(cells_json: str | os.PathLike[str], cells_dir: str | os.PathLike[str] | None = None) -> Grid:
    """Read a trained grid: ``cells_json`` (the sweep's cells.json: records keyed by cell name, each with
    ``white_level_scale``, ``dbar_target``, ``seed``, ``camera``, ``mean_electrons``, ``blur_diameter_px``,
    ``exposures_us``, ``starts_us``, ``idle_us``, ``budget_us``, ``readout_us``, ``psnr``, ``model``, ``window_frames``).
    ``cells_dir``: where the records' ``model`` paths start (default: ``cells/`` beside ``cells_json``).

    Raises:
        DataError: a missing or unreadable file, a record without those keys, cells of several cameras or timings,
            or a light x d-bar grid with a missing cell.
    """
    path = Path(cells_json)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise DataError(f"{path}: no trained grid there; train one (`cd sweeps/fig9 && dvc repro`) or give --grid "
                        "the cells.json of one") from None
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: not a readable cells.json ({exc}); re-run the sweep's report stage") from None
    records = list(data.values()) if isinstance(data, dict) else data
    need = ("white_level_scale", "dbar_target", "camera", "mean_electrons", "blur_diameter_px", "exposures_us",
            "starts_us", "idle_us", "budget_us", "readout_us", "psnr", "model", "window_frames")
    for r in records:
        missing = [k for k in need if not isinstance(r, dict) or k not in r]
        if missing:
            raise DataError(f"{path}: a cell lacks {missing}; re-run the sweep's report stage (this cells.json is from "
                            "an older sweep)")
    if not records:
        raise DataError(f"{path}: no cells; re-run the sweep")
    for key in ("camera", "budget_us", "readout_us", "window_frames"):
        values = sorted({str(r[key]) for r in records})
        if len(values) > 1:
            raise DataError(f"{path}: the cells differ in {key} ({values}); a grid holds one camera and one timing")
    lights = sorted({float(r["white_level_scale"]) for r in records})
    levels = sorted({float(r["dbar_target"]) for r in records})
    cells: dict[tuple[int, int], list[dict[str, Any]]] = {}
    for r in records:
        cells.setdefault((lights.index(float(r["white_level_scale"])), levels.index(float(r["dbar_target"]))),
                         []).append(r)
    holes = [(lights[i], levels[j]) for i in range(len(lights)) for j in range(len(levels)) if (i, j) not in cells]
    if holes:
        raise DataError(f"{path}: the grid has no cell at (light, d-bar) {holes}; train them (dvc repro) first")

    def mean(values: Sequence[float]) -> float:
        return sum(values) / len(values)

    ebars = tuple(mean([r["mean_electrons"] for (i, _), rs in cells.items() if i == k for r in rs])
                  for k in range(len(lights)))
    dbars = tuple(mean([r["blur_diameter_px"] for (_, j), rs in cells.items() if j == k for r in rs])
                  for k in range(len(levels)))
    first = records[0]
    return Grid(path=path, cells_dir=Path(cells_dir) if cells_dir is not None else path.parent / "cells",
                camera=str(first["camera"]), ebars=ebars, dbars=dbars, cells=cells,
                window_frames=int(first["window_frames"]), budget_us=float(first["budget_us"]),
                readout_us=float(first["readout_us"]))


def ebar_at_light(grid: Grid, light: float) -> float:
    """e-bar (mean photo-electrons per pixel over the budget, e-) at light scale ``light`` (x ``augment.white_level``)
    on ``grid``'s scenes: ``light`` times the mean over its cells of e-bar / light scale. A cell's e-bar is
    proportional to its light scale (the same scenes, every irradiance scaled), so this is exact while nothing
    clips; the inverse, ``e-bar / ebar_at_light(grid, 1)``, is the light scale of a working point."""
    records = [r for rs in grid.cells.values() for r in rs]
    return light * sum(float(r["mean_electrons"]) / float(r["white_level_scale"]) for r in records) / len(records)


def _bracket(levels: Sequence[float], x: float) -> tuple[int, int, float]:
    """Indices ``(lo, hi)`` of the levels around ``x`` and the weight of ``hi``, in log space (x inside)."""
    if len(levels) == 1:
        return 0, 0, 0.0
    k = max(i for i in range(len(levels) - 1) if levels[i] <= x) if x > levels[0] else 0
    lo, hi = levels[k], levels[k + 1]
    return k, k + 1, (math.log(x) - math.log(lo)) / (math.log(hi) - math.log(lo))


def _cell_mean(records: Sequence[Mapping[str, Any]], key: str) -> Any:
    values = [r[key] for r in records]
    if isinstance(values[0], list):
        return [sum(v[k] for v in values) / len(values) for k in range(len(values[0]))]
    return sum(values) / len(values)


def plan(grid: Grid, ebar: float, dbar: float, camera: CameraSpec | None = None, clamp: bool = False,
         inputs: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The schedule, merge model and expected PSNR at working point ``(ebar, dbar)`` on ``grid`` (see the module's
    docstring). ``camera``: checked against the grid's (same name). ``clamp``: a point outside the grid is moved to
    its edge (``extrapolated: true``) instead of refused. ``inputs``: echoed in the output (the engineer's units).

    Returns the JSON a camera driver reads: ``camera``, ``working_point`` (e_bar, d_bar_px, the point used),
    ``schedule`` (n, capture_order, reference_frame, budget_us, readout_us, starts_us, durations_us,
    readout_starts_us, idle_us), ``merge_model`` (cell, seed, path, its e-bar and d-bar), ``expected_psnr_db``,
    ``distance`` (inside, extrapolated, ratios to the nearest cell, the seed spread of the corner cells'
    durations) and ``grid`` (the file, its levels).

    Raises:
        PlanError: another camera than the grid's, or a point outside the grid without ``clamp``.
    """
    if camera is not None and camera.name != grid.camera:
        raise PlanError(f"{grid.path}: this grid was trained for camera '{grid.camera}', not '{camera.name}'; train a "
                        f"grid for it (set camera: in sweeps/fig9/params.yaml, then dvc repro) or give --grid one")
    if not (ebar > 0 and dbar > 0):
        raise PlanError(f"the working point must have e-bar > 0 and d-bar > 0, got {ebar}, {dbar}")
    outside = []
    for name, x, levels, unit in (("e-bar", ebar, grid.ebars, "e-"), ("d-bar", dbar, grid.dbars, "px")):
        if not levels[0] * (1 - 1e-9) <= x <= levels[-1] * (1 + 1e-9):
            outside.append(f"{name} {x:.4g} {unit} is outside the trained {levels[0]:.4g}-{levels[-1]:.4g} {unit}")
    if outside and not clamp:
        raise PlanError(f"{grid.path}: {'; '.join(outside)}; train a grid that covers it, or pass --clamp to use the "
                        "grid's edge (extrapolated)")
    e = min(max(ebar, grid.ebars[0]), grid.ebars[-1])
    d = min(max(dbar, grid.dbars[0]), grid.dbars[-1])
    i0, i1, wi = _bracket(grid.ebars, e)
    j0, j1, wj = _bracket(grid.dbars, d)
    corners: dict[tuple[int, int], float] = {}
    for ij, w in (((i0, j0), (1 - wi) * (1 - wj)), ((i1, j0), wi * (1 - wj)), ((i0, j1), (1 - wi) * wj),
                  ((i1, j1), wi * wj)):
        corners[ij] = corners.get(ij, 0.0) + w  # a grid of one level on an axis: the same cell twice

    def interp(key: str) -> Any:
        total: Any = None
        for ij, w in corners.items():
            v = _cell_mean(grid.cells[ij], key)
            if isinstance(v, list):
                total = [w * x for x in v] if total is None else [t + w * x for t, x in zip(total, v, strict=True)]
            else:
                total = w * v if total is None else total + w * v
        return total

    durations = interp("exposures_us")
    starts = interp("starts_us")
    idle = interp("idle_us")
    n = len(durations)
    spread = [max(max(r["exposures_us"][k] for r in grid.cells[ij]) - min(r["exposures_us"][k] for r in grid.cells[ij])
                  for ij in corners) for k in range(n)]
    ni = min(range(len(grid.ebars)), key=lambda i: abs(math.log(ebar / grid.ebars[i])))
    nj = min(range(len(grid.dbars)), key=lambda j: abs(math.log(dbar / grid.dbars[j])))
    nearest = min(grid.cells[(ni, nj)], key=lambda r: int(r.get("seed", 0)))
    model = grid.cells_dir / str(nearest["model"])
    cell = Path(str(nearest["model"])).parent.as_posix()
    return {
        "camera": grid.camera,
        "inputs": dict(inputs or {}),
        "working_point": {"e_bar": round(ebar, 3), "d_bar_px": round(dbar, 4), "e_bar_used": round(e, 3),
                          "d_bar_used_px": round(d, 4), "window_frames": grid.window_frames},
        "schedule": {
            "n": n, "capture_order": list(range(1, n + 1)), "reference_frame": n // 2 + 1,
            "budget_us": grid.budget_us, "readout_us": grid.readout_us,
            "starts_us": [round(x, 1) for x in starts], "durations_us": [round(x, 1) for x in durations],
            "readout_starts_us": [round(s + x, 1) for s, x in zip(starts, durations, strict=True)],
            "idle_us": round(idle, 1),
        },
        "merge_model": {"cell": cell, "seed": int(nearest.get("seed", 0)), "path": model.as_posix(),
                        "e_bar": round(grid.ebars[ni], 3), "d_bar_px": round(grid.dbars[nj], 4),
                        "gain": round(grid.ebars[ni] / ebar, 4),
                        # the sweep's light scale and d-bar of this point: `stages/fig9_finetune.py` fine-tunes the
                        # merge here (docs/plan.md)
                        "finetune_at": {"light": round(ebar / ebar_at_light(grid, 1.0), 5), "dbar": round(dbar, 4)}},
        "expected_psnr_db": round(interp("psnr"), 2),
        "distance": {
            "inside_grid": not outside, "extrapolated": bool(outside), "why": "; ".join(outside),
            "e_bar_ratio_to_nearest": round(ebar / grid.ebars[ni], 3),
            "d_bar_ratio_to_nearest": round(dbar / grid.dbars[nj], 3),
            "log2_distance_to_nearest": round(math.hypot(math.log2(ebar / grid.ebars[ni]),
                                                         math.log2(dbar / grid.dbars[nj])), 3),
            "seed_spread_us": [round(x, 1) for x in spread],
        },
        "grid": {"cells_json": grid.path.as_posix(), "e_bars": [round(x, 2) for x in grid.ebars],
                 "d_bars_px": [round(x, 3) for x in grid.dbars]},
    }


def summary(result: Mapping[str, Any]) -> str:
    """A one-screen human summary of :func:`plan`'s result."""
    wp, s, m, d = result["working_point"], result["schedule"], result["merge_model"], result["distance"]
    lines = [f"camera {result['camera']}: e-bar {wp['e_bar']:.4g} e-, d-bar {wp['d_bar_px']:.3g} px "
             f"(window {wp['window_frames']} frames)"]
    if d["extrapolated"]:
        lines.append(f"EXTRAPOLATED: {d['why']}; planned at the grid's edge (e-bar {wp['e_bar_used']:.4g} e-, "
                     f"d-bar {wp['d_bar_used_px']:.3g} px)")
    lines += [f"budget T {s['budget_us']:.1f} us, readout {s['readout_us']:.1f} us, idle {s['idle_us']:.1f} us, "
              f"reference frame {s['reference_frame']}",
              f"{'frame':>5}  {'start_us':>10}  {'exposure_us':>11}  {'readout_at_us':>13}  {'seed_spread_us':>14}"]
    for k in range(s["n"]):
        lines.append(f"{s['capture_order'][k]:>5}  {s['starts_us'][k]:>10.1f}  {s['durations_us'][k]:>11.1f}  "
                     f"{s['readout_starts_us'][k]:>13.1f}  {d['seed_spread_us'][k]:>14.1f}")
    lines += [f"merge model: {m['path']} (cell {m['cell']}: e-bar {m['e_bar']:.4g} e-, d-bar {m['d_bar_px']:.3g} px), "
              f"digital gain x{m['gain']:.4g} on the raw burst first (gimbal infer --gain {m['gain']:.4g}); or "
              f"fine-tune it here: python stages/fig9_finetune.py --light {m['finetune_at']['light']:.5g} --dbar "
              f"{m['finetune_at']['dbar']:.4g} --seed 0 --steps 200 (then no gain)",
              f"expected PSNR {result['expected_psnr_db']:.2f} dB (test, interpolated between the cells)",
              f"distance: e-bar x{d['e_bar_ratio_to_nearest']:.3g}, d-bar x{d['d_bar_ratio_to_nearest']:.3g} of the "
              f"nearest cell ({d['log2_distance_to_nearest']:.2f} octaves)"]
    return "\n".join(lines)

