"""The paper's record beside ours: Table 1 and Table 3 as a generated Markdown report and a metrics file.

:func:`table3` turns ``metrics/eval.json`` (:meth:`gimbal.evaluation.evaluate.EvalResult.intervals`) into one row per
component of paper Table 3: the PSNR without it (or, for the annealed loss, with it flipped), and the
component's effect, ``with - without``, as the paired difference over the test clips with its 95% interval,
beside the paper's effect. :func:`paper_report` writes the whole report (Table 1, Table 3, what is like for
like). The rows and the paper's numbers come from the table of methods (:data:`gimbal.methods.TABLE`: each
method's Table 1 row, paper PSNR / SSIM and Table 3 component), plus the paper's rows no method here reproduces
(:data:`PAPER_ONLY`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from gimbal import methods as table

__all__ = ["PAPER_ONLY", "interval_note", "liveness_md", "paper_report", "same_sign", "table1_rows", "table3",
           "table3_md", "table3_rows", "timing_split_md", "timing_split_sentence", "working_point_md"]

FULL_MODEL = "gimbal"
"""The full model, which every Table 3 row is compared with."""

PAPER_ONLY: dict[str, tuple[str, float, str]] = {
    "analysis_synthesis": ("analysis-synthesis pair (Kaufman & Fattal)", 18.6,
                           "not reproduced: no training code was released and its weights are TensorFlow downloads"),
}
"""Rows of paper Table 1 that no method here reproduces: name -> (row, the paper's PSNR dB, why not)."""


def table1_rows() -> list[tuple[str, str, float | None, float | None, str]]:
    """The rows of Table 1: ``(name, row, paper PSNR, paper SSIM, what to say when not scored)`` of every method
    of the table of methods with a :attr:`~gimbal.methods.Method.row` and of :data:`PAPER_ONLY`; the paper's rows
    by ascending paper PSNR (as the paper lists them), then the others in table order."""
    rows = [(n, m.row, m.paper_psnr, m.paper_ssim, m.not_run or "not run")
            for n, m in table.TABLE.items() if m.row is not None]
    rows += [(n, row, psnr, None, why) for n, (row, psnr, why) in PAPER_ONLY.items()]
    return sorted(rows, key=lambda r: (r[2] is None, r[2] or 0.0))  # stable: the table's order among the others


def table3_rows() -> dict[str, tuple[str, str, bool]]:
    """Method -> (its base, the component, whether the method lacks it) for every row of paper Table 3, in table
    order (:func:`gimbal.methods.table3`). ``gimbal_anneal`` has the annealed loss that our default lacks (the
    paper's default has it), so its effect is ``variant - gimbal``; the others' ``base - variant`` (the flow ablation
    under the annealed loss: ``gimbal_anneal - gimbal_anneal_no_flow``)."""
    return table.table3()


def interval_note(ev: dict[str, Any]) -> str:
    """What the intervals of ``metrics/eval.json`` resample, for the line under a table: its source videos (all the
    clips of a video drawn together) or, where the test clips come from a single video or the file predates it, the
    clips as if independent."""
    n = ev.get("clips")
    if ev.get("resampled") == "videos":
        return (f"95% interval, bootstrap over {ev['videos']} source videos ({n} test clips; all the clips of a video "
                "drawn together)")
    return f"95% interval, bootstrap over {n} test clips (resampled as if independent)"


def _ci(m: dict[str, float]) -> str:
    """``mean [lo, hi]`` of ``m["psnr"]`` (dB, two decimals)."""
    return f"{m['psnr']:.2f} [{m['psnr_lo']:.2f}, {m['psnr_hi']:.2f}]"


def table3(ev: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Paper Table 3 from ``metrics/eval.json``: ``{variant: {"component", "psnr", "psnr_lo", "psnr_hi", "effect",
    "effect_lo", "effect_hi", "paper_psnr", "paper_effect"}}`` in dB, for each of :func:`table3_rows` present,
    plus ``gimbal`` (the full model). ``effect`` is the component's paired difference ``with - without`` over
    the test clips (from ``ev["margins"]["<base>-<variant>"]``, negated for a variant that adds the component);
    ``base`` is the model the row differs from by the component alone.
    Empty when the full model was not scored (an evaluation of some methods only).
    """
    if FULL_MODEL not in ev:
        return {}
    full, full_paper = ev[FULL_MODEL], table.TABLE[FULL_MODEL].paper_psnr
    out: dict[str, dict[str, Any]] = {FULL_MODEL: {"component": "none (the full model)", "psnr": full["psnr"],
                                                   "psnr_lo": full["psnr_lo"], "psnr_hi": full["psnr_hi"],
                                                   "paper_psnr": full_paper}}
    for variant, (base, component, lacks) in table3_rows().items():
        margin = ev.get("margins", {}).get(f"{base}-{variant}")
        if variant not in ev or margin is None:
            continue
        sign = 1.0 if lacks else -1.0
        lo, hi = sorted((sign * margin["psnr_lo"], sign * margin["psnr_hi"]))
        paper = table.TABLE[variant].paper_psnr
        paper_effect = None if paper is None or full_paper is None else round(full_paper - paper, 2)
        out[variant] = {"component": component, "base": base, "lacks": lacks, "psnr": ev[variant]["psnr"],
                        "psnr_lo": ev[variant]["psnr_lo"], "psnr_hi": ev[variant]["psnr_hi"],
                        "effect": round(sign * margin["psnr"], 4), "effect_lo": lo, "effect_hi": hi,
                        "paper_psnr": paper, "paper_effect": paper_effect}
    return out


def same_sign(lo: float, hi: float, paper_effect: float | None) -> str:
    """The "same sign as the paper" cell of an effect with 95% interval ``[lo, hi]``, decided by the interval:
    ``yes`` / ``**no**`` only when it excludes 0, else ``undecided (interval spans 0)``; ``-`` without a paper
    effect."""
    if paper_effect is None or paper_effect == 0:
        return "-"
    if lo <= 0 <= hi:
        return "undecided (interval spans 0)"
    return "yes" if (lo > 0) == (paper_effect > 0) else "**no**"


def _verdict(m: dict[str, float]) -> str:
    return "above 0" if m["psnr_lo"] > 0 else "below 0" if m["psnr_hi"] < 0 else "not distinguishable from 0"


def _sign(m: dict[str, float]) -> int:
    return 1 if m["psnr_lo"] > 0 else -1 if m["psnr_hi"] < 0 else 0


def timing_split_sentence(split: dict[str, dict[str, float]]) -> str:
    """What the split of ours - uniform (``ev["timing_split"]``, :func:`gimbal.evaluation.evaluate.timing_split`) shows,
    in plain words, decided by the intervals (an interval that holds 0 shows no effect): the two parts, then which of
    them the gain (or loss) comes from."""
    total, timing, lengths = split["total"], split["timing"], split["exposure_lengths"]

    def said(m: dict[str, float]) -> str:
        return f"{m['psnr']:+.2f} dB [{m['psnr_lo']:+.2f}, {m['psnr_hi']:+.2f}], {_verdict(m)}"

    head = (f"Ours - uniform is {said(total)}. Of it, timing (the uniform burst with its reference exposure centred on "
            f"the ground-truth instant T/2, minus the uniform burst) is {said(timing)}, and the exposure lengths (ours "
            f"minus the centred equal burst) are {said(lengths)}.")
    t, e = _sign(timing), _sign(lengths)
    if t == 0 and e == 0:
        tail = ("Neither part is distinguishable from 0 with these test clips, so the split does not say where the "
                "difference from the uniform schedule comes from.")
    elif t > 0 and e <= 0:
        tail = ("So the measurable gain over the uniform schedule is the timing of the reference exposure: moving it onto "
                "T/2 does it, and the learned exposure lengths add nothing measurable" +
                (" (they do worse than the centred equal ones)." if e < 0 else "."))
    elif e > 0 and t <= 0:
        tail = ("So the measurable gain over the uniform schedule comes from the learned exposure lengths, not from the "
                "timing of the reference exposure" + (" (centring it alone loses)." if t < 0 else "."))
    elif t > 0 and e > 0:
        share = timing["psnr"] / total["psnr"] if total["psnr"] else float("nan")
        tail = (f"So both parts contribute: timing {100 * share:.0f} % of the total, the learned exposure lengths the "
                "rest.")
    else:  # one part below 0 and the other not above it
        worse = [name for name, s in (("the timing of the reference exposure", t), ("the exposure lengths", e))
                 if s < 0]
        verb = "loses" if worse == ["the timing of the reference exposure"] else "lose"
        tail = f"So {' and '.join(worse)} {verb} against the uniform schedule here."
    return f"{head} {tail}"


def timing_split_md(ev: dict[str, Any]) -> list[str]:
    """Markdown lines: the split of ours - uniform (``ev["timing_split"]``) with intervals and what it shows; empty
    when the file has none (the timing control was not scored)."""
    split = ev.get("timing_split")
    if not split:
        return []
    what = {"total": "ours - uniform", "timing": "timing: centred - uniform",
            "exposure_lengths": "exposure lengths: ours - centred"}
    lines = ["| part | pair | PSNR dB [95% CI] | SSIM [95% CI] |", "|---|---|---|---|"]
    lines += [f"| {what[k]} | `{m['pair']}` | {_signed(m)} | "
              f"{m['ssim']:+.3f} [{m['ssim_lo']:+.3f}, {m['ssim_hi']:+.3f}] |" for k, m in split.items() if k in what]
    return [*lines, "", timing_split_sentence(split)]


def table3_md(ev: dict[str, Any]) -> list[str]:
    """Markdown lines of Table 3 (:func:`table3`) beside the paper's: one row per component, the full model last."""
    rows = table3(ev)
    lines = ["| component | our model | PSNR dB [95% CI] | its effect, with - without [95% CI] | paper: PSNR without | "
             "paper: effect | same sign |", "|---|---|---|---|---|---|---|"]
    for variant, r in rows.items():
        if variant == FULL_MODEL:
            continue
        against = "" if r.get("base", FULL_MODEL) == FULL_MODEL else f" against `{r['base']}`"
        model = (f"without it (`{variant}`{against})" if r["lacks"]
                 else f"with it (`{variant}`; off by default here)")
        paper_effect = r["paper_effect"]
        same = same_sign(r["effect_lo"], r["effect_hi"], paper_effect)
        sure = "" if r["effect_lo"] > 0 or r["effect_hi"] < 0 else " (interval spans 0)"
        lines.append(f"| {r['component']} | {model} | {_ci(r)} | "
                     f"{r['effect']:+.2f} [{r['effect_lo']:+.2f}, {r['effect_hi']:+.2f}]{sure} | "
                     f"{_num(r['paper_psnr'], '.2f')} | {_num(paper_effect, '+.2f')} | {same} |")
    g = rows.get(FULL_MODEL)
    scored = _ci(g) if g is not None else "not run"
    lines.append(f"| none | the full model (`{FULL_MODEL}`) | {scored} | | "
                 f"{_num(table.TABLE[FULL_MODEL].paper_psnr, '.2f')} | | |")
    return lines


def _table1_md(ev: dict[str, Any]) -> list[str]:
    lines = ["| method | PSNR dB [95% CI] | SSIM [95% CI] | paper PSNR | paper SSIM |", "|---|---|---|---|---|"]
    for method, label, paper_psnr, paper_ssim, not_run in table1_rows():
        paper = (_num(paper_psnr, ".2f"), _num(paper_ssim, ".4f"))
        if method in ev:
            m = ev[method]
            ssim = f"{m['ssim']:.3f} [{m['ssim_lo']:.3f}, {m['ssim_hi']:.3f}]"
            lines.append(f"| {label} | {_ci(m)} | {ssim} | {paper[0]} | {paper[1]} |")
        else:
            lines.append(f"| {label} | {not_run} | | {paper[0]} | {paper[1]} |")
    return lines


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.0f} %"


def _num(value: float | None, fmt: str = ".3f") -> str:
    return "-" if value is None else format(value, fmt)


def liveness_md(ev: dict[str, Any], train: dict[str, dict[str, Any]]) -> list[str]:
    """Markdown lines: every trained model's test PSNR beside its liveness at the selected checkpoint.

    ``train``: method -> its training metrics (``metrics/train_<method>.json``): the burst models' ``liveness``
    (:func:`gimbal.models.liveness.gimbal_liveness`), the single-image baselines' ``val_dead``, ``val_residual``,
    ``val_residual_sensitivity`` (:func:`gimbal.models.liveness.restorer_liveness`).
    """
    lines = ["| model | test PSNR dB | selected step | dead ReLU units (KPN / last layer) | kernels vary over the "
             "frame | kernels vary with the burst | flow: dead units | flow follows a known shift (1 = exactly) | "
             "flow-warped frames' misalignment (1 = none removed) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for method, m in train.items():
        psnr = f"{ev[method]['psnr']:.2f}" if method in ev else "-"
        live = m.get("liveness")
        if live is not None:
            lines.append(f"| `{method}` | {psnr} | {m.get('selected_step', '-')} | {_pct(live.get('kpn_dead'))} / "
                         f"{_pct(live.get('kpn_last_dead'))} | {_num(live.get('kernel_spatial'))} | "
                         f"{_num(live.get('kernel_input'))} | {_pct(live.get('flow_dead'))} | "
                         f"{_num(live.get('flow_shift_gain'), '.2f')} | {_num(live.get('flow_alignment'), '.2f')} |")
    single = {k: m for k, m in train.items() if "val_dead" in m}
    if single:
        lines += ["", "| single-image model | test PSNR dB | selected step | dead ReLU units | change of its input "
                  "(relative) | the change responds to the input (1 = fully) |", "|---|---|---|---|---|---|"]
        for method, m in single.items():
            psnr = f"{ev[method]['psnr']:.2f}" if method in ev else "-"
            lines.append(f"| `{method}` | {psnr} | {m.get('selected_step', '-')} | {_pct(m['val_dead'])} | "
                         f"{_num(m.get('val_residual'))} | {_num(m.get('val_residual_sensitivity'), '.2f')} |")
    return lines


def working_point_md(ev: dict[str, Any]) -> list[str]:
    """Markdown lines: the (e-bar, d-bar) each trained model was trained at and the test scenes' with the content's
    own motion (``ev["working_point"]``, :func:`gimbal.evaluation.evaluate.working_point`); empty when the file has
    none."""
    wp = ev.get("working_point")
    if not wp:
        return []
    test = wp["test"]
    lines = ["| model | e-bar (e-) | d-bar (network px) | frames spanning T |", "|---|---|---|---|"]
    order = [m for m in table.trained() if m in wp["models"]] + sorted(set(wp["models"]) - set(table.trained()))
    lines += [f"| `{m}` | {p['e_bar']:.0f} | {_num(p['d_bar_px'], '.2f')} | {p['window_frames']} |"
              for m, p in ((m, wp["models"][m]) for m in order)]
    lines += ["", "| scenes | e-bar (e-) | d-bar (network px) | frames spanning T | content motion: global path "
              "diameter (network px) | content motion: dense displacement, first to last frame (network px) |",
              "|---|---|---|---|---|---|",
              f"| the test scenes (mean over clips) | {test['e_bar']:.0f} | {_num(test['d_bar_px'], '.2f')} | "
              f"{test['window_frames']} | {test['content_motion_px']:.2f} | {test['content_flow_px']:.2f} |"]
    lines += [f"| `{v}` | | | | {m['content_motion_px']:.2f} | {m['content_flow_px']:.2f} |"
              for v, m in test.get("by_video", {}).items()]
    if test["d_bar_px"]:
        lines += ["", f"Over the frames spanning T the test videos' own motion (global path) is "
                  f"{test['content_motion_px'] / test['d_bar_px']:.1f} times the shake's d-bar."]
    authors = wp.get("authors", {})
    if authors:
        said = "; ".join(f"{authors[k]['d_bar_px']:.2f} px over {authors[k]['window_frames']} frames ({what})"
                         for k, what in (("released_training", "their released training"),
                                         ("paper_window", "the paper text")) if k in authors)
        lines += ["", f"The authors' crop (512 -> 256 -> 128) with the same shake gives d-bar {said}."]
    return lines


@dataclasses.dataclass(frozen=True)
class Scale:
    """What sets a run's scale apart from the paper's: the network crop (px), the KPN's base channels and depth, the
    training steps and the networks' precision (params ``augment.out_size``, ``model.kpn_base_channels``,
    ``model.kpn_depth``, ``train.steps``, ``train.precision``). The default is the embedded default's."""

    out_size: int = 32
    kpn_base_channels: int = 8
    kpn_depth: int = 2
    steps: int = 400
    precision: str = "fp32"

    def name(self) -> str:
        """``the embedded scale`` for the embedded default's sizes, else e.g. ``64 px crops with the paper's
        widths``."""
        paper_widths = (self.kpn_base_channels, self.kpn_depth) == (64, 4)
        if (self.out_size, self.kpn_base_channels, self.kpn_depth) == (32, 8, 2):
            return "the embedded scale"
        return f"{self.out_size} px crops" + (" with the paper's widths" if paper_widths else "")

    def differs(self) -> str:
        """The sentence's list of what is not the authors' scale."""
        steps = f"{self.steps} CPU steps ({self.precision}) instead of ~1e6 GPU steps"
        if (self.kpn_base_channels, self.kpn_depth) == (64, 4):
            return f"{self.out_size} px training crops (the paper's: 128; the network widths are the paper's), {steps}"
        return (f"small networks (KPN {self.kpn_base_channels} base channels, depth {self.kpn_depth}; the paper's: "
                f"64, 4), {self.out_size} px training crops (the paper's: 128), {steps}")


def paper_report(ev: dict[str, Any], fig9_report: str | None = None,
                 train: dict[str, dict[str, Any]] | None = None, scale: Scale = Scale(),
                 source: str = "metrics/eval.json", other: tuple[str, dict[str, Any], str] | None = None) -> str:
    """The Markdown report: Table 1 and Table 3 of ``metrics/eval.json`` beside the paper's, with intervals,
    and what is like for like. ``fig9_report``: the relative path of the Fig. 9 report, linked when given.
    ``train``: method -> training metrics, for the liveness table (:func:`liveness_md`). ``scale``: the run's
    sizes, named in the title and in what is like for like. ``source``: the evaluation's file, named. ``other``:
    ``(name, its eval.json, the link to its report)`` of another tier, shown beside (:func:`other_tier_md`)."""
    lines = [
        f"# Digital Gimbal: the paper's tables, reproduced at {scale.name()}",
        "",
        f"Generated by the `report` stage from `{source}` (do not edit). Intervals (percentile method):",
        f"{interval_note(ev)}; differences are paired over the same clips. One training seed.",
        "",
        "**What is like for like.** The target (the sRGB middle frame), the display curve (the released sRGB-like",
        "curve), the blur model (the released shake with crop-scaled intrinsics), the camera (JetCam19M) and the",
        f"timing (T = 3 ms, 400 us readouts) are the authors'. The scale is not: {scale.differs()}, and a test",
        "set of synthetic flights over scikit-image photos plus two real videos instead of the authors' YouTube",
        "drone clips. So absolute PSNRs are not comparable; the ordering and the sign of each effect are what this",
        "report compares.",
        "",
        "## Table 1: methods",
        "",
        *_table1_md(ev),
        "",
        f"{interval_note(ev)}.",
        "",
        *(["### Timing or exposure lengths? The split of ours - uniform", "",
           "The uniform schedule's reference (middle) exposure is not centred on the ground-truth instant T/2, the",
           "learned one's can be. The timing control keeps the uniform schedule's equal exposures, budget and readouts",
           "but puts the idle time first so that its reference exposure is centred on T/2 (so its exposures are",
           "shorter); it splits ours - uniform into timing and exposure lengths, each paired over the same clips.", "",
           *timing_split_md(ev), ""] if ev.get("timing_split") else []),
        "## Table 3: ablations",
        "",
        "Each row removes one component of the full model and retrains it with everything else equal. The",
        "annealed loss is off in our default (a short run cannot afford its crossover, README) and on in the",
        "paper's, so its row trains the model *with* it; the flow network is ablated both without the annealed",
        "loss (against our default) and with it (against the annealed model: the paper's condition). The effect",
        "column is always with - without; the sign column compares with the paper's only where the interval",
        "excludes 0.",
        "",
        *table3_md(ev),
        "",
        f"{interval_note(ev)}; each effect paired over the same clips.",
    ]
    if ev.get("working_point"):
        lines += ["", "## Working point: (e-bar, d-bar)", "",
                  "As the paper's Fig. 9 describes a result: e-bar, the mean photo-electrons a pixel collects at full",
                  "exposure (one exposure of the whole budget T) over the test scenes; d-bar, the mean blur diameter",
                  "of the camera shake at full exposure (the largest distance between two positions of the principal",
                  "point over the frames spanning T) in the network's pixels. Beside them, the other blur the schedule",
                  "trades against: the test videos' own motion over the same frames, without the shake, in network",
                  "pixels: the diameter of the path of the content's global translation (phase correlation; the same",
                  "definition as d-bar) and the mean length of its dense displacement from the first frame to the last",
                  "(optical flow; it counts moving objects, and reads occlusions as motion).", "",
                  *working_point_md(ev)]
    if train:
        lines += ["", "## Do the networks learn? Liveness at the selected checkpoint", "",
                  "Measured on the first val batch at the checkpoint each training kept. A dead ReLU unit outputs 0",
                  "for every input; a KPN whose units are all dead predicts the same kernels for every pixel of every",
                  "burst (one fixed filter). Kernel variation: the relative norm of the kernels' change over the frame",
                  "and between two different bursts (0 = fixed). Flow: the mean change of the predicted flow when the",
                  "non-reference frames are moved by 2 px, divided by 2.", "", *liveness_md(ev, train)]
    if other is not None:
        lines += ["", *other_tier_md(ev, *other)]
    if fig9_report:
        lines += ["", "## Fig. 9: noise x blur", "", f"See [the Fig. 9 report]({fig9_report}) (its own DVC project: "
                  "`cd sweeps/fig9 && dvc repro`)."]
    return "\n".join(lines) + "\n"


def other_tier_md(ev: dict[str, Any], name: str, other: dict[str, Any], link: str) -> list[str]:
    """Markdown lines: this run's Table 1 and Table 3 PSNRs and paired margins beside another tier's
    (``other``: its ``eval.json``; ``link``: its report), method by method, each with its 95% interval."""
    rows = [(label, method) for method, label, *_ in table1_rows() if method in ev and method in other]
    rows += [(f"`{m}`", m) for m in ("gimbal_no_flow", "gimbal_no_norm", "gimbal_anneal", "gimbal_anneal_no_flow")
             if m in ev and m in other]
    lines = [f"## Beside the {name} tier", "", f"The same methods trained and scored at the {name} tier "
             f"([its report]({link})); test PSNR dB [95% CI], one training seed each:", "",
             f"| method | this run | {name} |", "|---|---|---|"]
    lines += [f"| {label} | {_ci(ev[m])} | {_ci(other[m])} |" for label, m in rows]
    pairs = [k for k in ev.get("margins", {}) if k in other.get("margins", {})]
    lines += ["", f"| paired margin | this run | {name} |", "|---|---|---|"]
    lines += [f"| `{k}` | {_signed(ev['margins'][k])} | {_signed(other['margins'][k])} |" for k in pairs]
    return lines


def _signed(m: dict[str, float]) -> str:
    return f"{m['psnr']:+.2f} [{m['psnr_lo']:+.2f}, {m['psnr_hi']:+.2f}]"
