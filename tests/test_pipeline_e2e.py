"""End-to-end: `dvc repro` of the pipeline in a temporary copy of the repository.

Runs the real stages (samples -> yt-dlp fetch -> clips -> RIFE interpolate -> shards ...)
on an even tinier configuration than the embedded default, then checks that a second
`dvc repro` has nothing to do and that changing one param re-runs only what depends on it.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from gimbal import methods

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("GIT_AUTHOR_NAME", "gimbal test")
    env.setdefault("GIT_AUTHOR_EMAIL", "test@gimbal.invalid")
    env.setdefault("GIT_COMMITTER_NAME", "gimbal test")
    env.setdefault("GIT_COMMITTER_EMAIL", "test@gimbal.invalid")
    env["DVC_NO_ANALYTICS"] = "1"
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=1200)
    if proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc


def tiny_params(params: dict) -> dict:
    """Shrink the embedded default further for the test (2 videos, 2 clips each)."""
    params["samples"].update(images=["astronaut", "coffee"], frames=70)
    params["data"]["sources"] = ["data/samples/flight_astronaut.mp4", "data/samples/flight_coffee.mp4"]
    params["clips"].update(skip=8, test_fraction=0.5)
    params["shards"]["clips_per_shard"] = 1
    params["augment"].update(crop=64, center=32, out_size=16)
    params["model"].update(flow_levels=2, kpn_base_channels=4, kpn_depth=1)
    # the train split has one clip: a batch of one (a larger one is refused up front)
    params["train"].update(steps=4, batch_size=1, val_every=2, val_clips=2, checkpoint_every=2, samples_per_clip=2)
    params["flow_pretrain"].update(steps=4, batch_size=2, val_every=2, val_bursts=4)
    params["baselines"]["deblurgan"].update(steps=4, batch_size=1, width_mult=0.25, fpn_channels=16,
                                            head_channels=8, d_channels=8)
    params["baselines"]["dmphn"].update(steps=4, batch_size=1, base_channels=4)
    params["eval"].update(clips=2, examples=1, batch_size=2)
    return params


@pytest.fixture(scope="module")
def repo_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dst = tmp_path_factory.mktemp("repo")
    files = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split()
    for rel in files:
        src = REPO / rel
        if not src.is_file() or rel.startswith(("data/samples", "data/raw", "data/clips", "data/interp", "data/shards")):
            continue
        (dst / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dst / rel)
    shutil.copytree(REPO / ".dvc", dst / ".dvc", ignore=shutil.ignore_patterns("cache", "tmp"), dirs_exist_ok=True)
    (dst / "dvc.lock").unlink(missing_ok=True)
    params = tiny_params(yaml.safe_load((dst / "params.yaml").read_text()))
    (dst / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    _run(["git", "init", "-q"], dst)
    _run(["git", "add", "-A"], dst)
    _run(["git", "commit", "-qm", "copy"], dst)
    return dst


def test_dvc_repro_data_pipeline(repo_copy: Path) -> None:
    dag = _run(["dvc", "dag"], repo_copy).stdout
    for stage in ("samples", "fetch", "clips", "interpolate", "shards"):
        assert stage in dag
    _run(["dvc", "repro", "shards"], repo_copy)

    manifest = json.loads((repo_copy / "data/raw/manifest.json").read_text())
    assert len(manifest["videos"]) == 2
    clips = json.loads((repo_copy / "data/interp/index.json").read_text())["clips"]
    assert len(clips) == 4
    assert {c["frames"] for c in clips} == {241}
    splits = {c["split"]: set() for c in clips}
    for c in clips:
        splits[c["split"]].add(c["video"])
    # two videos of one kind: one is test, the other trains and lends its last clip to val
    assert set(splits) == {"train", "val", "test"} and not (splits["train"] & splits["test"])
    assert splits["val"] == splits["train"]
    tars = sorted((repo_copy / "data/shards").rglob("shard-*.tar"))
    assert len(tars) == 4
    for split in ("train", "val", "test"):  # one self-contained folder per split (separate DVC outputs)
        assert (repo_copy / "data/shards" / split / "index.json").is_file()
    assert all(t.with_suffix(".idx").is_file() for t in tars)

    # a second repro has nothing to do
    again = _run(["dvc", "repro", "shards"], repo_copy).stdout
    assert "Running stage" not in again, again

    # changing one param re-runs only the stages that depend on it
    params = yaml.safe_load((repo_copy / "params.yaml").read_text())
    params["shards"]["clips_per_shard"] = 2
    (repo_copy / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    out = _run(["dvc", "repro", "shards"], repo_copy).stdout
    assert "Running stage 'shards'" in out
    for upstream in ("samples", "fetch", "clips", "interpolate"):
        assert f"Running stage '{upstream}'" not in out
    assert len(sorted((repo_copy / "data/shards").rglob("shard-*.tar"))) == 3  # one per split (test: 2 clips, train and val: 1 each)


METHODS = set(methods.scored())  # every method the table of methods scores


def test_dvc_repro_full_pipeline_and_ablation(repo_copy: Path) -> None:
    _run(["dvc", "repro"], repo_copy)
    for rel in ("models/gimbal.pt", "models/gimbal_uniform.pt", "models/kpn.pt", "models/deblurgan.pt", "models/dmphn.pt",
                "exposures/gimbal.json", "plots/exposures_gimbal.png", "metrics/train_gimbal.json",
                "metrics/eval.json", "plots/eval_per_clip.csv", "plots/psnr_by_method.png"):
        assert (repo_copy / rel).is_file(), rel
    assert list((repo_copy / "dvclive/train_gimbal/plots/metrics").rglob("*.tsv"))
    evaluation = json.loads((repo_copy / "metrics/eval.json").read_text())
    assert set(evaluation) == {*METHODS, "margins", "clips", "videos", "resampled", "working_point", "timing_split"}
    # exactly the test split's clips were scored, and the table is their mean, inside its interval
    clips = json.loads((repo_copy / "data/clips/index.json").read_text())["clips"]
    test_ids = sorted(c["id"] for c in clips if c["split"] == "test")
    with (repo_copy / "plots/eval_per_clip.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert sorted({r["clip_id"] for r in rows}) == test_ids and evaluation["clips"] == len(test_ids)
    for m in METHODS:
        values = [float(r["psnr"]) for r in rows if r["method"] == m]
        assert sum(values) / len(values) == pytest.approx(evaluation[m]["psnr"], abs=1e-3)
        assert evaluation[m]["psnr_lo"] <= evaluation[m]["psnr"] <= evaluation[m]["psnr_hi"]
    # no training stage depends on the test split (dvc.yaml), and training validated on val
    dvc_yaml = yaml.safe_load((repo_copy / "dvc.yaml").read_text())
    for name, stage in dvc_yaml["stages"].items():
        if name.startswith("train_"):
            assert "data/shards/test" not in stage["deps"] and "data/shards" not in stage["deps"], name
    learned = json.loads((repo_copy / "exposures/gimbal.json").read_text())
    uniform = json.loads((repo_copy / "exposures/gimbal_uniform.json").read_text())
    assert learned["learned"] is True and uniform["learned"] is False
    assert len(set(round(d, 6) for d in uniform["durations_us"])) == 1

    # Table 3 and the report come out of the same repro
    table3 = json.loads((repo_copy / "metrics/table3.json").read_text())
    assert set(table3) == {"gimbal", *methods.table3()}  # every Table 3 row of the table of methods
    for variant in ("gimbal_no_flow", "gimbal_no_norm", "gimbal_uniform"):  # effect = ours - without, paired
        assert table3[variant]["effect"] == pytest.approx(evaluation["gimbal"]["psnr"] - evaluation[variant]["psnr"],
                                                          abs=2e-4)
    assert "## Table 3" in (repo_copy / "reports/paper.md").read_text()
    assert json.loads((repo_copy / "exposures/gimbal_no_flow.json").read_text())["learned"] is True

    shown = _run(["dvc", "metrics", "show"], repo_copy).stdout  # the one summary file, every method named
    assert "metrics/summary.json" in shown and "metrics/eval.json" not in shown
    assert all(f"psnr_{m}" in shown for m in METHODS)
    assert "Running stage" not in _run(["dvc", "repro"], repo_copy).stdout

    # the paper's ablation as a DVC experiment: only train_gimbal (and evaluate) re-run
    _run(["git", "add", "-A"], repo_copy)
    _run(["git", "commit", "-qm", "baseline run"], repo_copy)
    out = _run(["dvc", "exp", "run", "-S", "model.learn_exposure=false"], repo_copy).stdout
    assert "Running stage 'train_gimbal'" in out and "Running stage 'evaluate'" in out
    for other in ("shards", *(f"train_{m}" for m in methods.trained() if m != "gimbal")):
        assert f"Running stage '{other}'" not in out
    ablated = json.loads((repo_copy / "exposures/gimbal.json").read_text())
    assert ablated["learned"] is False
    assert ablated["durations_us"] == uniform["durations_us"] and ablated["idle_us"] == 0  # gimbal_uniform's schedule
    table = _run(["dvc", "exp", "show", "--csv"], repo_copy).stdout
    header, *rows = table.strip().splitlines()
    assert "model.learn_exposure" in header and "psnr_gimbal" in header and "psnr_gimbal_uniform" in header
    assert len(rows) >= 2  # the baseline commit and the experiment
    assert any(",False," in row or ",false," in row for row in rows)
