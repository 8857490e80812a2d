"""Held-out validation of ``gimbal plan`` on the Fig. 9 sweep (:mod:`gimbal.planning.fig9`): at working points between
the grid's cells, the planned schedule merged by the nearest cell's network against models trained there directly.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tqdm import tqdm

from gimbal.data.irradiance import fixed_irradiance_set
from gimbal.errors import DataError
from gimbal.io import write_bytes_atomic, write_json_atomic
from gimbal.planning.fig9 import (
    SweepGrid,
    SweepGroups,
    cell_config,
    cell_name,
    score_cell,
    train_frames,
)
from gimbal.planning.finetune import fixed_schedule
from gimbal.planning.plan import ebar_at_light, load_grid, plan
from gimbal.planning.working_point import blur_diameter_px, mean_electrons
from gimbal.runtime import resolve_device
from gimbal.system import build_sensor, load_system

__all__ = ["validate_heldout"]


def validate_heldout(cfg: SweepGroups, grid: SweepGrid, cells_json: Path, cells_dir: Path, heldout_dir: Path,
                     shards_dir: Path, out_json: Path, report: Path, finetuned_dir: Path | None = None,
                     progress: bool = True) -> dict[str, Any]:
    """Held-out validation of ``gimbal plan`` (:func:`gimbal.planning.plan.plan`) at every working point of
    ``grid.heldout`` (its seeds trained directly into ``heldout_dir/<cell_name>/model.pt``).

    At each point, on the first ``eval.clips`` test clips lit and shaken like it (as :func:`fig9_report` scores):
    the point's (e-bar, d-bar) is planned on the trained grid (``cells_json``); the planned schedule is merged by
    the nearest cell's network (the plan's ``merge_model``, with the planned exposures fixed, the raw burst times
    its ``gain``) and scored, and so is
    every directly trained seed. With ``finetuned_dir``, the plan's merge fine-tuned at the point for each seed
    (``finetuned_dir/<cell_name>/model.pt``, ``stages/fig9_finetune.py``: the planned exposures fixed, no gain) is
    scored too, and the PSNR check is its seeds' mean. Two checks: ``psnr_gap_db`` (planned minus the direct seeds'
    mean) >= -0.5 dB, and every planned duration within the direct seeds' own spread of their mean (``|planned -
    mean| <= max - min`` over the seeds, per frame). The point is planned at the grid's e-bar for its light
    (:func:`gimbal.planning.plan.ebar_at_light`, as the fine-tuning plans it). Writes ``out_json`` and a
    Markdown section ``report``; returns the JSON.

    Raises:
        DataError: a fine-tuned merge missing, or fine-tuned for another schedule than the plan's (re-run it).
    """
    trained = load_grid(cells_json, cells_dir)
    ecfg = cfg.eval
    device = resolve_device(cfg.train.device, "params 'train.device'")
    frames = train_frames(cfg.augment, shards_dir)
    points: dict[tuple[float, float], list[int]] = {}
    for light, dbar, seed in grid.heldout.values():
        points.setdefault((light, dbar), []).append(seed)
    results = []
    for (light, dbar), seeds in tqdm(sorted(points.items()), desc="held-out points", disable=not progress):
        cell = cell_config(cfg, light, dbar, min(seeds), frames)
        sensor = build_sensor(cell, learn_exposure=False)
        batches = fixed_irradiance_set(shards_dir, "test", ecfg.clips, ecfg.batch_size, cell.augment, sensor.camera,
                                       cfg.model.channels, ecfg.seed, cfg.train.loader, device,
                                       window_frames=ecfg.window_frames, full_frame=ecfg.full_frame)
        ebar = mean_electrons([b.irradiance for b in batches], sensor.camera.budget_s)
        dbar_px = blur_diameter_px(cell.augment, frames)
        planned = plan(trained, ebar_at_light(trained, light), dbar_px, sensor.camera)
        fixed = fixed_schedule(cell, planned["schedule"]["durations_us"])
        durations = list(fixed.exposure.init_us or ())
        merged = load_system(planned["merge_model"]["path"], device)
        merged.sensor = build_sensor(fixed, learn_exposure=False).to(device)
        gain = planned["merge_model"]["gain"]
        planned_psnr = score_cell(merged, cell, batches, ecfg.seed, device, gain=gain)["psnr"]
        direct = []
        for seed in sorted(seeds):
            system = load_system(heldout_dir / cell_name(light, dbar, seed) / "model.pt", device)
            direct.append({"seed": seed, "psnr": round(score_cell(system, cell, batches, ecfg.seed, device)["psnr"], 4),
                           "exposures_us": [round(x, 1) for x in system.sensor.schedule_us()["durations_us"]]})
        n = len(durations)
        mean_us = [sum(d["exposures_us"][k] for d in direct) / len(direct) for k in range(n)]
        spread_us = [max(d["exposures_us"][k] for d in direct) - min(d["exposures_us"][k] for d in direct)
                     for k in range(n)]
        direct_mean = sum(d["psnr"] for d in direct) / len(direct)
        gap = planned_psnr - direct_mean
        finetuned = []
        for seed in sorted(seeds) if finetuned_dir is not None else []:
            path = finetuned_dir / cell_name(light, dbar, seed) / "model.pt"  # type: ignore[operator]
            if not path.is_file():
                raise DataError(f"{path}: no fine-tuned merge; run the sweep's finetune_heldout stages (dvc repro)")
            system = load_system(path, device)
            got = system.sensor.schedule_us()["durations_us"]
            if max(abs(a - b) for a, b in zip(got, durations, strict=True)) > 0.5:
                raise DataError(f"{path}: fine-tuned for {[round(x, 1) for x in got]} us, not the plan's "
                                f"{[round(x, 1) for x in durations]} us; re-run its finetune_heldout stage")
            finetuned.append({"seed": seed, "psnr": round(score_cell(system, cell, batches, ecfg.seed, device)["psnr"],
                                                          4)})
        if finetuned:
            tuned_gap = sum(d["psnr"] for d in finetuned) / len(finetuned) - direct_mean
        results.append({
            "white_level_scale": light, "dbar_target": dbar, "e_bar": round(ebar, 2), "d_bar_px": round(dbar_px, 3),
            "planned_exposures_us": [round(x, 1) for x in durations], "merge_model": planned["merge_model"]["cell"],
            "merge_gain": gain,
            "planned_psnr": round(planned_psnr, 4), "expected_psnr_db": planned["expected_psnr_db"],
            "direct": direct, "direct_mean_exposures_us": [round(x, 1) for x in mean_us],
            "direct_seed_spread_us": [round(x, 1) for x in spread_us], "psnr_gap_db": round(gap, 3),
            "finetuned": finetuned,
            "finetuned_gap_db": round(tuned_gap, 3) if finetuned else None,
            "psnr_checked": "fine-tuned merge" if finetuned else "nearest cell's merge",
            "psnr_within_0_5_db": (tuned_gap if finetuned else gap) >= -0.5,
            "exposures_within_seed_spread": all(abs(p - m) <= s for p, m, s in zip(durations, mean_us, spread_us,
                                                                                       strict=True)),
        })
    out = {"points": results, "passed": all(r["psnr_within_0_5_db"] and r["exposures_within_seed_spread"]
                                            for r in results)}
    write_json_atomic(out_json, out)
    write_bytes_atomic(report, _validation_md(results).encode())
    return out


def _validation_md(results: Sequence[dict[str, Any]]) -> str:
    lines = [
        "# gimbal plan: held-out validation",
        "",
        "Generated by `cd sweeps/fig9 && dvc repro` (do not edit). At working points between the grid's cells the",
        "model is also trained directly (one training per seed). The planned schedule (`gimbal plan` on the grid)",
        "is merged by the nearest cell's network, the raw burst first brightened or dimmed to that cell's light",
        "(the plan's digital gain: each cell's network learned its own light's brightness, the target being the",
        "scene's sRGB image at any light), and scored on the same test clips as the directly trained seeds.",
        "Where the sweep fine-tunes it (`finetune_steps`), that network is also fine-tuned at the point, one run per",
        "seed: the planned exposures fixed, only the networks trained, on bursts lit and shaken like the point, no gain.",
        "Checks: planned PSNR (the fine-tuned merge's seed mean where there is one) at most 0.5 dB below the direct",
        "seeds' mean; every planned exposure within the direct seeds' spread (max - min) of their mean.",
        "",
        "| light | d-bar (px) | e-bar (e-) | planned exposures (us) | merged by (gain) | planned PSNR (dB) | gap (dB) | "
        "fine-tuned PSNR (dB, per seed) | gap (dB) | direct PSNR (dB, per seed) | direct exposures (us, mean; spread) | "
        "PSNR ok | exposures ok |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        direct = ", ".join(f"{d['psnr']:.2f}" for d in r["direct"])
        tuned = ", ".join(f"{d['psnr']:.2f}" for d in r["finetuned"]) or "-"
        tuned_gap = f"{r['finetuned_gap_db']:+.2f}" if r["finetuned"] else "-"
        mean = " / ".join(f"{x:.0f}" for x in r["direct_mean_exposures_us"])
        spread = " / ".join(f"{x:.0f}" for x in r["direct_seed_spread_us"])
        lines.append(f"| x{r['white_level_scale']:g} | {r['d_bar_px']:.2f} | {r['e_bar']:.0f} | "
                     f"{' / '.join(f'{x:.0f}' for x in r['planned_exposures_us'])} | {r['merge_model']} (x{r['merge_gain']:.3g}) | "
                     f"{r['planned_psnr']:.2f} | {r['psnr_gap_db']:+.2f} | {tuned} | {tuned_gap} | {direct} | "
                     f"{mean}; {spread} | "
                     f"{'yes' if r['psnr_within_0_5_db'] else 'no'} | "
                     f"{'yes' if r['exposures_within_seed_spread'] else 'no'} |")
    return "\n".join(lines) + "\n"
