"""Shutter-schedule timeline (paper Fig. 3 style): open / readout / idle intervals over [0, T]."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gimbal.errors import ParamError
from gimbal.io import atomic_path

PLOT_FORMATS = {".png": "png", ".svg": "svg", ".pdf": "pdf"}
"""The file suffixes :func:`plot_schedule` writes, and the matplotlib format of each."""


def plot_format(path: str | os.PathLike[str]) -> str:
    """The format of a plot written to ``path``, from its suffix (case-insensitive); an unknown suffix is a
    ``ParamError`` naming the ones allowed (never a PNG under another name)."""
    suffix = Path(path).suffix
    fmt = PLOT_FORMATS.get(suffix.lower())
    if fmt is None:
        got = f"unknown suffix {suffix!r}" if suffix else "no suffix"
        raise ParamError(f"{os.fspath(path)}: {got}; use {', '.join(PLOT_FORMATS)}")
    return fmt


def _schedule_dict(schedule: Any) -> Mapping[str, Any]:
    if hasattr(schedule, "to_us"):
        schedule = schedule.to_us()
    elif hasattr(schedule, "schedule_us"):
        schedule = schedule.schedule_us()
    need = ("budget_us", "readout_us", "starts_us", "durations_us")
    if not isinstance(schedule, Mapping) or any(k not in schedule for k in need):
        raise ParamError(f"plot_schedule needs an Exposure, a Sensor or a dict with keys {need}")
    return schedule


def plot_schedule(
    schedules: Any,
    path: str | os.PathLike[str],
    labels: list[str] | None = None,
    title: str | None = "Exposure schedule",
) -> Path:
    """Draw one or more shutter schedules as timelines and write the figure atomically.

    Args:
        schedules: an ``Exposure``, a ``Sensor``, a ``to_us()`` dict, or a list of them (one row each).
        path: output path; its suffix picks the format (:data:`PLOT_FORMATS`: ``.png``, ``.svg``, ``.pdf``),
            any other is a ``ParamError``.
        labels: row labels (default ``"schedule k"``).
        title: figure title.
    Returns:
        ``path`` as a ``Path``.
    """
    fmt = plot_format(path)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    rows = [_schedule_dict(s) for s in (schedules if isinstance(schedules, (list, tuple)) else [schedules])]
    labels = labels or [f"schedule {k + 1}" if len(rows) > 1 else "" for k in range(len(rows))]
    if len(labels) != len(rows):
        raise ParamError(f"plot_schedule: {len(rows)} schedules but {len(labels)} labels")
    colors = {"open": "#f2b134", "readout": "#7a7a7a", "idle": "#d9d9d9"}
    fig, ax = plt.subplots(figsize=(8, 1.2 + 0.9 * len(rows)), dpi=120)
    budget = max(float(r["budget_us"]) for r in rows)
    for y, r in enumerate(reversed(rows)):
        ro = float(r["readout_us"])
        end = 0.0
        if r["starts_us"] and float(r["starts_us"][0]) > 1e-6:  # the idle time first (a centred schedule)
            ax.broken_barh([(0.0, float(r["starts_us"][0]))], (y - 0.3, 0.6), facecolors=colors["idle"], hatch="//")
        for i, (t, d) in enumerate(zip(r["starts_us"], r["durations_us"], strict=True)):
            ax.broken_barh([(t, d)], (y - 0.3, 0.6), facecolors=colors["open"], edgecolor="black", linewidth=0.6)
            ax.text(t + d / 2, y, f"{d:.0f} us", ha="center", va="center", fontsize=8)
            ax.broken_barh([(t + d, ro)], (y - 0.3, 0.6), facecolors=colors["readout"])
            ax.text(t, y + 0.33, f"t{i + 1}={t:.0f}", ha="left", va="bottom", fontsize=7)
            end = t + d + ro
        rb = float(r["budget_us"])
        if rb - end > 1e-6:
            ax.broken_barh([(end, rb - end)], (y - 0.3, 0.6), facecolors=colors["idle"], hatch="//")
    ax.axvline(budget / 2, color="tab:red", linestyle="--", linewidth=1)
    ax.set_xlim(0, budget)
    ax.set_ylim(-0.5, len(rows) - 0.3)
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels(list(reversed(labels)))
    ax.tick_params(axis="y", length=0)
    ax.set_xlabel("time [us] (dashed: ground-truth instant T/2)")
    if title:
        ax.set_title(title)
    ax.legend(
        handles=[
            Patch(facecolor=colors["open"], edgecolor="black", label="shutter open"),
            Patch(facecolor=colors["readout"], label="readout"),
            Patch(facecolor=colors["idle"], hatch="//", label="idle"),
        ],
        loc="center left",
        bbox_to_anchor=(1.01, 0.5),
        ncol=1,
        fontsize=8,
        frameon=False,
    )
    fig.tight_layout()
    out = Path(path)
    with atomic_path(out, suffix=out.suffix) as tmp:
        fig.savefig(tmp, format=fmt, bbox_inches="tight")
    plt.close(fig)
    return out
