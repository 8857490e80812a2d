"""Paper Fig. 9, the noise x blur trade-off: the learned model retrained at each light level x camera shake.

A cell scales the light (``augment.white_level``) and the shake (``augment.shake_std_deg``) of the embedded
default by ``(light, shake)``, trains the learned-exposure model there (the one training loop,
:func:`gimbal.train.train`) and scores it on the test scenes lit and shaken the same way (:func:`score_cell`).
Each cell is described as the paper does, at full exposure (one exposure of the whole budget T):

- ``mean_electrons`` (e-bar): the mean photo-electrons a pixel collects, ``mean(irradiance) x T``, over the
  test scenes (:func:`gimbal.working_point.mean_electrons`);
- ``blur_diameter_px`` (d-bar): the mean, over shake draws, of the largest distance between two positions of
  the principal point during the exposure, in the network's pixels (:func:`gimbal.working_point.blur_diameter_px`,
  the project's one definition, which the evaluation reports for every trained model too).

The paper's finding: the reference (middle) exposure grows as the light falls and shrinks as the shake grows
(:func:`trend`). :func:`plot_fig9` lays the cells out like the paper's figure; :func:`plot_heatmaps` draws PSNR
and the middle exposure over the grid.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from gimbal.config import Config
from gimbal.data.irradiance import Scenes, fixed_irradiance_set
from gimbal.display import Display
from gimbal.errors import ParamError
from gimbal.io import write_bytes_atomic, write_json_atomic
from gimbal.metrics import psnr, ssim
from gimbal.runtime import resolve_device
from gimbal.system import GimbalSystem, build_sensor, full_exposure_image, load_system
from gimbal.working_point import blur_diameter_px, mean_electrons

__all__ = ["blur_diameter_px", "cell_config", "cell_name", "fig9_report", "plot_fig9", "plot_heatmaps", "score_cell",
           "trend"]


def cell_name(light: float, shake: float) -> str:
    """The folder name of cell ``(light, shake)``: ``light0.25_shake2``."""
    return f"light{light:g}_shake{shake:g}"


def cell_config(cfg: Config, light: float, shake: float) -> Config:
    """``cfg`` with ``augment.white_level`` scaled by ``light`` and ``augment.shake_std_deg`` by ``shake``."""
    if light <= 0 or shake < 0:
        raise ParamError(f"fig9: the light scale must be > 0 and the shake scale >= 0, got {light}, {shake}")
    aug = cfg.augment
    scaled = dataclasses.replace(aug, white_level=tuple(light * w for w in aug.white_level),
                                 shake_std_deg=tuple(shake * s for s in aug.shake_std_deg))
    return dataclasses.replace(cfg, augment=scaled)


@torch.no_grad()
def score_cell(system: GimbalSystem, cfg: Config, batches: Sequence[Scenes], seed: int,
               device: torch.device | str = "cpu") -> dict[str, Any]:
    """Score a cell's trained ``system`` on its test scenes (irradiance ``(b, T_f, C, H, W)`` e-/s), exact Poisson
    noise seeded with ``seed``. Returns ``psnr`` / ``ssim`` (means, display space), ``psnr_full_exposure``,
    ``mean_electrons`` (e-) and, for the first clip, ``images``: ``{"full_exposure", "output", "ground_truth"}``
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
        out = system.reconstruct(captured.burst, captured.durations_s).image.to(target.dtype)
        full = full_exposure_image(sensor, irr, display).to(target.dtype)
        scores["psnr"] += psnr(out, target, reduction="none").tolist()
        scores["ssim"] += ssim(out, target, reduction="none").tolist()
        scores["psnr_full_exposure"] += psnr(full, target, reduction="none").tolist()
        if not images:
            images = {"full_exposure": full[0].cpu(), "output": out[0].cpu(), "ground_truth": target[0].cpu()}
    result: dict[str, Any] = {k: sum(v) / len(v) for k, v in scores.items()}
    result["mean_electrons"] = mean_electrons([scenes.irradiance for scenes in batches], sensor.camera.budget_s)
    result["images"] = images
    return result


def trend(cells: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Does the paper's trend hold? For each shake scale, the middle exposure as the light falls, and for each
    light scale, as the shake grows: ``{"darker_longer": [k, m], "shakier_shorter": [k, m]}``, ``k`` of ``m``
    neighbouring pairs of cells that move the way the paper found (ties count as not)."""
    by = {(c["white_level_scale"], c["shake_scale"]): c["exposures_us"][len(c["exposures_us"]) // 2] for c in cells}
    lights = sorted({k[0] for k in by})
    shakes = sorted({k[1] for k in by})
    darker = [by[(lo, s)] > by[(hi, s)] for s in shakes for lo, hi in zip(lights, lights[1:])
              if (lo, s) in by and (hi, s) in by]
    shakier = [by[(li, hi)] < by[(li, lo)] for li in lights for lo, hi in zip(shakes, shakes[1:])
               if (li, lo) in by and (li, hi) in by]
    return {"darker_longer": [sum(darker), len(darker)], "shakier_shorter": [sum(shakier), len(shakier)]}


def _grid(cells: Sequence[dict[str, Any]]) -> tuple[list[float], list[float], dict[tuple[float, float], dict]]:
    by = {(c["white_level_scale"], c["shake_scale"]): c for c in cells}
    return sorted({k[0] for k in by}, reverse=True), sorted({k[1] for k in by}), by


def plot_fig9(cells: Sequence[dict[str, Any]], images: dict[tuple[float, float], dict[str, torch.Tensor]],
              path: str | os.PathLike[str]) -> Path:
    """The paper's Fig. 9 layout: light falls down the rows, shake grows along the columns; each cell shows the
    full-exposure image, the output with its PSNR, and the learned schedule (exposures in capture order, us).
    Written atomically as PNG."""
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
            sub.suptitle(f"light x{light:g} (e-bar {cell['mean_electrons']:.0f} e-), shake x{shake:g} "
                         f"(d-bar {cell['blur_diameter_px']:.1f} px)", fontsize=8)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    write_bytes_atomic(path, buf.getvalue())
    return Path(path)


def plot_heatmaps(cells: Sequence[dict[str, Any]], path: str | os.PathLike[str]) -> Path:
    """Two heat maps over light x shake: the output PSNR (dB) and the learned middle exposure (us), each cell
    annotated with its value. Written atomically as PNG."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    lights, shakes, by = _grid(cells)
    maps = {"PSNR (dB)": lambda c: c["psnr"],
            "middle exposure (us)": lambda c: c["exposures_us"][len(c["exposures_us"]) // 2]}
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), layout="constrained")
    for ax, (title, value) in zip(axes, maps.items(), strict=True):
        grid = np.array([[value(by[(li, s)]) if (li, s) in by else np.nan for s in shakes] for li in lights])
        im = ax.imshow(grid, cmap="viridis")
        for i in range(len(lights)):
            for j in range(len(shakes)):
                if not np.isnan(grid[i, j]):
                    ax.text(j, i, f"{grid[i, j]:.1f}" if "PSNR" in title else f"{grid[i, j]:.0f}", ha="center",
                            va="center", color="w" if grid[i, j] < np.nanmean(grid) else "k", fontsize=9)
        ax.set_xticks(range(len(shakes)), [f"x{s:g}" for s in shakes])
        ax.set_yticks(range(len(lights)), [f"x{li:g}" for li in lights])
        ax.set_xlabel("camera shake (std scale)")
        ax.set_ylabel("light (white level scale)")
        ax.set_title(title)
        fig.colorbar(im, ax=ax, shrink=0.8)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    write_bytes_atomic(path, buf.getvalue())
    return Path(path)


def _report_md(cells: Sequence[dict[str, Any]], verdict: dict[str, Any], figure: str, heatmaps: str) -> str:
    d, s = verdict["darker_longer"], verdict["shakier_shorter"]
    lines = [
        "# Fig. 9: the noise x blur trade-off",
        "",
        "Generated by `cd sweeps/fig9 && dvc repro` (do not edit). Each cell retrains the learned-exposure model",
        "at the embedded size with the light (`augment.white_level`) and the camera shake (`augment.shake_std_deg`)",
        "scaled, chooses its checkpoint on val, and is scored on the same test clips lit and shaken the same way.",
        "e-bar: mean photo-electrons per pixel at full exposure; d-bar: mean blur diameter at full exposure (the",
        "principal point's path, network pixels). One training seed per cell.",
        "",
        "| light | shake | e-bar (e-) | d-bar (px) | PSNR ours (dB) | PSNR full exposure (dB) | "
        "exposures (us, capture order) |",
        "|---|---|---|---|---|---|---|",
    ]
    for c in sorted(cells, key=lambda c: (-c["white_level_scale"], c["shake_scale"])):
        lines.append(f"| x{c['white_level_scale']:g} | x{c['shake_scale']:g} | {c['mean_electrons']:.0f} | "
                     f"{c['blur_diameter_px']:.2f} | {c['psnr']:.2f} | {c['psnr_full_exposure']:.2f} | "
                     f"{' / '.join(f'{x:.0f}' for x in c['exposures_us'])} |")
    lines += [
        "",
        "**The paper's trend** (the middle exposure grows as the light falls and shrinks as the shake grows):",
        f"darker -> longer middle exposure in {d[0]} of {d[1]} neighbouring pairs; shakier -> shorter in {s[0]} of "
        f"{s[1]}.",
        "",
        f"![Fig. 9 layout]({figure})",
        "",
        f"![PSNR and middle exposure]({heatmaps})",
    ]
    return "\n".join(lines) + "\n"


def fig9_report(cfg: Config, cells: Sequence[tuple[float, float]], shards_dir: Path, cells_dir: Path,
                metrics_path: Path, figure: Path, heatmaps: Path, report: Path, progress: bool = True) -> list[dict]:
    """Score the trained model of every ``(light, shake)`` cell (``cells_dir/<cell_name>/model.pt``) on the first
    ``eval.clips`` test clips lit and shaken like its training (the scenes of ``eval.seed``, full frames as
    ``eval.full_frame``), and write ``metrics_path`` (a list, one object per cell), ``figure``
    (:func:`plot_fig9`), ``heatmaps`` (:func:`plot_heatmaps`) and ``report`` (Markdown, with :func:`trend`).
    Returns the list written."""
    from tqdm import tqdm

    ecfg = cfg.eval
    device = resolve_device(cfg.train.device, "params 'train.device'")
    records: list[dict[str, Any]] = []
    images: dict[tuple[float, float], dict[str, torch.Tensor]] = {}
    for light, shake in tqdm(cells, desc="fig9 cells", disable=not progress):
        cell = cell_config(cfg, light, shake)
        path = cells_dir / cell_name(light, shake) / "model.pt"
        system = load_system(path, device)
        sensor = build_sensor(cell, learn_exposure=False)
        batches = fixed_irradiance_set(shards_dir, "test", ecfg.clips, ecfg.batch_size, cell.augment, sensor.camera,
                                       cfg.model.channels, ecfg.seed, cfg.train.loader, device,
                                       window_frames=ecfg.window_frames, full_frame=ecfg.full_frame)
        scored = score_cell(system, cell, batches, ecfg.seed, device)
        frames = batches[0].irradiance.shape[1]
        sched = system.sensor.schedule_us()
        images[(light, shake)] = scored.pop("images")
        records.append({
            "white_level_scale": light, "shake_scale": shake,
            "mean_electrons": round(scored["mean_electrons"], 2),
            "blur_diameter_px": round(blur_diameter_px(cell.augment, frames, seed=ecfg.seed), 3),
            "psnr": round(scored["psnr"], 4), "ssim": round(scored["ssim"], 4),
            "psnr_full_exposure": round(scored["psnr_full_exposure"], 4),
            "exposures_us": [round(x, 1) for x in sched["durations_us"]],
            "starts_us": [round(x, 1) for x in sched["starts_us"]], "budget_us": sched["budget_us"],
        })
    verdict = trend(records)
    write_json_atomic(metrics_path, records)
    plot_fig9(records, images, figure)
    plot_heatmaps(records, heatmaps)
    links = [Path(os.path.relpath(p, report.parent)).as_posix() for p in (figure, heatmaps)]  # from the report's folder
    write_bytes_atomic(report, _report_md(records, verdict, *links).encode())
    return records
