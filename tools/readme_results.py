"""Rewrite the README's results block from the committed run's outputs.

    python tools/readme_results.py            # rewrites README.md in place from metrics/ and exposures/

Reads metrics/eval.json (means, 95% bootstrap intervals over the test clips' source videos, paired margins,
Table 3), metrics/eval_by_source.json, metrics/train_*.json (each model's liveness) and exposures/gimbal.json,
and replaces the text between the
``<!-- results:start -->`` and ``<!-- results:end -->`` markers, so every figure there is the committed
run's (run it after `dvc repro`, commit README with dvc.lock).
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from gimbal import methods as table  # noqa: E402
from gimbal.evaluation.report import interval_note, liveness_md, table3_md, timing_split_sentence  # noqa: E402  (the report's formatters)

ROWS = {n: m.row if m.kind == "floor" else f"{m.row} (`{n}`)" for n, m in table.TABLE.items() if m.row is not None}
"""Method -> its row label: the Table 1 rows of the table of methods, in its order."""
ASKED = {"gimbal-gimbal_uniform": 1.0, "gimbal-middle_frame": 1.0, "gimbal-kpn": 1.0, "kpn-full_exposure": 1.0,
         "deblurgan-full_exposure": 0.5}
"""The margin each claim asks for, in dB (a margin not listed: above 0)."""
MARGINS = {f"{a}-{b}": (f"{table.label(a)} - {table.label(b)}", ASKED.get(f"{a}-{b}", 0.0))
           for n, m in table.TABLE.items() if m.row is not None for a, b in m.margins}
"""Margin -> (label, the margin asked for in dB): the paired comparisons of the Table 1 methods, in table order
(Table 3's are in its own table)."""
START, END = "<!-- results:start -->", "<!-- results:end -->"


def block() -> str:
    ev = json.loads((REPO / "metrics/eval.json").read_text())
    src = json.loads((REPO / "metrics/eval_by_source.json").read_text())
    sched = json.loads((REPO / "exposures/gimbal.json").read_text())
    n = ev["clips"]
    per_clip = (REPO / "plots/eval_per_clip.csv").read_text().splitlines()[1:]
    counts = {kind: len({line.split(",")[0] for line in per_clip if line.split(",")[2] == kind}) for kind in src}
    lines = [
        f"| method | PSNR [95% CI] | SSIM [95% CI] | real ({counts.get('real', 0)} clips) | "
        f"synthetic ({counts.get('synthetic', 0)} clips) |",
        "|---|---|---|---|---|",
    ]
    for method, label in ((k, v) for k, v in ROWS.items() if k in ev):
        m = ev[method]
        p = f"{m['psnr']:.2f} [{m['psnr_lo']:.2f}, {m['psnr_hi']:.2f}]"
        s = f"{m['ssim']:.3f} [{m['ssim_lo']:.3f}, {m['ssim_hi']:.3f}]"
        if method == "gimbal":
            p, s = f"**{p}**", f"**{s}**"
        by_kind = " | ".join(f"{src[k][method]['psnr']:.2f}" if method in src.get(k, {}) else "-"
                             for k in ("real", "synthetic"))
        lines.append(f"| {label} | {p} | {s} | {by_kind} |")
    lines += ["", f"{interval_note(ev)}.", "",
              f"Paired differences over the same {n} test clips (the same bootstrap, of the mean difference):",
              "", "| margin | PSNR dB [95% CI] | SSIM [95% CI] | asked for | "
              "holds (lower end above 0 and mean >= asked) |",
              "|---|---|---|---|---|"]
    for key, (label, need) in ((k, v) for k, v in MARGINS.items() if k in ev["margins"]):
        m = ev["margins"][key]
        holds = m["psnr"] >= need and m["psnr_lo"] > 0
        lines.append(f"| {label} | {m['psnr']:+.2f} [{m['psnr_lo']:+.2f}, {m['psnr_hi']:+.2f}] | "
                     f"{m['ssim']:+.3f} [{m['ssim_lo']:+.3f}, {m['ssim_hi']:+.3f}] | "
                     f"{f'>= +{need:.1f} dB' if need else 'above 0'} | {'yes' if holds else '**no**'} |")
    if ev.get("timing_split"):  # its rows are in the margins above; the report has the table
        lines += ["", timing_split_sentence(ev["timing_split"])]
    lines += ["", "Paper Table 3 (`metrics/table3.json`, `reports/paper.md`): each component's effect, with - without, "
              "paired over the same clips:", "", *table3_md(ev)]
    train = {p.stem[len("train_"):]: json.loads(p.read_text()) for p in sorted((REPO / "metrics").glob("train_*.json"))}
    burst = {k: v for k, v in train.items() if "liveness" in v}
    lines += ["", "Do the merge networks learn? Liveness of each burst model at the checkpoint it kept (the report has "
              "the single-image baselines' too; 0 = one fixed filter for every pixel of every burst):", "",
              *liveness_md(ev, burst)]
    d = [round(x) for x in sched["durations_us"]]
    ref_start = sched["starts_us"][len(d) // 2]
    ref_end = ref_start + sched["durations_us"][len(d) // 2]
    lines += ["", f"The learned schedule (`exposures/gimbal.json`) is {' / '.join(map(str, d))} us with "
              f"{round(sched['idle_us'])} us idle in the {sched['budget_us']:.0f} us budget "
              f"({sched['readout_us']:.0f} us readouts); the reference exposure is "
              f"[{ref_start:.0f}, {ref_end:.0f}] us."]
    wp = ev.get("working_point")
    if wp:  # (e-bar, d-bar): the paper's description of a working point, the same for every model of this run
        pts = {(round(m["e_bar"]), m["d_bar_px"]) for m in wp["models"].values()}
        if len(pts) == 1:
            (e_bar, d_bar), = pts
            where = f"e-bar = {e_bar} e-, d-bar = {d_bar:.2f} px for every model"
        else:
            where = "; ".join(f"`{k}` e-bar = {round(m['e_bar'])} e-, d-bar = {m['d_bar_px']:.2f} px"
                              for k, m in wp["models"].items())
        authors = wp["authors"]["released_training"]
        lines += ["", f"Working point (embedded tier, network pixels, {wp['models'][next(iter(wp['models']))]['window_frames']}"
                  f"-frame window): {where}; the authors' training crop gives d-bar = {authors['d_bar_px']:.2f} px "
                  f"({authors['window_frames']} frames); the test scenes' own motion over the window is "
                  f"{wp['test']['content_motion_px']:.1f} px."]
    return "\n".join(lines)


def rewrite(text: str) -> str:
    if START not in text or END not in text:
        raise SystemExit(f"README.md: markers {START} / {END} not found")
    return re.sub(re.escape(START) + r".*?" + re.escape(END), lambda _: f"{START}\n{block()}\n{END}", text, flags=re.S)


if __name__ == "__main__":
    path = REPO / "README.md"
    path.write_text(rewrite(path.read_text()))
