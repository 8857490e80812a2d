"""The generated paper report: Table 3 effects from paired margins, worked out by hand on a small eval.json."""

from __future__ import annotations

import pytest

from gimbal.evaluation.evaluate import timing_split
from gimbal.evaluation.report import Scale, paper_report, same_sign, table3, timing_split_sentence


def _m(psnr: float, lo: float, hi: float) -> dict[str, float]:
    return {"psnr": psnr, "psnr_lo": lo, "psnr_hi": hi, "ssim": 0.8, "ssim_lo": 0.7, "ssim_hi": 0.9}


EV = {
    "clips": 12,
    "gimbal": _m(30.0, 29.0, 31.0),
    "gimbal_uniform": _m(27.0, 26.0, 28.0),
    "gimbal_no_flow": _m(29.5, 28.5, 30.5),
    "gimbal_no_norm": _m(30.2, 29.2, 31.2),
    "gimbal_anneal": _m(30.5, 29.5, 31.5),
    "gimbal_anneal_no_flow": _m(30.2, 29.2, 31.2),
    "kpn": _m(26.0, 25.0, 27.0),
    "deblurgan": _m(20.0, 19.0, 21.0),
    "full_exposure": _m(20.1, 19.1, 21.1),
    "middle_frame": _m(25.0, 24.0, 26.0),
    "margins": {
        "gimbal-gimbal_uniform": _m(3.0, 2.0, 4.0),
        "gimbal-gimbal_no_flow": _m(0.5, 0.1, 0.9),
        "gimbal-gimbal_no_norm": _m(-0.2, -0.6, 0.1),
        "gimbal-gimbal_anneal": _m(-0.5, -1.0, -0.2),
        "gimbal_anneal-gimbal_anneal_no_flow": _m(0.3, -0.1, 0.7),
    },
}


def test_effects_are_with_minus_without_beside_the_papers() -> None:
    t = table3(EV)
    # removing a component: effect = full - ablated; paper Table 3: 31.42 - 28.72 = 2.70, 31.42 - 30.62 = 0.80
    uniform = t["gimbal_uniform"]
    assert uniform["effect"] == 3.0 and (uniform["effect_lo"], uniform["effect_hi"]) == (2.0, 4.0)
    assert t["gimbal_uniform"]["paper_effect"] == pytest.approx(2.70)
    assert t["gimbal_no_flow"]["paper_effect"] == pytest.approx(0.80)
    assert t["gimbal_no_norm"]["paper_effect"] == pytest.approx(0.46)
    # the annealed-loss variant adds the component: effect = variant - full = +0.5, interval [+0.2, +1.0]
    assert t["gimbal_anneal"]["effect"] == 0.5
    assert (t["gimbal_anneal"]["effect_lo"], t["gimbal_anneal"]["effect_hi"]) == (0.2, 1.0)
    assert t["gimbal_anneal"]["paper_effect"] == pytest.approx(0.24)  # 31.42 - 31.18
    assert t["gimbal"]["psnr"] == 30.0 and t["gimbal"]["paper_psnr"] == 31.42
    # the flow ablation under the annealed loss is paired with the annealed model, not with our default
    flow = t["gimbal_anneal_no_flow"]
    assert (flow["base"], flow["effect"], flow["effect_lo"], flow["effect_hi"]) == ("gimbal_anneal", 0.3, -0.1, 0.7)
    assert flow["paper_effect"] == pytest.approx(0.80)


def test_report_lists_every_row_and_flags_sign_and_uncertain_effects() -> None:
    text = paper_report(EV)
    assert "bootstrap over 12 test clips (resampled as if independent)" in text  # an eval.json without videos
    row = {line.split(" | ")[0].lstrip("| "): line for line in text.splitlines() if line.startswith("| ")}
    assert "-0.20 [-0.60, +0.10] (interval spans 0)" in row["exposure normalization (eq. 14)"]
    # the sign column is decided by the interval: -0.20 [-0.60, +0.10] against the paper's +0.46 is undecided, not
    # "no"; +0.30 [-0.10, +0.70] against +0.80 is undecided, not "yes"
    assert row["exposure normalization (eq. 14)"].endswith("| undecided (interval spans 0) |")
    anneal_flow = row["flow network, under the annealed loss (the paper's condition)"]
    assert "against `gimbal_anneal`" in anneal_flow and anneal_flow.endswith("| undecided (interval spans 0) |")
    assert row["flow network, without the annealed loss"].endswith("| yes |")  # +0.50 [+0.10, +0.90]
    assert row["annealed loss (eq. 18)"].endswith("| yes |")  # +0.50 [+0.20, +1.00] against +0.24
    assert "not reproduced" in row["analysis-synthesis pair (Kaufman & Fattal)"]
    assert "30.00 [29.00, 31.00]" in row["ours, learned exposures"] and "31.42" in row["ours, learned exposures"]


def test_report_says_the_intervals_resample_videos_under_every_table() -> None:
    text = paper_report({**EV, "videos": 5, "resampled": "videos"})
    note = "95% interval, bootstrap over 5 source videos (12 test clips; all the clips of a video drawn together)"
    assert text.count(note) == 3  # the header, under Table 1, under Table 3
    assert "resampled as if independent" not in text
    lines = text.splitlines()
    for heading in ("## Table 1: methods", "## Table 3: ablations"):  # the note follows the table
        start = lines.index(heading)
        table_end = next(i for i in range(start + 3, len(lines)) if lines[i - 1].startswith("|")
                         and not lines[i].startswith("|"))
        assert note in lines[table_end + 1], heading


def test_report_states_every_models_working_point() -> None:
    wp = {"test": {"e_bar": 1423.81, "d_bar_px": 1.42, "window_frames": 241, "content_motion_px": 17.37,
                   "content_flow_px": 18.6, "by_video": {"bikes": {"content_motion_px": 12.1, "content_flow_px": 22.0},
                                                        "flight_cell": {"content_motion_px": 35.4,
                                                                        "content_flow_px": 24.6}}},
          "models": {"gimbal": {"e_bar": 1423.81, "d_bar_px": 1.42, "window_frames": 241},
                     "deblurgan": {"e_bar": 1423.81, "d_bar_px": 1.42, "window_frames": 241}},
          "authors": {"released_training": {"d_bar_px": 3.88, "window_frames": 121},
                      "paper_window": {"d_bar_px": 5.68, "window_frames": 241}}}
    text = paper_report({**EV, "working_point": wp})
    row = {line.split(" | ")[0].lstrip("| "): line for line in text.splitlines() if line.startswith("| ")}
    assert row["`gimbal`"] == "| `gimbal` | 1424 | 1.42 | 241 |" and row["`deblurgan`"] == row["`gimbal`"].replace(
        "gimbal", "deblurgan")
    assert row["the test scenes (mean over clips)"].endswith("| 1424 | 1.42 | 241 | 17.37 | 18.60 |")
    assert row["`flight_cell`"] == "| `flight_cell` | | | | 35.40 | 24.60 |"
    assert "3.88 px over 121 frames (their released training); 5.68 px over 241 frames (the paper text)" in text
    assert "own motion (global path) is 12.2 times the shake's d-bar" in text  # 17.37 / 1.42
    table_rows = [line for line in text.splitlines() if line.startswith("| `")]
    assert table_rows[:2] == [row["`gimbal`"], row["`deblurgan`"]]  # the table of methods' order
    assert "## Working point" not in paper_report(EV)


def test_report_shows_each_models_liveness_beside_its_psnr() -> None:
    ev = EV
    train = {"gimbal": {"selected_step": 300, "liveness": {"kpn_dead": 0.25, "kpn_last_dead": 1.0,
                                                           "kernel_spatial": 0.0, "kernel_input": 0.0,
                                                           "flow_dead": 0.5, "flow_last_dead": 0.9,
                                                           "flow_shift_gain": 0.42, "flow_alignment": 0.64}},
             "deblurgan": {"selected_step": 50, "val_dead": 0.125, "val_residual": 0.031,
                           "val_residual_sensitivity": 0.5}}
    report = paper_report(ev, train=train)
    row = next(line for line in report.splitlines() if line.startswith("| `gimbal` |"))
    assert row == (f"| `gimbal` | {ev['gimbal']['psnr']:.2f} | 300 | 25 % / 100 % | 0.000 | 0.000 | 50 % | 0.42 | 0.64 |")
    single = next(line for line in report.splitlines() if line.startswith("| `deblurgan` |"))
    assert "| 50 | 12 % | 0.031 | 0.50 |" in single
    assert "Liveness" not in paper_report(ev)


def test_same_sign_needs_an_interval_that_excludes_zero() -> None:
    assert same_sign(0.1, 0.9, 0.8) == "yes"
    assert same_sign(-0.9, -0.1, 0.8) == "**no**"
    assert same_sign(-0.1, 0.9, 0.8) == same_sign(-0.9, 0.1, 0.8) == "undecided (interval spans 0)"
    assert same_sign(-0.9, -0.1, -0.3) == "yes" and same_sign(0.1, 0.9, None) == "-"


def _split(total: tuple[float, float, float], timing: tuple[float, float, float],
           lengths: tuple[float, float, float]) -> dict[str, dict[str, float]]:
    margins = {"gimbal-gimbal_uniform": _m(*total), "gimbal_uniform_centred-gimbal_uniform": _m(*timing),
               "gimbal-gimbal_uniform_centred": _m(*lengths)}
    return timing_split(margins)


def test_timing_split_pairs_and_is_absent_without_the_control() -> None:
    split = _split((1.0, 0.5, 1.5), (0.2, -0.1, 0.5), (0.8, 0.4, 1.2))
    assert [(k, v["pair"]) for k, v in split.items()] == [
        ("total", "gimbal-gimbal_uniform"), ("timing", "gimbal_uniform_centred-gimbal_uniform"),
        ("exposure_lengths", "gimbal-gimbal_uniform_centred")]
    assert split["timing"]["psnr_lo"] == -0.1
    assert timing_split({"gimbal-gimbal_uniform": _m(1.0, 0.5, 1.5)}) == {}


def test_timing_split_sentence_says_what_the_numbers_show() -> None:
    lengths = timing_split_sentence(_split((1.0, 0.5, 1.5), (0.2, -0.1, 0.5), (0.8, 0.4, 1.2)))
    assert "+0.20 dB [-0.10, +0.50], not distinguishable from 0" in lengths
    assert "comes from the learned exposure lengths, not from the timing" in lengths
    timing = timing_split_sentence(_split((1.0, 0.5, 1.5), (0.9, 0.6, 1.2), (0.1, -0.2, 0.4)))
    assert "is the timing of the reference exposure" in timing and "add nothing measurable." in timing
    both = timing_split_sentence(_split((1.0, 0.5, 1.5), (0.4, 0.1, 0.7), (0.6, 0.3, 0.9)))
    assert "both parts contribute: timing 40 % of the total" in both
    neither = timing_split_sentence(_split((0.1, -0.3, 0.5), (0.05, -0.2, 0.3), (0.05, -0.2, 0.3)))
    assert "Neither part is distinguishable from 0" in neither
    loses = timing_split_sentence(_split((-0.5, -0.9, -0.1), (0.1, -0.2, 0.4), (-0.6, -1.0, -0.2)))
    assert "the exposure lengths lose against the uniform schedule" in loses
    late = timing_split_sentence(_split((-0.5, -0.9, -0.1), (-0.6, -1.0, -0.2), (0.1, -0.2, 0.4)))
    assert "So the timing of the reference exposure loses against the uniform schedule" in late


def test_report_shows_the_split_only_with_the_timing_control() -> None:
    margins = {**EV["margins"], "gimbal_uniform_centred-gimbal_uniform": _m(1.0, 0.6, 1.4),
               "gimbal-gimbal_uniform_centred": _m(2.0, 1.5, 2.5)}
    ev = {**EV, "gimbal_uniform_centred": _m(28.0, 27.0, 29.0), "margins": margins,
          "timing_split": timing_split(margins)}
    text = paper_report(ev)
    assert "| timing: centred - uniform | `gimbal_uniform_centred-gimbal_uniform` | +1.00 [+0.60, +1.40] |" in text
    assert "both parts contribute: timing 33 % of the total" in text  # 1.0 of 3.0
    assert "28.00 [27.00, 29.00]" in text  # its Table 1 row
    assert "Timing or exposure lengths" not in paper_report(EV)


def test_report_names_the_runs_scale() -> None:
    """A medium-tier run (64 px crops, the paper's widths, bf16) must not be described as the embedded default."""
    embedded = paper_report(EV)
    assert "reproduced at the embedded scale" in embedded and "32 px training crops" in embedded
    medium = paper_report(EV, scale=Scale(64, 64, 4, 600, "bf16"))
    head = medium.split("## Table 1")[0]
    assert "64 px crops with the paper's widths" in head and "64 px training crops" in head
    assert "600 CPU steps (bf16)" in head and "32 px" not in head and "small networks" not in head


def test_another_tier_is_shown_beside_this_run() -> None:
    """Each method and paired margin both runs scored appears once, with this run's number before the other's."""
    other = {**EV, "gimbal": {**EV["gimbal"], "psnr": 12.34}}
    text = paper_report(EV, other=("medium", other, "medium.md"))
    section = text.split("## Beside the medium tier")[1]
    assert "[its report](medium.md)" in section
    row = next(line for line in section.splitlines() if line.startswith("| ours, learned exposures"))
    assert row.index(f"{EV['gimbal']['psnr']:.2f}") < row.index("12.34")
    assert "## Beside" not in paper_report(EV)
