"""A planned schedule's merge network, fine-tuned at its working point (not in the paper, nor in the authors' code).

``gimbal plan`` reads a schedule off the trained Fig. 9 grid and names the nearest cell's network to merge it, with a
digital gain that brings the burst to that cell's light. That network learned another light's noise: at the sweep's
held-out points its merge scored up to 0.9 dB below models trained there (docs/plan.md). Fine-tuning it at the
point, with the planned exposures fixed (only the networks train, from the cell's weights, on bursts lit and shaken
like the point), costs a fraction of a training and needs no gain. This module builds that run's groups;
``stages/fig9_finetune.py`` trains it with the one training loop.

The point's e-bar is computed from the grid (:func:`gimbal.planning.plan.ebar_at_light`), not measured on any split:
a cell's mean photo-electrons are proportional to its light scale (the same scenes, every irradiance scaled; the
grid's cells do not clip).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, TypeVar

from gimbal.errors import ParamError
from gimbal.planning.fig9 import SweepGroups, cell_config
from gimbal.planning.plan import Grid, ebar_at_light, plan
from gimbal.planning.working_point import blur_diameter_px

__all__ = ["finetune_config", "fixed_schedule"]

G = TypeVar("G", bound=SweepGroups)


def fixed_schedule(cfg: G, durations_us: Sequence[float]) -> G:
    """``cfg`` with its exposures fixed to ``durations_us`` (``model.learn_exposure: false``, ``exposure.init_us``,
    any idle time after the last readout: ``exposure.idle_slot``), e.g. a :func:`gimbal.planning.plan.plan`
    schedule; a sum that exceeds the free time ``T - n x readout`` by the plan's 0.1 us rounding is scaled onto it.
    Raises :class:`ParamError` when the count differs from ``exposure.n``."""
    exposure = cfg.exposure
    if len(durations_us) != exposure.n:
        raise ParamError(f"fig9: a fixed schedule lists exposure.n = {exposure.n} durations, got {list(durations_us)}")
    camera = cfg.sensor.spec()
    free = (camera.budget_s - exposure.n * camera.readout_s) / 1e-6
    total = sum(durations_us)
    if total > free:
        durations_us = [d * free / total for d in durations_us]
    return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, learn_exposure=False),  # type: ignore[arg-type]
                               exposure=dataclasses.replace(exposure, init_us=tuple(float(d) for d in durations_us),
                                                            idle_slot=True))


def finetune_config(cfg: G, grid: Grid, light: float, dbar: float, seed: int, steps: int, frames: int
                    ) -> tuple[G, dict[str, Any]]:
    """The groups of the fine-tuning run at working point ``(light, dbar)`` (light scale, d-bar in network px) with
    training ``seed`` for ``steps`` steps, and the plan it fine-tunes (:func:`gimbal.planning.plan.plan` at
    :func:`gimbal.planning.plan.ebar_at_light` and the point's d-bar): :func:`cell_config` at the point, the planned exposures fixed
    (:func:`fixed_schedule`), ``train.steps = steps``. The run starts from ``plan["merge_model"]["path"]``.

    Raises:
        ParamError: ``steps < 1``; :class:`gimbal.planning.plan.PlanError` for a point outside the grid.
    """
    if steps < 1:
        raise ParamError(f"fig9: the fine-tuning needs finetune_steps >= 1, got {steps}")
    cell = cell_config(cfg, light, dbar, seed, frames)
    planned = plan(grid, ebar_at_light(grid, light), blur_diameter_px(cell.augment, frames), cell.sensor.spec())
    run = fixed_schedule(cell, planned["schedule"]["durations_us"])
    run = dataclasses.replace(run, train=dataclasses.replace(run.train, steps=int(steps)))  # type: ignore[arg-type]
    return run, planned
