"""The project's own commands answer their question: the fixed-exposure ablation, the summary metrics, the plots.

- ``-S model.learn_exposure=false`` trains the paper's fixed-exposure ablation: equal exposures over the whole budget,
  the schedule ``gimbal_uniform`` trains, and evaluate's ``middle_frame`` floor comes from that burst;
- ``dvc metrics show`` leads with one small flat summary; every other JSON is a plain output;
- the plots page has a few panels, each with a title in words and axis labels with units.
"""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from gimbal.data.irradiance import Scenes
from gimbal.display import Display
from gimbal.errors import ParamError
from gimbal.evaluation.evaluate import EvalResult, evaluate_methods, summary_metrics
from gimbal.metrics import psnr
from gimbal.system import GimbalSystem, load_system, middle_frame_image, save_system

REPO = Path(__file__).resolve().parents[1]

# The released timing of the synthetic experiment (DESIGN.md section 2): n = 3 exposures and 3 readouts of 400 us
# filling T = 3 ms with no idle time: 3 dt + 3 x 400 = 3000 us, so dt = 600 us; the n + 1 equal slots of the
# idle-slot schedule share the 1800 us of free time: 450 us each.
BUDGET_US, READOUT_US, N = 3000.0, 400.0, 3
WHOLE_BUDGET_US = (BUDGET_US - N * READOUT_US) / N  # 600 us
IDLE_SLOT_US = (BUDGET_US - N * READOUT_US) / (N + 1)  # 450 us


def tiny_params(**overrides: dict[str, Any]) -> dict[str, Any]:
    """params.yaml with tiny networks, and ``overrides`` merged into its groups (like ``dvc exp run -S``)."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["augment"].update(crop=32, center=16, out_size=16)
    params["model"].update(kpn_depth=1, flow_levels=2)
    params["train"].update(loader="torch", device="cpu", batch_size=2)
    for group, values in overrides.items():
        params[group].update(values)
    return params


def test_fixed_exposures_fill_the_whole_budget() -> None:
    """``model.learn_exposure: false`` with no ``exposure.init_us``: 3 x 600 us + 3 readouts = 3 ms, no idle time;
    the experiment's idle slot stays with learned exposures; an explicit ``idle_slot: true`` keeps it."""
    fixed = GimbalSystem.from_params(tiny_params(model={"learn_exposure": False}), "gimbal").sensor.schedule_us()
    assert fixed["budget_us"] == BUDGET_US and fixed["readout_us"] == READOUT_US  # the timing assumed above
    assert fixed["durations_us"] == pytest.approx([WHOLE_BUDGET_US] * N, abs=1e-6)
    assert fixed["starts_us"] == pytest.approx([0.0, 1000.0, 2000.0], abs=1e-6)
    assert fixed["idle_us"] == pytest.approx(0.0, abs=1e-6) and not fixed["idle_slot"] and not fixed["learned"]

    learned = GimbalSystem.from_params(tiny_params(), "gimbal").sensor.schedule_us()
    assert learned["idle_slot"] and learned["durations_us"] == pytest.approx([IDLE_SLOT_US] * N, abs=1e-6)

    asked = tiny_params(model={"learn_exposure": False}, exposure={"idle_slot": True})
    idle = GimbalSystem.from_params(asked, "gimbal").sensor.schedule_us()
    assert idle["idle_slot"] and idle["idle_us"] == pytest.approx(IDLE_SLOT_US, abs=1e-6)


def test_fixed_schedule_with_idle_time_must_ask_for_the_idle_slot() -> None:
    """Fixed durations that leave time unused (the paper's learned 872 / 234 / 583 us: 111 us idle) need
    ``exposure.idle_slot: true``; without it the refusal names that param."""
    paper = {"init_us": [872.0, 234.0, 583.0]}
    with pytest.raises(ParamError, match=r"exposure\.idle_slot: true"):
        GimbalSystem.from_params(tiny_params(model={"learn_exposure": False}, exposure=paper), "gimbal")
    asked = tiny_params(model={"learn_exposure": False}, exposure={**paper, "idle_slot": True})
    sched = GimbalSystem.from_params(asked, "gimbal").sensor.schedule_us()
    assert sched["durations_us"] == pytest.approx(paper["init_us"], abs=1e-6)
    assert sched["idle_us"] == pytest.approx(BUDGET_US - N * READOUT_US - sum(paper["init_us"]), abs=1e-6)


def test_ablation_trains_the_uniform_schedule(tmp_path: Path) -> None:
    """After ``-S model.learn_exposure=false`` the main model, read back from its model file as evaluate reads it,
    has exactly ``gimbal_uniform``'s schedule, and evaluate's ``middle_frame`` floor is that burst's middle frame."""
    params = tiny_params(model={"learn_exposure": False})
    system = GimbalSystem.from_params(params, "gimbal")
    save_system(tmp_path / "gimbal.pt", system, params, "gimbal")
    ablation = load_system(tmp_path / "gimbal.pt")
    uniform = GimbalSystem.from_params(tiny_params(), "gimbal_uniform").eval()  # the committed params' variant
    assert ablation.sensor.schedule_us() == uniform.sensor.schedule_us()
    assert list(ablation.sensor.parameters()) == []  # fixed: nothing of the schedule is trained

    gen = torch.Generator().manual_seed(0)
    scenes = [Scenes(torch.rand(2, 9, 1, 16, 16, generator=gen) * 4e6, torch.rand(2, 1, 16, 16, generator=gen))]
    display = Display.for_camera("srgb", uniform.sensor.camera, (0.018, 0.02))
    result = evaluate_methods({"gimbal": ablation}, {}, copy.deepcopy(uniform.sensor), scenes, seed=3,
                              display=display)
    uniform.sensor.set_seed(3)
    with torch.no_grad():
        captured = uniform.sensor(scenes[0].irradiance)
        floor = middle_frame_image(uniform.sensor, captured.burst, captured.durations_s, display)
    target = display.ground_truth(scenes[0].irradiance, scenes[0].srgb, uniform.sensor.camera)
    expected = psnr(floor, target.to(floor.dtype), reduction="none").tolist()
    assert result.scores["middle_frame"]["psnr"] == pytest.approx(expected, abs=1e-5)
    assert result.schedules["gimbal"]["durations_us"] == pytest.approx([WHOLE_BUDGET_US] * N, abs=1e-6)


# ---------------------------------------------------------------- the summary `dvc metrics show` leads with

SCORED = ("gimbal", "gimbal_uniform", "kpn", "gimbal_no_flow", "gimbal_no_norm", "gimbal_anneal", "deblurgan", "dmphn",
          "full_exposure", "middle_frame")


def fake_result() -> EvalResult:
    """Four test clips of every method: ours 3 dB over uniform on each clip, 1 dB over its middle frame."""
    base = [20.0, 22.0, 25.0, 21.0]
    offset = {"gimbal": 3.0, "middle_frame": 2.0, "kpn": -0.5, "full_exposure": -2.0}
    return EvalResult(scores={m: {"psnr": [b + offset.get(m, 0.0) + 0.01 * i for i, b in enumerate(base)],
                                  "ssim": [0.5 + 0.01 * i for i in range(4)]} for m in SCORED})


def test_summary_is_small_flat_and_names_every_method() -> None:
    metrics = fake_result().intervals(seed=0)
    schedule = {"durations_us": [919.04, 384.9, 248.8], "idle_us": 247.26}
    summary = summary_metrics(metrics, schedule)
    margins = ("gimbal-gimbal_uniform", "gimbal-kpn", "gimbal-middle_frame")
    expected = {f"{k}_{m}" for m in SCORED for k in ("psnr", "ssim")}
    expected |= {f"margin_{n}{end}" for n in margins for end in ("", "_lo", "_hi")}
    expected |= {"exposure_us_1", "exposure_us_2", "exposure_us_3", "idle_us"}
    assert set(summary) == expected and len(summary) + 1 <= 40  # + the Path column of `dvc metrics show`
    assert all(isinstance(v, (int, float)) and "." not in k for k, v in summary.items())  # flat: no nested column
    assert summary["psnr_gimbal"] == pytest.approx(25.0 + 0.015, abs=1e-3)  # mean of 23.0, 25.01, 28.02, 24.03
    assert summary["margin_gimbal-gimbal_uniform"] == pytest.approx(3.0, abs=1e-3)  # paired: 3 dB on every clip
    assert summary["margin_gimbal-kpn"] == pytest.approx(3.5, abs=1e-3)
    assert summary["margin_gimbal-middle_frame_lo"] <= 1.0 <= summary["margin_gimbal-middle_frame_hi"]
    assert [summary[f"exposure_us_{i}"] for i in (1, 2, 3)] == [919.0, 384.9, 248.8]  # us, 0.1 us
    assert summary["idle_us"] == 247.3
    # a run that scores a subset: only what was scored, no schedule without the learned model
    subset = summary_metrics(EvalResult(scores={m: fake_result().scores[m] for m in ("kpn", "full_exposure")})
                             .intervals(seed=0))
    assert set(subset) == {"psnr_kpn", "ssim_kpn", "psnr_full_exposure", "ssim_full_exposure"}


SWEEP = "sweeps/fig9"  # the Fig. 9 sweep: its own DVC project (a subrepo)


def _dvc_yamls() -> dict[str, dict[str, Any]]:
    """The pipeline file of each DVC project: the root's and the sweep's."""
    return {rel: yaml.safe_load((REPO / rel).read_text()) for rel in ("dvc.yaml", f"{SWEEP}/dvc.yaml")}


def test_the_fig9_sweep_is_its_own_dvc_project() -> None:
    """The root project (its `dvc status`, `dvc checkout`, `dvc metrics show`, `dvc plots show`) collects none of
    the sweep's stages or outputs, which `make repro` never builds; the sweep's own project collects all of them."""
    from dvc.repo import Repo

    with Repo(str(REPO)) as root:
        stages = {s.name for s in root.index.stages}
        outs = [o.def_path for o in root.index.outs]
    assert {"shards", "train_gimbal", "evaluate", "report"} <= stages
    assert not [s for s in stages if s.startswith("train@") or "fig9" in s], stages
    assert not [o for o in outs if o.startswith(("sweeps", "cells"))], outs
    with Repo(str(REPO / SWEEP)) as sweep:
        stages = {s.name for s in sweep.index.stages}
        metrics = [o.def_path for o in sweep.index.outs if o.metric]
        plots = [o.def_path for o in sweep.index.outs if o.plot]
    grid = yaml.safe_load((REPO / SWEEP / "params.yaml").read_text())
    assert stages == {f"train@{light:g}-{dbar:g}-{seed}" for light in grid["lights"] for dbar in grid["dbars"]
                      for seed in grid["seeds"]} | {f"{stage}@{k}" for stage in ("train_heldout", "finetune_heldout")
                                                    for k in grid["heldout"]} | {"report", "validate"}
    assert metrics == ["cells.json"] and plots == ["fig9.png", "heatmaps.png"]


def _declared(entries: list[Any]) -> list[str]:
    return [e if isinstance(e, str) else next(iter(e)) for e in entries]


def test_only_the_summary_is_declared_as_metrics() -> None:
    """Every other JSON the pipelines write (per-source scores, intervals, Table 3, training summaries, the Fig. 9
    cells' training) is a plain output kept in git (cache: false), so the default tables stay small; the sweep's
    own project shows its cells (`cd sweeps/fig9 && dvc metrics show`)."""
    metrics: dict[str, list[str]] = {}
    plain: dict[str, Any] = {}
    for rel, doc in _dvc_yamls().items():
        for stage in doc["stages"].values():
            metrics.setdefault(rel, []).extend(_declared(stage.get("metrics", [])))
            plain |= {next(iter(e)): e[next(iter(e))] for e in stage.get("outs", []) if isinstance(e, dict)}
    assert metrics == {"dvc.yaml": ["metrics/summary.json"], f"{SWEEP}/dvc.yaml": ["cells.json"]}
    for rel in ("metrics/eval.json", "metrics/eval_by_source.json", "metrics/table3.json", "metrics/train_gimbal.json",
                "metrics/train_dmphn.json", "metrics.json", "cells/light${item.light}_dbar${item.dbar}_seed${item.seed}/train.json",
                "validation.json"):
        assert plain.get(rel) == {"cache": False}, rel
    assert not list((REPO / "dvclive").rglob("dvc.yaml"))  # dvclive declares nothing of its own


def test_dvc_metrics_show_fits(tmp_path: Path) -> None:
    """`dvc metrics show --md` on the committed pipeline files and a summary: one row, at most 40 columns, every
    method named, although every other metrics file of the repository is there too, the Fig. 9 sweep's included
    (its own project shows them)."""
    for rel in ("dvc.yaml", "params.yaml", *(f"{SWEEP}/{f}" for f in (".dvc/config", ".dvcignore", "dvc.yaml",
                                                                      "params.yaml", "cells.json", "metrics.json"))):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / rel, tmp_path / rel)
    shutil.copytree(REPO / "metrics", tmp_path / "metrics", ignore=shutil.ignore_patterns("summary.json"))
    (tmp_path / "metrics/summary.json").write_text(json.dumps(summary_metrics(
        fake_result().intervals(seed=0), {"durations_us": [900.0, 400.0, 250.0], "idle_us": 250.0})))
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run([sys.executable, "-m", "dvc", "init", "-q"], cwd=tmp_path, check=True)
    proc = subprocess.run([sys.executable, "-m", "dvc", "metrics", "show", "--md"], cwd=tmp_path, capture_output=True,
                          text=True, check=False, timeout=120)
    assert proc.returncode == 0, proc.stderr
    header, _, *rows = [line for line in proc.stdout.splitlines() if line.strip()]
    columns = [c.strip() for c in header.strip("|").split("|")]
    assert len(rows) == 1 and rows[0].startswith("| metrics/summary.json")
    assert len(columns) <= 40 and all(f"psnr_{m}" in columns for m in SCORED)
    proc = subprocess.run([sys.executable, "-m", "dvc", "metrics", "show", "--md"], cwd=tmp_path / SWEEP,
                          capture_output=True, text=True, check=False, timeout=120)
    assert proc.returncode == 0 and "| cells.json " in proc.stdout and "summary" not in proc.stdout, proc.stderr

    # the ablation re-trains the main model only: `dvc metrics diff` shows its effect in at most 20 rows
    for cmd in (["git", "add", "-A"], ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "base"]):
        subprocess.run(cmd, cwd=tmp_path, check=True)
    ablation = fake_result()
    ablation.scores["gimbal"]["psnr"] = [p - 3.0 for p in ablation.scores["gimbal"]["psnr"]]
    ablation.scores["middle_frame"]["psnr"] = [p - 1.0 for p in ablation.scores["middle_frame"]["psnr"]]
    (tmp_path / "metrics/summary.json").write_text(json.dumps(summary_metrics(
        ablation.intervals(seed=0), {"durations_us": [600.0, 600.0, 600.0], "idle_us": 0.0})))
    proc = subprocess.run([sys.executable, "-m", "dvc", "metrics", "diff", "--md"], cwd=tmp_path,
                          capture_output=True, text=True, check=False, timeout=120)
    assert proc.returncode == 0, proc.stderr
    changed = [line for line in proc.stdout.splitlines() if line.startswith("| metrics/summary.json")]
    assert 4 <= len(changed) <= 20 and any("psnr_gimbal " in line for line in changed), proc.stdout


# ---------------------------------------------------------------- the plots page

def test_plots_page_answers_one_question_per_panel() -> None:
    """At most 12 panels (vega and images) on each project's `dvc plots show`, each vega panel titled in words with
    axis labels that carry units, with a template of its project's .dvc/plots/ that draws a legend; the Fig. 9
    sweep's plots are declared in its own project only."""
    docs = _dvc_yamls()
    panels = [(rel, p) for rel, doc in docs.items() for p in doc.get("plots", [])]
    n_examples = yaml.safe_load((REPO / "params.yaml").read_text())["eval"]["examples"]
    for rel, doc in docs.items():
        images = [p for stage in doc["stages"].values() for p in _declared(stage.get("plots", []))]
        n_images = sum(n_examples if not p.endswith(".png") else 1 for p in images)
        assert all(p.endswith(".png") or p == "plots/examples" for p in images)  # no per-file vega panels
        assert len(doc.get("plots", [])) + n_images <= 12, rel
    for rel, panel in panels:
        (title, props), = panel.items()
        assert " " in title and "/" not in title and "." not in title.split()[-1]  # words, not a file path
        assert not set(title) & set("'\"\\"), title  # the page embeds it in a JavaScript string
        assert props["x_label"] and "(" in props["y_label"] and props["y_label"].endswith(")")  # a unit: (dB), (us)
        assert (REPO / Path(rel).parent / ".dvc/plots" / f"{props['template']}.json").is_file(), rel
        for path in props["y"]:
            assert (REPO / Path(rel).parent / path).is_file(), path  # committed: the page draws on a fresh clone
        assert ("fig9" in rel) == any("cells/" in path for path in props["y"]), title
    for name in {props["template"] for _, p in panels for props in p.values()}:
        encoding = json.loads((REPO / ".dvc/plots" / f"{name}.json").read_text())["encoding"]
        assert encoding["color"]["legend"] is not None and encoding["color"]["field"] in ("series", "method")
