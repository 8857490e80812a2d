"""Paper Fig. 9, the noise x blur trade-off: the learned model retrained at each light level x camera shake.

A cell ``(light, dbar, seed)`` scales the light (``augment.white_level``) of the embedded default by ``light``, sets
the camera shake so that its blur at full exposure is ``dbar`` network pixels (:func:`cell_config`), trains the
learned-exposure model there with training seed ``seed`` (the one training loop, :func:`gimbal.pipeline.train`) and
scores it on the test scenes lit and shaken the same way (:func:`score_cell`). Each cell is described as the paper
does, at full exposure (one exposure of the whole budget T):

- ``mean_electrons`` (e-bar): the mean photo-electrons a pixel collects, ``mean(irradiance) x T``, over the
  test scenes (:func:`gimbal.planning.working_point.mean_electrons`);
- ``blur_diameter_px`` (d-bar): the mean, over shake draws, of the largest distance between two positions of
  the principal point during the exposure, in the network's pixels
  (:func:`gimbal.planning.working_point.blur_diameter_px`, the project's one definition, which the evaluation reports
  for every trained model too);
- ``clipped_fraction``: the fraction of the test pixels whose full exposure leaves the sensor's linear range
  (:func:`gimbal.planning.working_point.clipped_fraction`), so that e-bar measures noise, not saturation.

The paper's finding: the reference (middle) exposure grows as the light falls and shrinks as the shake grows.
:func:`trend` tests each direction against the spread of the learned schedules between training seeds.
:func:`plot_fig9` lays the cells out like the paper's figure; :func:`plot_heatmaps` draws PSNR and the middle
exposure over the grid.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar

import torch

from gimbal.data.augment import AugmentConfig, shake_intrinsics
from gimbal.data.irradiance import Scenes, fixed_irradiance_set
from gimbal.data.shards import read_shard_index
from gimbal.display import Display
from gimbal.errors import DataError, ParamError
from gimbal.eval_config import EvalConfig
from gimbal.io import write_bytes_atomic, write_json_atomic
from gimbal.metrics import psnr, ssim
from gimbal.models.net import ModelConfig
from gimbal.planning.working_point import blur_diameter_px, clipped_fraction, mean_electrons
from gimbal.runtime import TrainConfig, resolve_device
from gimbal.system import GimbalSystem, SensorGroups, build_sensor, full_exposure_image, load_system

__all__ = ["SweepGrid", "SweepGroups", "blur_diameter_px", "cell_config", "cell_name", "clipped_fraction", "fig9_report",
           "plot_fig9", "plot_heatmaps", "read_grid", "score_cell", "shake_focal_for_dbar", "train_frames", "trend",
           "with_camera"]


class SweepGroups(SensorGroups, Protocol):
    """The params groups the sweep reads (a parsed config has them; this module never needs the whole config):
    :class:`gimbal.system.SensorGroups`'s ``seed``, ``sensor`` and ``exposure`` (the camera), ``augment`` (the light
    and the shake a cell changes), ``eval`` (the test scenes and the target), ``model`` (``channels``) and ``train``
    (``device``, ``loader``). A cell is such groups with its light, shake and seed (:func:`cell_config`)."""

    @property
    def augment(self) -> AugmentConfig: ...
    @property
    def eval(self) -> EvalConfig: ...
    @property
    def model(self) -> ModelConfig: ...
    @property
    def train(self) -> TrainConfig: ...


G = TypeVar("G", bound=SweepGroups)


@dataclasses.dataclass(frozen=True)
class SweepGrid:
    """The sweep's own params (sweeps/fig9/params.yaml): ``camera`` (a preset file, or ``None``: the root params'),
    the ``lights`` (x ``augment.white_level``), ``dbars`` (network px), training ``seeds``, the ``heldout``
    working points (name -> ``(light, dbar, seed)``) trained directly to validate ``gimbal plan``, and
    ``finetune_steps`` (the plan's merge fine-tuned at each of them, :mod:`gimbal.planning.finetune`; 0: the key
    absent, not fine-tuned)."""

    camera: str | None
    lights: tuple[float, ...]
    dbars: tuple[float, ...]
    seeds: tuple[int, ...]
    heldout: dict[str, tuple[float, float, int]] = dataclasses.field(default_factory=dict)
    finetune_steps: int = 0

    def cells(self) -> list[tuple[float, float, int]]:
        """Every ``(light, dbar, seed)`` of the grid."""
        return [(li, d, s) for li in self.lights for d in self.dbars for s in self.seeds]


def read_grid(path: str | os.PathLike[str]) -> SweepGrid:
    """Read and check the sweep's params file (see :class:`SweepGrid`).

    Raises:
        ParamError: a missing or malformed key, naming it and the file.
    """
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except FileNotFoundError:
        raise ParamError(f"{path}: the sweep's params file is missing; write lights, dbars and seeds there") from None
    except yaml.YAMLError as exc:
        raise ParamError(f"{path}: not valid YAML ({str(exc).splitlines()[0]}); fix the file") from None

    def levels(key: str, kind: type) -> tuple[Any, ...]:
        values = data.get(key)
        if (not isinstance(values, list) or not values or len(set(values)) != len(values)
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0 for v in values)):
            raise ParamError(f"{path}: '{key}' must be a list of distinct numbers >= 0, got {values!r}")
        if kind is int and not all(isinstance(v, int) for v in values):
            raise ParamError(f"{path}: '{key}' must be integers, got {values!r}")
        return tuple(kind(v) for v in values)

    unknown = sorted(set(data) - {"camera", "lights", "dbars", "seeds", "heldout", "finetune_steps"})
    if unknown:
        raise ParamError(f"{path}: unknown key(s) {unknown}; the sweep reads camera, lights, dbars, seeds, heldout "
                         "and finetune_steps")
    steps = data.get("finetune_steps", 0)  # absent: no fine-tuning (the sweep's dvc.yaml fine-tunes: >= 1 there)
    if "finetune_steps" in data and (not isinstance(steps, int) or isinstance(steps, bool) or steps < 1):
        raise ParamError(f"{path}: 'finetune_steps' must be an integer >= 1, got {steps!r}")
    heldout = {}
    for name, point in (data.get("heldout") or {}).items():
        if not isinstance(point, dict) or set(point) != {"light", "dbar", "seed"}:
            raise ParamError(f"{path}: 'heldout.{name}' must be {{light, dbar, seed}}, got {point!r}")
        heldout[str(name)] = (float(point["light"]), float(point["dbar"]), int(point["seed"]))
    camera = data.get("camera") or None
    if camera is not None and not isinstance(camera, str):
        raise ParamError(f"{path}: 'camera' must be a preset file path or \"\", got {camera!r}")
    return SweepGrid(camera, levels("lights", float), levels("dbars", float), levels("seeds", int), heldout, steps)


def with_camera(cfg: G, camera: str | None) -> G:
    """``cfg`` (a dataclass of the groups, e.g. the parsed config) with ``sensor.camera`` set to the preset file ``camera`` (empty or ``None``: unchanged)."""
    if not camera:
        return cfg
    return dataclasses.replace(cfg, sensor=dataclasses.replace(cfg.sensor, camera=str(camera)))


def cell_name(light: float, dbar: float, seed: int | None = None) -> str:
    """The folder name of cell ``(light, dbar, seed)``: ``light0.25_dbar2.5_seed0`` (``seed`` None: no suffix)."""
    return f"light{light:g}_dbar{dbar:g}" + ("" if seed is None else f"_seed{int(seed)}")


def train_frames(augment: AugmentConfig, shards_dir: str | os.PathLike[str] | None, split: str = "train",
                 default: int = 241) -> int:
    """The frames spanning T in training: ``augment.window_frames``, else every frame of a clip of ``split`` (the
    shard index's ``frames``), else ``default`` (241: 31 video frames interpolated 8x)."""
    if augment.window_frames:
        return int(augment.window_frames)
    if shards_dir is None:
        return default
    try:
        return int(read_shard_index(shards_dir, split)["splits"][split]["frames"])
    except (DataError, KeyError, TypeError, ValueError):
        return default


def shake_focal_for_dbar(augment: AugmentConfig, dbar: float, frames: int) -> float:
    """The ``augment.shake_focal_net_px`` (px) at which the shake of ``augment`` blurs by ``dbar`` network pixels
    over ``frames`` frames (d-bar, :func:`blur_diameter_px` with its default draws).

    The principal point's image moves by ``f x (the rotated ray's slope)``, so d-bar is exactly proportional to the
    focal length: the answer is ``f0 x dbar / dbar0``, with ``f0`` the shake's focal length in network pixels now
    and ``dbar0`` its d-bar.

    Raises:
        ParamError: ``dbar <= 0``, or a motion or shake that does not blur (``augment.motion`` not ``shake``, zero
            pitch and yaw).
    """
    if not dbar > 0:
        raise ParamError(f"fig9: a cell's d-bar must be > 0 px, got {dbar}; list positive values in dbars")
    if augment.motion != "shake":
        raise ParamError(f"fig9: the sweep sets d-bar through the shake; set augment.motion: shake, got "
                         f"{augment.motion!r}")
    dbar0 = blur_diameter_px(augment, frames)
    if dbar0 <= 0:
        raise ParamError(f"fig9: augment.shake_std_deg {list(augment.shake_std_deg)} does not move the image (d-bar "
                         "0); give pitch or yaw a std > 0")
    f0 = augment.shake_focal_net_px
    if f0 is None:
        f0 = float(shake_intrinsics(augment, augment.crop, augment.crop)[0, 0]) * augment.out_size / augment.center
    return f0 * dbar / dbar0


def cell_config(cfg: G, light: float, dbar: float, seed: int, frames: int) -> G:
    """``cfg`` (a dataclass of the groups, e.g. the parsed config) with ``augment.white_level`` scaled by ``light``, the shake's blur set to ``dbar`` network pixels over
    ``frames`` frames and the training ``seed``; every other param unchanged.

    d-bar is set through ``augment.shake_focal_net_px`` (:func:`shake_focal_for_dbar`), not by scaling the angular
    shake: d-bar is exactly proportional to the focal length, the random walk keeps the authors' angles (roll,
    pitch and yaw in their ratio), and a camera's own d-bar is its focal length in pixels times the angle it turns
    (:mod:`gimbal.planning.plan`), so the axis reads the same for any lens.
    """
    if not light > 0:
        raise ParamError(f"fig9: the light scale must be > 0, got {light}; list positive values in lights")
    aug = dataclasses.replace(cfg.augment, white_level=tuple(light * w for w in cfg.augment.white_level))
    aug = dataclasses.replace(aug, shake_focal_net_px=shake_focal_for_dbar(aug, dbar, frames))
    return dataclasses.replace(cfg, augment=aug, seed=int(seed))


@torch.no_grad()
def score_cell(system: GimbalSystem, cfg: SweepGroups, batches: Sequence[Scenes], seed: int,
               device: torch.device | str = "cpu", gain: float = 1.0) -> dict[str, Any]:
    """Score a cell's trained ``system`` on its test scenes (irradiance ``(b, T_f, C, H, W)`` e-/s), exact Poisson
    noise seeded with ``seed``; ``gain``: a digital gain on the raw burst before the network (a network trained at
    another light level, :func:`gimbal.planning.plan.plan`'s ``merge_model.gain``). Returns ``psnr`` / ``ssim`` (means, display space), ``psnr_full_exposure``,
    ``mean_electrons`` (e-), ``clipped_fraction`` (:func:`gimbal.planning.working_point.clipped_fraction`) and, for the first clip, ``images``: ``{"full_exposure", "output", "ground_truth"}``
    ``(C, H, W)`` in display space."""
    sensor = build_sensor(cfg, learn_exposure=False, seed=seed).to(device).eval()
    display = Display.for_camera(cfg.eval.target, sensor.camera, cfg.augment.white_level)
    system = system.to(device).eval()
    system.sensor.set_seed(seed)
    scores: dict[str, list[float]] = {"psnr": [], "ssim": [], "psnr_full_exposure": []}
    images: dict[str, torch.Tensor] = {}
    for scenes in batches:
        irr = scenes.irradiance.to(device)
        target = display.ground_truth(irr, scenes.srgb.to(device), sensor.camera)
        captured = system.sensor(irr)
        out = system.reconstruct(captured.burst * gain, captured.durations_s).image.to(target.dtype)
        full = full_exposure_image(sensor, irr, display).to(target.dtype)
        scores["psnr"] += psnr(out, target, reduction="none").tolist()
        scores["ssim"] += ssim(out, target, reduction="none").tolist()
        scores["psnr_full_exposure"] += psnr(full, target, reduction="none").tolist()
        if not images:
            images = {"full_exposure": full[0].cpu(), "output": out[0].cpu(), "ground_truth": target[0].cpu()}
    result: dict[str, Any] = {k: sum(v) / len(v) for k, v in scores.items()}
    result["mean_electrons"] = mean_electrons([scenes.irradiance for scenes in batches], sensor.camera.budget_s)
    result["clipped_fraction"] = clipped_fraction([scenes.irradiance for scenes in batches], sensor.camera)
    result["images"] = images
    return result


def _middle(cell: dict[str, Any]) -> float:
    return float(cell["exposures_us"][len(cell["exposures_us"]) // 2])


def _key(cell: dict[str, Any]) -> tuple[float, float]:
    return float(cell["white_level_scale"]), float(cell["dbar_target"])


def trend(cells: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Do the paper's trends hold beyond the spread between training seeds? ``cells``: one record per
    ``(white_level_scale, dbar_target, seed)`` with ``exposures_us``; the reference (middle) exposure is compared.

    - The seed spread: at every ``(light, d-bar)`` cell with two seeds or more, the range (max - min) of the middle
      exposure over its seeds; ``seed_spread_us`` reports their largest and mean.
    - Each trend, across its whole axis: *darker -> longer* compares the darkest with the brightest light, *shakier
      -> shorter* the least with the most shake. For every level of the other axis and every seed trained at both
      ends, the change of the middle exposure in the paper's direction (darkest minus brightest; least minus most
      shake): ``changes_us``, their mean ``change_us``, and ``pairs`` (``[k, m]``: k of the m neighbouring pairs of
      cells, seed means, that move the paper's way; ties count as not).
    - ``verdict``: ``holds`` when the mean change is positive, larger than the largest seed spread, and every
      paired change (one seed, one level of the other axis) is positive; ``reversed`` when the same holds in the
      other direction; ``within seed spread`` otherwise; ``untested`` with one seed per cell or one level.
    """
    by: dict[tuple[float, float], dict[int, float]] = {}
    for c in cells:
        by.setdefault(_key(c), {})[int(c.get("seed", 0))] = _middle(c)
    spreads = [max(v.values()) - min(v.values()) for v in by.values() if len(v) >= 2]
    spread = {"max": round(max(spreads), 1) if spreads else None,
              "mean": round(sum(spreads) / len(spreads), 1) if spreads else None, "cells": len(spreads)}
    lights = sorted({k[0] for k in by})
    dbars = sorted({k[1] for k in by})

    def mean(v: dict[int, float]) -> float:
        return sum(v.values()) / len(v)

    def one(axis: list[float], others: list[float], at: Any, sign: float) -> dict[str, Any]:
        # at(level, other) -> the cell key; sign: +1 when the paper's direction is "falls along the axis"
        changes, pairs = [], [0, 0]
        for o in others:
            lo, hi = by.get(at(axis[0], o)), by.get(at(axis[-1], o))
            if len(axis) >= 2 and lo and hi:
                changes += [sign * (lo[s] - hi[s]) for s in sorted(set(lo) & set(hi))]
            for a, b in zip(axis, axis[1:]):
                if at(a, o) in by and at(b, o) in by:
                    pairs[0] += sign * (mean(by[at(a, o)]) - mean(by[at(b, o)])) > 0
                    pairs[1] += 1
        change = sum(changes) / len(changes) if changes else None
        if change is None or spread["max"] is None:
            verdict = "untested"
        elif change > spread["max"] and all(x > 0 for x in changes):
            verdict = "holds"
        elif -change > spread["max"] and all(x < 0 for x in changes):
            verdict = "reversed"
        else:
            verdict = "within seed spread"
        return {"pairs": pairs, "changes_us": [round(x, 1) for x in changes],
                "change_us": None if change is None else round(change, 1), "verdict": verdict}

    return {"darker_longer": one(lights, dbars, lambda li, d: (li, d), +1.0),
            "shakier_shorter": one(dbars, lights, lambda d, li: (li, d), +1.0),
            "seed_spread_us": spread}


def _grid(cells: Sequence[dict[str, Any]]) -> tuple[list[float], list[float], dict[tuple[float, float], dict]]:
    """Lights (brightest first), d-bars (ascending) and, per ``(light, d-bar)``, the record of its lowest seed with
    ``psnr`` and ``middle_us`` replaced by their means over the cell's seeds."""
    groups: dict[tuple[float, float], list[dict[str, Any]]] = {}
    for c in cells:
        groups.setdefault(_key(c), []).append(c)
    by = {}
    for k, group in groups.items():
        first = min(group, key=lambda c: int(c.get("seed", 0)))
        by[k] = {**first, "psnr": sum(c["psnr"] for c in group) / len(group),
                 "middle_us": sum(_middle(c) for c in group) / len(group), "seeds": len(group)}
    return sorted({k[0] for k in by}, reverse=True), sorted({k[1] for k in by}), by


def plot_fig9(cells: Sequence[dict[str, Any]], images: dict[tuple[float, float], dict[str, torch.Tensor]],
              path: str | os.PathLike[str]) -> Path:
    """The paper's Fig. 9 layout: light falls down the rows, d-bar grows along the columns; each cell shows its
    lowest seed's full-exposure image, output with its PSNR, and learned schedule (exposures in capture order, us).
    ``images``: keyed by ``(light, d-bar)``. Written atomically as PNG."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lights, shakes, by = _grid(cells)
    fig = plt.figure(figsize=(4.2 * len(shakes), 3.6 * len(lights)), layout="constrained")
    subs = fig.subfigures(len(lights), len(shakes), squeeze=False)
    for i, light in enumerate(lights):
        for j, shake in enumerate(shakes):
            sub = subs[i][j]
            cell = by.get((light, shake))
            if cell is None:
                continue
            axes = sub.subplot_mosaic([["full", "out"], ["sched", "sched"]], height_ratios=[5, 1])
            pics = images.get((light, shake), {})
            for key, title in (("full", f"full exposure\n{cell['psnr_full_exposure']:.2f} dB"),
                               ("out", f"ours\n{cell['psnr']:.2f} dB")):
                ax = axes[key]
                pic = pics.get("full_exposure" if key == "full" else "output")
                if pic is not None:
                    ax.imshow(pic.float().clamp(0, 1).permute(1, 2, 0).squeeze(-1).numpy(), cmap="gray", vmin=0, vmax=1)
                ax.set_title(title, fontsize=8)
                ax.axis("off")
            ax = axes["sched"]
            starts, durations = cell["starts_us"], cell["exposures_us"]
            colors = ["C3" if k == len(durations) // 2 else "C0" for k in range(len(durations))]  # reference: red
            ax.barh([0] * len(durations), durations, left=starts, color=colors, edgecolor="k")
            ax.set_xlim(0, cell["budget_us"])
            ax.set_yticks([])
            ax.tick_params(labelsize=7)
            ax.set_xlabel(" / ".join(f"{d:.0f}" for d in durations) + " us", fontsize=7)
            sub.suptitle(f"light x{light:g} (e-bar {cell['mean_electrons']:.0f} e-), d-bar "
                         f"{cell['blur_diameter_px']:.1f} px, seed {cell.get('seed', 0)}", fontsize=8)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    write_bytes_atomic(path, buf.getvalue())
    return Path(path)


def plot_heatmaps(cells: Sequence[dict[str, Any]], path: str | os.PathLike[str]) -> Path:
    """Two heat maps over light x d-bar: the output PSNR (dB) and the learned middle exposure (us), means over each
    cell's seeds, each cell annotated with its value. Written atomically as PNG."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    lights, shakes, by = _grid(cells)
    maps = {"PSNR (dB)": lambda c: c["psnr"],
            "middle exposure (us)": lambda c: c["middle_us"]}
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), layout="constrained")
    for ax, (title, value) in zip(axes, maps.items(), strict=True):
        grid = np.array([[value(by[(li, s)]) if (li, s) in by else np.nan for s in shakes] for li in lights])
        im = ax.imshow(grid, cmap="viridis")
        for i in range(len(lights)):
            for j in range(len(shakes)):
                if not np.isnan(grid[i, j]):
                    ax.text(j, i, f"{grid[i, j]:.1f}" if "PSNR" in title else f"{grid[i, j]:.0f}", ha="center",
                            va="center", color="w" if grid[i, j] < np.nanmean(grid) else "k", fontsize=9)
        ax.set_xticks(range(len(shakes)), [f"{s:g}" for s in shakes])
        ax.set_yticks(range(len(lights)), [f"x{li:g}" for li in lights])
        ax.set_xlabel("camera shake: d-bar (network px)")
        ax.set_ylabel("light (white level scale)")
        ax.set_title(title)
        fig.colorbar(im, ax=ax, shrink=0.8)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    write_bytes_atomic(path, buf.getvalue())
    return Path(path)


def _verdict_line(name: str, t: dict[str, Any], spread: dict[str, Any]) -> str:
    if t["verdict"] == "untested":
        return f"{name}: untested (it needs two seeds per cell and two levels of the axis)."
    k, m = t["pairs"]
    changes = ", ".join(f"{x:+.0f}" for x in t["changes_us"])
    return (f"{name}: **{t['verdict']}**. Mean change across the axis {t['change_us']:+.0f} us in the paper's "
            f"direction (paired by seed and by level of the other axis: {changes} us) against a largest seed "
            f"spread of {spread['max']:.0f} us (mean {spread['mean']:.0f} us over {spread['cells']} cells); "
            f"{k} of {m} neighbouring pairs (seed means) move the paper's way.")


def _report_md(cells: Sequence[dict[str, Any]], verdict: dict[str, Any], figure: str, heatmaps: str) -> str:
    spread = verdict["seed_spread_us"]
    seeds = sorted({int(c.get("seed", 0)) for c in cells})
    camera = sorted({str(c.get("camera", "")) for c in cells})
    lines = [
        "# Fig. 9: the noise x blur trade-off",
        "",
        "Generated by `cd sweeps/fig9 && dvc repro` (do not edit). Each cell retrains the learned-exposure model",
        "at the embedded size with the light (`augment.white_level`) scaled and the camera shake set to a blur of",
        "d-bar network pixels (through `augment.shake_focal_net_px`), chooses its checkpoint on val, and is scored",
        "on the same test clips lit and shaken the same way. e-bar: mean photo-electrons per pixel at full exposure;",
        "d-bar: mean blur diameter at full exposure (the principal point's path over the training window, network",
        "pixels); clipped: the fraction of test pixels whose full exposure leaves the sensor's linear range.",
        f"Camera: {', '.join(camera)}. Training seeds: {', '.join(map(str, seeds))}.",
        "",
        "| light | d-bar (px) | seed | e-bar (e-) | clipped | PSNR ours (dB) | PSNR full exposure (dB) | "
        "exposures (us, capture order) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for c in sorted(cells, key=lambda c: (-c["white_level_scale"], c["dbar_target"], c.get("seed", 0))):
        lines.append(f"| x{c['white_level_scale']:g} | {c['blur_diameter_px']:.2f} | {c.get('seed', 0)} | "
                     f"{c['mean_electrons']:.0f} | {100 * c['clipped_fraction']:.2f}% | {c['psnr']:.2f} | "
                     f"{c['psnr_full_exposure']:.2f} | {' / '.join(f'{x:.0f}' for x in c['exposures_us'])} |")
    lines += [
        "",
        "**The paper's trends** (the middle exposure grows as the light falls and shrinks as the shake grows), each",
        "tested against the spread of the learned middle exposure between training seeds (a trend *holds* when its",
        "mean change across the axis exceeds the largest seed spread and every paired change has its sign):",
        "",
        "- " + _verdict_line("darker -> longer middle exposure", verdict["darker_longer"], spread),
        "- " + _verdict_line("shakier -> shorter middle exposure", verdict["shakier_shorter"], spread),
        "",
        f"![Fig. 9 layout]({figure})",
        "",
        f"![PSNR and middle exposure]({heatmaps})",
    ]
    return "\n".join(lines) + "\n"


def fig9_report(cfg: SweepGroups, cells: Sequence[tuple[float, float, int]], shards_dir: Path, cells_dir: Path,
                metrics_path: Path, figure: Path, heatmaps: Path, report: Path, progress: bool = True) -> list[dict]:
    """Score the trained model of every ``(light, dbar, seed)`` cell (``cells_dir/<cell_name>/model.pt``) on the
    first ``eval.clips`` test clips lit and shaken like its training (the scenes of ``eval.seed``, full frames as
    ``eval.full_frame``), and write ``metrics_path`` (a list, one object per cell), ``figure`` (:func:`plot_fig9`),
    ``heatmaps`` (:func:`plot_heatmaps`) and ``report`` (Markdown, with :func:`trend`). d-bar is set and reported
    over the training window (:func:`train_frames`). Returns the list written."""
    from tqdm import tqdm

    ecfg = cfg.eval
    device = resolve_device(cfg.train.device, "params 'train.device'")
    frames = train_frames(cfg.augment, shards_dir)
    records: list[dict[str, Any]] = []
    images: dict[tuple[float, float], dict[str, torch.Tensor]] = {}
    for light, dbar, seed in tqdm(sorted(cells, key=lambda c: (c[0], c[1], c[2])), desc="fig9 cells",
                                  disable=not progress):
        cell = cell_config(cfg, light, dbar, seed, frames)
        path = cells_dir / cell_name(light, dbar, seed) / "model.pt"
        system = load_system(path, device)
        sensor = build_sensor(cell, learn_exposure=False)
        batches = fixed_irradiance_set(shards_dir, "test", ecfg.clips, ecfg.batch_size, cell.augment, sensor.camera,
                                       cfg.model.channels, ecfg.seed, cfg.train.loader, device,
                                       window_frames=ecfg.window_frames, full_frame=ecfg.full_frame)
        scored = score_cell(system, cell, batches, ecfg.seed, device)
        sched = system.sensor.schedule_us()
        pics = scored.pop("images")
        images.setdefault((light, dbar), pics)  # the lowest seed's
        records.append({
            "white_level_scale": light, "dbar_target": dbar, "seed": int(seed), "camera": sensor.camera.name,
            "mean_electrons": round(scored["mean_electrons"], 2),
            "blur_diameter_px": round(blur_diameter_px(cell.augment, frames), 3), "window_frames": frames,
            "shake_focal_net_px": round(cell.augment.shake_focal_net_px, 3),
            "clipped_fraction": round(scored["clipped_fraction"], 6),
            "psnr": round(scored["psnr"], 4), "ssim": round(scored["ssim"], 4),
            "psnr_full_exposure": round(scored["psnr_full_exposure"], 4),
            "exposures_us": [round(x, 1) for x in sched["durations_us"]],
            "starts_us": [round(x, 1) for x in sched["starts_us"]], "budget_us": sched["budget_us"],
            "readout_us": sched["readout_us"], "idle_us": round(sched["idle_us"], 1),
            "model": cell_name(light, dbar, seed) + "/model.pt",
        })
    verdict = trend(records)
    write_json_atomic(metrics_path, records)
    plot_fig9(records, images, figure)
    plot_heatmaps(records, heatmaps)
    links = [Path(os.path.relpath(p, report.parent)).as_posix() for p in (figure, heatmaps)]  # from the report's folder
    write_bytes_atomic(report, _report_md(records, verdict, *links).encode())
    return records
