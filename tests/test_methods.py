"""The table of methods: a method added to it (here a toy one, at run time) is configured, trained by its stage,
scored by evaluate and shown by the report, with no other list of methods to edit."""

from __future__ import annotations

import argparse
import csv
import json
import pickle
import runpy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from shard_fixtures import make_shards

from gimbal import methods
from gimbal.config import default_params, default_variants, parse_config
from gimbal.data.shards import ShardConfig
from gimbal.errors import ParamError
from gimbal.evaluation.evaluate import evaluate
from gimbal.evaluation.report import paper_report, table1_rows
from gimbal.io import write_json_atomic
from gimbal.methods import Method

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class ToyConfig:
    """Params group ``baselines.toy``."""

    gain: float = 1.0
    batch_size: int = 2


class ToyRestorer:
    """A single-image "restorer" that scales its input by ``gain``."""

    def __init__(self, gain: float) -> None:
        self.gain = gain

    def enhance(self, blurred: torch.Tensor) -> torch.Tensor:
        return (blurred * self.gain).clamp(0, 1)


def load_toy(path: str | Path, device: Any) -> ToyRestorer:
    return ToyRestorer(json.loads(Path(path).read_text())["gain"])


def train_toy(run: Any, group: ToyConfig, shards_dir: Path, model_path: Path, metrics_path: Path, live_dir: Path,
              checkpoint_path: Path) -> dict[str, Any]:
    """The toy's "training": it writes its configured gain (its group ``baselines.toy``) as its model file."""
    write_json_atomic(model_path, {"gain": group.gain})
    metrics = {"steps": 0, "selected_step": 0, "val_dead": 0.0}
    write_json_atomic(metrics_path, metrics)
    return metrics


TOY = Method("toy", "single", "Toy restorer", config=ToyConfig, load=load_toy, train=f"{__name__}:train_toy",
             row="toy restorer (full exposure)", margins=(("toy", "full_exposure"),))


@pytest.fixture
def toy(monkeypatch: pytest.MonkeyPatch) -> Method:
    monkeypatch.setitem(methods.TABLE, "toy", TOY)
    return TOY


def groups(cfg: Any) -> tuple[Any, ...]:
    """The groups :func:`evaluate` reads, as its stage passes them."""
    return cfg.eval, cfg.sensor, cfg.exposure, cfg.augment, cfg.model.channels, cfg.train


def tiny_params() -> dict[str, Any]:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["augment"].update(crop=16, center=16, out_size=16)
    params["model"].update(kpn_depth=1, flow_levels=2)
    params["train"].update(loader="torch", device="cpu", batch_size=2)
    params["eval"].update(clips=2, seed=1, examples=1, full_frame=False)
    return params


def test_a_method_added_to_the_table_is_configured(toy: Method) -> None:
    params = tiny_params()
    params["baselines"]["toy"] = {"gain": 0.5}
    cfg = parse_config(params)
    assert cfg.baselines.toy == ToyConfig(gain=0.5)
    assert cfg.baselines.deblurgan == parse_config(tiny_params()).baselines.deblurgan  # the others as before
    assert default_params()["baselines"]["toy"] == {"gain": 1.0, "batch_size": 2}
    assert pickle.loads(pickle.dumps(cfg)) == cfg  # the group made from the table pickles (worker processes)
    params["baselines"]["toy"] = {"gian": 0.5}
    with pytest.raises(ParamError, match=r"'gian' in 'baselines\.toy'"):
        parse_config(params)


def test_without_its_entry_the_group_is_refused() -> None:
    params = tiny_params()
    params["baselines"]["toy"] = {"gain": 0.5}
    with pytest.raises(ParamError, match="toy"):
        parse_config(params)


def test_a_burst_method_added_to_the_table_is_a_variant(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(methods.TABLE, "toy_burst", Method("toy_burst", "burst", "Toy burst",
                                                           overrides={"model": {"use_flow": False}}))
    assert default_variants()["toy_burst"] == {"model": {"use_flow": False}}
    params = tiny_params()
    del params["variants"]  # the default variants: the table's
    cfg = parse_config(params)
    assert cfg.variant("toy_burst").model.use_flow is False and cfg.variant("gimbal").model.use_flow is True


def test_the_table_keeps_the_order_of_every_table() -> None:
    """The order of metrics, CSV rows and the report's tables (outputs must not move)."""
    assert methods.scored() == ("gimbal", "gimbal_uniform", "gimbal_uniform_centred", "kpn", "gimbal_no_flow",
                                "gimbal_no_norm", "gimbal_anneal", "gimbal_anneal_no_flow", "deblurgan", "dmphn",
                                "full_exposure", "middle_frame", "middle_frame_centred")
    assert [r[0] for r in table1_rows()] == ["dmphn", "analysis_synthesis", "deblurgan", "kpn", "gimbal_uniform",
                                             "gimbal", "gimbal_uniform_centred", "full_exposure", "middle_frame",
                                             "middle_frame_centred"]
    assert set(yaml.safe_load((REPO / "params.yaml").read_text())["baselines"]) == set(methods.single())


def test_every_trainer_of_the_table_resolves() -> None:
    from gimbal.pipeline import trainer

    for name in methods.single():
        assert callable(trainer(name)), name


def test_the_table_agrees_with_the_packages_and_the_pipeline() -> None:
    """Each single-image method: its model's params group, stage and config are its entry's; dvc.yaml trains it
    with its group and evaluate reads its model file; each burst method is a variant trained and scored."""
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    for name in methods.single():
        m = methods.get(name)
        assert m.model is not None and m.model.CONFIG is m.config, name
        assert (m.model.STAGE, m.model.PARAM_GROUP) == (f"train_{name}", f"baselines.{name}")
        assert stages[f"train_{name}"]["cmd"].endswith(f"stages/train_baseline.py --baseline {name}")
        assert f"baselines.{name}" in stages[f"train_{name}"]["params"]
    for name in methods.trained():
        assert f"models/{name}.pt" in stages["evaluate"]["deps"], name
        assert f"metrics/train_{name}.json" in stages["report"]["deps"], name
    for a, b in methods.compared():
        assert a in methods.TABLE and b in methods.TABLE
    with pytest.raises(ParamError, match="unknown method 'nope'"):
        methods.get("nope")


def test_an_incomplete_or_duplicate_entry_is_refused() -> None:
    with pytest.raises(ValueError, match="already in the table"):
        methods.register(methods.get("gimbal"))
    with pytest.raises(ValueError, match="needs config, load and train"):
        Method("toy", "single", "Toy", config=ToyConfig)
    with pytest.raises(ValueError, match="kind"):
        Method("toy", "bursty", "Toy")  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path, _ = make_shards(tmp_path_factory.mktemp("toy_shards"), ShardConfig(clips_per_shard=2, codec="ffv1"),
                          frames=9, h=24, w=32)
    return path


def test_a_method_added_to_the_table_is_trained_scored_and_reported(
    toy: Method, shards: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    params = tiny_params()
    params["baselines"]["toy"] = {"gain": 1.0}
    cfg = parse_config(params)
    monkeypatch.chdir(tmp_path)
    stage = runpy.run_path(str(REPO / "stages/train_baseline.py"))
    stage["main"](cfg, argparse.Namespace(baseline="toy", shards=str(shards)))  # its stage trains it
    assert json.loads(Path("models/toy.pt").read_text()) == {"gain": 1.0}

    out = tmp_path / "out"
    ev = evaluate(*groups(cfg), shards, Path("models"), metrics_path=out / "eval.json",
                  per_clip_csv=out / "per_clip.csv", by_method_csv=out / "by_method.csv", bar_plot=out / "bar.png",
                  examples_dir=out / "examples", schedule_plot=out / "schedule.png", progress=False, methods=["toy"])
    assert set(ev) == {"full_exposure", "toy", "margins", "clips", "videos", "resampled", "working_point"}
    # a gain of 1 gives back the full exposure it is given: the same score, a zero margin
    assert ev["toy"]["psnr"] == ev["full_exposure"]["psnr"] and ev["margins"]["toy-full_exposure"]["psnr"] == 0
    rows = list(csv.DictReader((out / "by_method.csv").open()))
    assert [(r["method"], r["label"]) for r in rows] == [("full_exposure", "Full exposure"), ("toy", "Toy restorer")]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["psnr_toy"] == ev["toy"]["psnr"]

    report = paper_report(ev, train={"toy": json.loads(Path("metrics/train_toy.json").read_text())})
    assert f"| toy restorer (full exposure) | {ev['toy']['psnr']:.2f} [" in report
    assert "| `toy` |" in report  # its liveness row

    params["baselines"]["toy"] = {"gain": 0.5}  # the trained value is what is scored
    cfg = parse_config(params)
    stage["main"](cfg, argparse.Namespace(baseline="toy", shards=str(shards)))
    ev = evaluate(*groups(cfg), shards, Path("models"), metrics_path=out / "eval.json",
                  per_clip_csv=out / "per_clip.csv", by_method_csv=out / "by_method.csv", bar_plot=out / "bar.png",
                  examples_dir=out / "examples", schedule_plot=out / "schedule.png", progress=False, methods=["toy"])
    assert ev["margins"]["toy-full_exposure"]["psnr"] < 0
