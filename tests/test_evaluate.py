"""Stage `evaluate`: every method scored on the same scenes and noise, outputs, determinism, errors."""

from __future__ import annotations

import copy
import csv
import json
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from PIL import Image
from shard_fixtures import make_interp

from gimbal import methods
from gimbal.baselines.deblurgan import DeblurGANv2
from gimbal.baselines.dmphn import DMPHN
from gimbal.config import parse_config
from gimbal.data.irradiance import fixed_irradiance_set
from gimbal.data.shards import ShardConfig, build_shards
from gimbal.display import Display
from gimbal.errors import DataError, ParamError
from gimbal.evaluation.evaluate import evaluate, evaluate_methods, load_models
from gimbal.metrics import psnr
from gimbal.system import GimbalSystem, build_sensor, middle_frame_image, save_system

REPO = Path(__file__).resolve().parents[1]
LEARNED_LOGITS = (1.0, -1.0, 0.3, 0.0)  # a non-uniform schedule (3 exposures + the idle slot)


def tiny_params() -> dict[str, Any]:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["augment"].update(crop=32, center=16, out_size=16)
    params["model"].update(kpn_depth=1, flow_levels=2)
    params["train"].update(loader="torch", device="cpu", batch_size=2)
    params["eval"].update(clips=2, seed=1, examples=2)
    return params


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Tiny shards (2 test clips of 9 frames, 48x48) and untrained models of every method."""
    root = tmp_path_factory.mktemp("eval")
    index, _ = make_interp(root / "interp", {"a": "train", "b": "val", "c": "test", "d": "test"}, clips_per_video=1,
                           frames=9, h=48, w=48)
    build_shards(index, root / "shards", ShardConfig(clips_per_shard=2), progress=False)
    params = tiny_params()
    models = root / "models"
    for variant in methods.burst():
        system = GimbalSystem.from_params(params, variant)
        if variant == "gimbal":
            with torch.no_grad():
                system.sensor.exposure.logits.copy_(torch.tensor(LEARNED_LOGITS, dtype=torch.float64))
        save_system(models / f"{variant}.pt", system, params, variant)
    cfg = parse_config(params)
    DeblurGANv2(cfg.baselines.deblurgan, cfg.model.channels, cfg.seed).save(models / "deblurgan.pt")  # identity-initialised generator
    DMPHN(replace(cfg.baselines.dmphn, identity_init=False), cfg.model.channels, cfg.seed).save(models / "dmphn.pt")
    return {"root": root, "shards": root / "shards", "models": models, "params": params}


def eval_groups(params: dict[str, Any]) -> tuple[Any, ...]:
    """The groups :func:`evaluate` reads, from ``params``, as the stage passes them."""
    cfg = parse_config(params)
    return cfg.eval, cfg.sensor, cfg.exposure, cfg.augment, cfg.model.channels, cfg.train


def run_eval(setup: dict[str, Any], out: Path, params: dict[str, Any] | None = None) -> dict[str, Any]:
    return evaluate(
        *eval_groups(params or setup["params"]), setup["shards"], setup["models"], metrics_path=out / "metrics/eval.json",
        per_clip_csv=out / "plots/eval_per_clip.csv", by_method_csv=out / "plots/eval_by_method.csv",
        bar_plot=out / "plots/psnr_by_method.png", examples_dir=out / "plots/examples",
        schedule_plot=out / "plots/exposures_eval.png", progress=False,
    )


@pytest.fixture(scope="module")
def first_run(setup: dict[str, Any]) -> Path:
    out = setup["root"] / "run1"
    run_eval(setup, out)
    return out


def test_writes_every_method_and_figure(first_run: Path) -> None:
    metrics = json.loads((first_run / "metrics/eval.json").read_text())
    by_source = json.loads((first_run / "metrics/eval_by_source.json").read_text())
    assert set(metrics) == {*methods.scored(), "margins", "timing_split", "clips", "videos", "resampled",
                            "working_point"}
    split = metrics["timing_split"]  # ours - uniform = timing (centred - uniform) + exposure lengths (ours - centred)
    assert {k: v["pair"] for k, v in split.items()} == {
        "total": "gimbal-gimbal_uniform", "timing": "gimbal_uniform_centred-gimbal_uniform",
        "exposure_lengths": "gimbal-gimbal_uniform_centred"}
    assert all({k: v for k, v in s.items() if k != "pair"} == metrics["margins"][s["pair"]] for s in split.values())
    assert split["total"]["psnr"] == pytest.approx(split["timing"]["psnr"] + split["exposure_lengths"]["psnr"],
                                                   abs=2e-4)
    assert (metrics["clips"], metrics["videos"], metrics["resampled"]) == (2, 2, "videos")  # from the shards' meta
    # the fixture's shards carry no source kind: every clip counts as real, so "real" is the overall mean
    assert set(by_source) == {"real"}
    assert by_source["real"] == {m: {k: metrics[m][k] for k in ("psnr", "ssim")} for m in methods.scored()}
    for method in methods.scored():
        scores = metrics[method]
        assert set(scores) == {"psnr", "psnr_lo", "psnr_hi", "ssim", "ssim_lo", "ssim_hi"}, method
        assert scores["psnr_lo"] <= scores["psnr"] <= scores["psnr_hi"]
        assert scores["ssim_lo"] <= scores["ssim"] <= scores["ssim_hi"]
    assert set(metrics["margins"]) == {f"{a}-{b}" for a, b in methods.compared()}
    rows = list(csv.DictReader((first_run / "plots/eval_per_clip.csv").open()))
    assert len(rows) == 2 * len(methods.scored())
    assert {r["method"] for r in rows} == set(methods.scored())
    assert sorted({r["clip_id"] for r in rows}) == ["c_0", "d_0"]
    assert {(r["clip_id"], r["video"]) for r in rows} == {("c_0", "c"), ("d_0", "d")}
    per_clip = {m: [float(r["psnr"]) for r in rows if r["method"] == m] for m in methods.scored()}
    for method in methods.scored():  # the mean in eval.json is the mean of the per-clip rows
        assert sum(per_clip[method]) / 2 == pytest.approx(metrics[method]["psnr"], abs=1e-3)
    for a, b in methods.compared():  # each margin is the mean of the per-clip paired differences, inside its interval
        m = metrics["margins"][f"{a}-{b}"]
        diffs = [x - y for x, y in zip(per_clip[a], per_clip[b], strict=True)]
        assert m["psnr"] == pytest.approx(sum(diffs) / 2, abs=1e-3)
        assert min(diffs) - 1e-3 <= m["psnr_lo"] <= m["psnr"] <= m["psnr_hi"] <= max(diffs) + 1e-3
    by_method = list(csv.DictReader((first_run / "plots/eval_by_method.csv").open()))
    assert [r["method"] for r in by_method] == list(methods.scored())
    summary = json.loads((first_run / "metrics/summary.json").read_text())  # what `dvc metrics show` shows
    assert all(summary[f"psnr_{m}"] == metrics[m]["psnr"] for m in methods.scored())
    assert summary["margin_gimbal-gimbal_uniform_lo"] == metrics["margins"]["gimbal-gimbal_uniform"]["psnr_lo"]
    assert summary["margin_gimbal_uniform_centred-gimbal_uniform"] == split["timing"]["psnr"]
    learned = GimbalSystem.from_params(tiny_params(), "gimbal")  # the learned schedule, in us
    with torch.no_grad():
        learned.sensor.exposure.logits.copy_(torch.tensor(LEARNED_LOGITS, dtype=torch.float64))
    schedule = learned.sensor.schedule_us()
    assert [summary[f"exposure_us_{i}"] for i in (1, 2, 3)] == [round(d, 1) for d in schedule["durations_us"]]

    examples = sorted(p.name for p in (first_run / "plots/examples").iterdir())
    assert examples == ["example_0.png", "example_1.png"]
    for png in ("plots/psnr_by_method.png", "plots/exposures_eval.png", "plots/examples/example_0.png"):
        with Image.open(first_run / png) as im:
            assert im.format == "PNG" and im.width > 300 and im.height > 100
    with Image.open(first_run / "plots/examples/example_0.png") as im:  # 7 panels, 4 per row, tiles >= 256 px
        assert im.width >= 4 * 256 and im.height >= 2 * 256
    assert not list(first_run.rglob("*.tmp*"))  # atomic writes leave no temp files


def test_working_point_of_the_test_scenes_and_every_model(setup: dict[str, Any], first_run: Path) -> None:
    """e-bar is the photo-electrons of one full-budget exposure of the scored scenes, by hand; d-bar is the project's
    shake blur over the 9 frames spanning T; the content's motion is measured without the shake (a finite,
    non-negative number per video); every trained model states the point it was trained at."""
    wp = json.loads((first_run / "metrics/eval.json").read_text())["working_point"]
    cfg = parse_config(setup["params"])
    camera = build_sensor(cfg, learn_exposure=False).camera
    scenes = fixed_irradiance_set(setup["shards"], "test", 2, cfg.eval.batch_size, cfg.augment, camera,
                                  cfg.model.channels, cfg.eval.seed, "torch", full_frame=cfg.eval.full_frame)
    irr = torch.cat([s.irradiance for s in scenes]).double()
    assert wp["test"]["e_bar"] == pytest.approx(float(irr.mean()) * camera.budget_s, abs=0.01)
    assert wp["test"]["window_frames"] == 9 and wp["test"]["d_bar_px"] > 0
    assert set(wp["test"]["by_video"]) == {"c", "d"}
    assert all(0 <= v[k] < 50 for v in wp["test"]["by_video"].values()
               for k in ("content_motion_px", "content_flow_px"))
    assert wp["test"]["content_motion_px"] == pytest.approx(
        sum(v["content_motion_px"] for v in wp["test"]["by_video"].values()) / 2, abs=2e-3)  # one clip per video
    assert set(wp["models"]) == set(methods.scored()) - set(methods.floors())
    assert all(m == {"e_bar": wp["test"]["e_bar"], "d_bar_px": wp["test"]["d_bar_px"], "window_frames": 9}
               for m in wp["models"].values())


def test_intervals_resample_videos() -> None:
    """Two methods on 8 clips of 4 videos, the clips of a video identical: the interval of every mean and margin is
    the bootstrap of the 4 video values (independent computation), not of 8 clips; without videos, the clips."""
    from gimbal.evaluation.evaluate import EvalResult
    from gimbal.evaluation.stats import bootstrap_mean

    video_psnr, video_gain = [22.0, 27.0, 24.5, 30.0], [1.0, 3.0, 0.5, 2.0]
    a = [v + g for v, g in zip(video_psnr, video_gain) for _ in range(2)]
    b = [v for v in video_psnr for _ in range(2)]
    scores = {"gimbal": {"psnr": a, "ssim": [0.5] * 8}, "gimbal_uniform": {"psnr": b, "ssim": [0.5] * 8}}
    videos = [v for v in ("bikes", "cell", "coffee", "grass") for _ in range(2)]
    out = EvalResult(scores=scores, videos=videos).intervals(seed=3)
    assert (out["clips"], out["videos"], out["resampled"]) == (8, 4, "videos")
    ref = bootstrap_mean([v + g for v, g in zip(video_psnr, video_gain)], seed=3)
    assert (out["gimbal"]["psnr_lo"], out["gimbal"]["psnr_hi"]) == (round(ref.lo, 4), round(ref.hi, 4))
    ref = bootstrap_mean(video_gain, seed=3)
    margin = out["margins"]["gimbal-gimbal_uniform"]
    assert (margin["psnr"], margin["psnr_lo"], margin["psnr_hi"]) == (round(ref.mean, 4), round(ref.lo, 4),
                                                                     round(ref.hi, 4))
    naive = EvalResult(scores=scores).intervals(seed=3)
    assert naive["resampled"] == "clips" and "videos" not in naive
    assert naive["margins"]["gimbal-gimbal_uniform"]["psnr_hi"] - naive["margins"]["gimbal-gimbal_uniform"]["psnr_lo"] \
        < margin["psnr_hi"] - margin["psnr_lo"]
    with pytest.raises(ParamError, match="3 source videos given for 8 scored clips"):
        EvalResult(scores=scores, videos=videos[:3]).intervals()


def test_second_run_is_identical(setup: dict[str, Any], first_run: Path) -> None:
    out = setup["root"] / "run2"
    run_eval(setup, out)
    for rel in ("metrics/eval.json", "metrics/summary.json", "plots/eval_per_clip.csv", "plots/eval_by_method.csv"):
        assert (out / rel).read_bytes() == (first_run / rel).read_bytes(), rel


def test_a_subset_scores_as_in_the_full_run(setup: dict[str, Any], first_run: Path, tmp_path: Path) -> None:
    """``methods``: only the models named are needed and scored (with the floors), each clip exactly as in the full
    evaluation, and only the margins between scored methods are reported."""
    subset = ["gimbal", "kpn", "dmphn"]
    models = tmp_path / "models"
    models.mkdir()
    for name in subset:  # the other model files are absent: a subset must not need them
        shutil.copy(setup["models"] / f"{name}.pt", models)
    metrics = evaluate(*eval_groups(setup["params"]), setup["shards"], models, metrics_path=tmp_path / "eval.json",
                       per_clip_csv=tmp_path / "per_clip.csv", by_method_csv=tmp_path / "by_method.csv",
                       bar_plot=tmp_path / "bar.png", examples_dir=tmp_path / "examples",
                       schedule_plot=tmp_path / "sched.png", progress=False, methods=subset)
    scored = {*subset, "full_exposure", "middle_frame"}
    assert set(metrics) == {*scored, "margins", "clips", "videos", "resampled", "working_point"}
    assert set(metrics["margins"]) == {"gimbal-kpn", "gimbal-middle_frame", "kpn-full_exposure",
                                       "dmphn-full_exposure"}
    full = list(csv.DictReader((first_run / "plots/eval_per_clip.csv").open()))
    part = list(csv.DictReader((tmp_path / "per_clip.csv").open()))
    assert part == [r for r in full if r["method"] in scored]
    with pytest.raises(ParamError, match=r"\['gimbal_nope'\] are not trained methods; choose from"):
        load_models(setup["models"], methods=["gimbal", "gimbal_nope"])


def test_each_middle_frame_floor_is_its_own_bursts(setup: dict[str, Any], first_run: Path) -> None:
    """`middle_frame` is the learned burst's normalized middle frame, `middle_frame_centred` the timing control's:
    different schedules, so different floors; each is scored only with its burst method."""
    metrics = json.loads((first_run / "metrics/eval.json").read_text())
    assert metrics["middle_frame"]["psnr"] != metrics["middle_frame_centred"]["psnr"]
    params = setup["params"]
    cfg = parse_config(params)
    systems, _ = load_models(setup["models"], methods=["gimbal_uniform_centred"])
    sensor = build_sensor(cfg, learn_exposure=False)
    batches = fixed_irradiance_set(setup["shards"], "test", 2, 1, cfg.augment, sensor.camera, 1, seed=1,
                                   backend="torch")
    display = Display.for_camera("srgb", sensor.camera, tuple(params["augment"]["white_level"]))
    result = evaluate_methods(systems, {}, sensor, batches, seed=1, display=display)
    assert set(result.scores) == {"gimbal_uniform_centred", "full_exposure", "middle_frame_centred"}
    centred = systems["gimbal_uniform_centred"]
    centred.sensor.set_seed(1)
    for k, scenes in enumerate(batches):  # the centred burst, captured again from the re-seeded sensor
        captured = centred.sensor(scenes.irradiance)
        floor = middle_frame_image(centred.sensor, captured.burst, captured.durations_s, display)
        assert result.scores["middle_frame_centred"]["psnr"][k] == pytest.approx(float(psnr(floor, scenes.srgb)),
                                                                                 abs=1e-4)


def test_methods_sharing_a_schedule_see_the_same_burst(setup: dict[str, Any]) -> None:
    """Noise is re-seeded per method: the same model evaluated as two methods scores identically, per clip;
    another seed changes the noise and thus the scores."""
    params = setup["params"]
    systems, singles = load_models(setup["models"], build_sensor(parse_config(params)).camera)
    systems["kpn"] = systems["gimbal_uniform"]
    sensor = build_sensor(parse_config(params), learn_exposure=False)
    batches = fixed_irradiance_set(setup["shards"], "test", 2, 1, parse_config(params).augment,
                                   sensor.camera, 1, seed=1, backend="torch")
    assert len(batches) == 2  # two batches: the noise stream runs across batches
    display = Display.for_camera("srgb", sensor.camera, tuple(params["augment"]["white_level"]))
    result = evaluate_methods(systems, singles, sensor, batches, seed=1, display=display)
    assert result.scores["kpn"] == result.scores["gimbal_uniform"]
    # the single-image methods, recomputed here: one full exposure per clip from the sensor re-seeded with the
    # eval seed, the floors' display, against the scenes' sRGB middle frames
    sensor.eval().set_seed(1)
    for k, scenes in enumerate(batches):
        mean_e = sensor.full_exposure(scenes.irradiance)  # (b, C, H, W) DN in [0, 1]
        floor = display.encode((mean_e * display.floor_gain).clamp(0, 1))
        assert result.scores["full_exposure"]["psnr"][k] == pytest.approx(float(psnr(floor, scenes.srgb)), abs=1e-4)
        for name in ("deblurgan", "dmphn"):
            restored = singles[name].enhance(floor)
            assert result.scores[name]["psnr"][k] == pytest.approx(float(psnr(restored, scenes.srgb)), abs=1e-4)
    assert result.scores["dmphn"]["psnr"] != result.scores["full_exposure"]["psnr"]  # not the identity: it was run
    other = evaluate_methods(systems, singles, sensor, batches, seed=2, display=display)
    assert other.scores["gimbal_uniform"]["psnr"] != result.scores["gimbal_uniform"]["psnr"]
    assert other.scores["full_exposure"]["psnr"] != result.scores["full_exposure"]["psnr"]
    assert result.schedules["gimbal"]["durations_us"] != result.schedules["gimbal_uniform"]["durations_us"]


@pytest.mark.parametrize(("missing", "stage"), [("kpn", "train_kpn"), ("deblurgan", "train_deblurgan"), ("dmphn", "train_dmphn")])
def test_missing_model_names_file_and_stage(setup: dict[str, Any], tmp_path: Path, missing: str, stage: str) -> None:
    models = tmp_path / "models"
    shutil.copytree(setup["models"], models)
    (models / f"{missing}.pt").unlink()
    with pytest.raises(DataError, match=rf"{missing}\.pt: model file not found.*dvc repro {stage}"):
        evaluate(*eval_groups(setup["params"]), setup["shards"], models, metrics_path=tmp_path / "eval.json",
                 progress=False)
    assert not (tmp_path / "eval.json").exists()


def test_model_for_another_camera_is_rejected(setup: dict[str, Any]) -> None:
    params = copy.deepcopy(setup["params"])
    params["sensor"]["overrides"] = {"budget_s": 0.004}
    with pytest.raises(DataError, match=r"gimbal\.pt: trained for camera .*dvc repro train_gimbal"):
        load_models(setup["models"], build_sensor(parse_config(params)).camera)


def test_stage_cli_reports_missing_model(setup: dict[str, Any], tmp_path: Path) -> None:
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(setup["params"]))
    proc = subprocess.run(
        [sys.executable, str(REPO / "stages/evaluate.py"), "--params", str(tmp_path / "params.yaml"),
         "--models", str(tmp_path / "nothing"), "--shards", str(setup["shards"])],
        check=False, cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 1
    assert "error: " in proc.stderr and "gimbal.pt: model file not found" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "metrics").exists()
