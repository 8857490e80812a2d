"""The flow network's pretraining on synthetic translations: its ground truth, that it teaches a flow network to
follow motion, its file, and the end-to-end training starting from it."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from gimbal.errors import ModelFileError, ModelFileIncompatible
from gimbal.models.flow import split_reference
from gimbal.models.flow_pretrain import FlowPretrainConfig, end_point_error, synthetic_translations
from gimbal.training.flow_pretrain import FlowArch, FlowPretrainTask, load_pretrained_flow, pretrain_flow

TINY = FlowArch(n=3, levels=2, channels=(32, 32, 16), kernel_size=5)


def best_integer_shift(frame: torch.Tensor, ref: torch.Tensor, reach: int = 4, border: int = 6) -> tuple[int, int]:
    """Brute force: the whole-pixel ``(dx, dy)`` for which ``frame(x + dx, y + dy)`` is closest to ``ref(x, y)``
    over the interior (``frame``, ``ref``: ``(S, S)``)."""
    s = ref.shape[-1]
    inner = ref[border : s - border, border : s - border]
    best, arg = float("inf"), (0, 0)
    for dy in range(-reach, reach + 1):
        for dx in range(-reach, reach + 1):
            cand = frame[border + dy : s - border + dy, border + dx : s - border + dx]
            err = float((cand - inner).abs().mean())
            if err < best:
                best, arg = err, (dx, dy)
    return arg


def test_translations_move_each_frame_by_its_stated_shift():
    """Independent of :func:`gimbal.models.flow.warp`: a brute-force search over whole-pixel offsets finds, for
    every non-reference frame, the offset nearest its stated shift (the sign and axes of the flow convention)."""
    t = synthetic_translations(torch.Generator().manual_seed(0), 6, 3, 32, 3.0, 0.0, (1.5, 2.0))
    assert torch.equal(t.noisy, t.clean)  # noise level 0
    ref, others = split_reference(t.clean)
    hits = 0
    for b in range(6):
        for j in range(2):
            dx, dy = best_integer_shift(others[b, j, 0], ref[b, 0])
            sx, sy = t.shifts[b, j].tolist()
            assert abs(dx - sx) <= 1 and abs(dy - sy) <= 1, (b, j, (dx, dy), (sx, sy))
            hits += (dx, dy) == (round(sx), round(sy))
    assert hits >= 10  # of 12; a sub-pixel shift near .5 may round either way


def test_translations_noise_is_at_most_the_stated_level():
    t = synthetic_translations(torch.Generator().manual_seed(1), 64, 3, 32, 2.0, 0.05, (0.7, 3.0))
    per_burst = (t.noisy - t.clean).flatten(1).std(dim=1)
    assert float(per_burst.max()) < 0.055 and float(per_burst.min()) >= 0
    assert 0.4 < float(t.clean.mean()) < 0.6 and float(t.clean.min()) >= 0 and float(t.clean.max()) <= 1


def _task(tmp: Path, **overrides) -> FlowPretrainTask:
    cfg = dataclasses.replace(FlowPretrainConfig(), **overrides)
    return FlowPretrainTask(cfg, TINY, 24, torch.device("cpu"), tmp / "flow.pt", tmp / "m.json")


def test_pretraining_teaches_a_flow_network_to_follow_translations(tmp_path: Path):
    """The committed recipe (flow_pretrain's lr, shifts, noise) on a small two-level network: held-out end-point
    error well under no flow's, estimates following the true shifts. An untrained network (zero last layer)
    scores an end-point-error ratio of exactly 1 and slope 0."""
    torch.set_num_threads(1)
    task = _task(tmp_path, steps=700)
    before = task.validate()
    assert before["epe_ratio"] == pytest.approx(1.0) and before["slope"] == 0.0
    for step in range(700):
        task.optimize(step, task.train_step(step, None))
    after = task.validate()
    assert after["epe_ratio"] < 0.6, after
    assert after["slope"] > 0.5, after


def test_pretrain_flow_writes_a_file_the_training_loads(tmp_path: Path):
    cfg = dataclasses.replace(FlowPretrainConfig(), steps=4, val_every=2, val_bursts=4, batch_size=2)
    out = pretrain_flow(cfg, TINY, 16, "cpu", tmp_path / "flow.pt", tmp_path / "pretrain.json", tmp_path / "live",
                        tmp_path / "ckpt" / "last.pt")
    assert json.loads((tmp_path / "pretrain.json").read_text()) == out
    assert out["steps"] == 4 and out["selected_step"] in (2, 4) and out["architecture"] == TINY.describe()
    flow = TINY.build()
    load_pretrained_flow(flow, tmp_path / "flow.pt", TINY)
    assert any(float(p.abs().sum()) > 0 for p in flow.sub_cnn[-1].parameters())  # not the zero init
    other = dataclasses.replace(TINY, channels=(8, 8, 4))
    with pytest.raises(ModelFileIncompatible, match="flow.pt.*pretrained for the flow network"):
        load_pretrained_flow(other.build(), tmp_path / "flow.pt", other)
    with pytest.raises(ModelFileError, match="dvc repro pretrain_flow"):
        load_pretrained_flow(TINY.build(), tmp_path / "missing.pt", TINY)


def test_end_point_error_of_the_true_flow_is_zero():
    shifts = torch.tensor([[[1.0, -2.0], [0.5, 0.0]]])
    flows = shifts.view(1, 2, 2, 1, 1).expand(1, 2, 2, 16, 16)
    assert float(end_point_error(flows, shifts)) == 0.0
    assert float(end_point_error(torch.zeros_like(flows), shifts)) == pytest.approx(
        float(F.pairwise_distance(shifts[0], torch.zeros(2, 2)).mean()))


def test_the_end_to_end_training_starts_from_the_pretrained_flow_at_its_own_rate(tmp_path: Path):
    """A flow variant's task holds the file's flow weights before its first step, in an Adam group at
    ``flow_pretrain.finetune_lr``; without a file the flow starts at its zero last layer, at ``train.lr``."""
    from test_train import tiny_params

    from gimbal.config import parse_config
    from gimbal.pipeline import flow_arch, flow_weights, gimbal_run
    from gimbal.runtime import setup_distributed
    from gimbal.training.burst import GimbalTask

    params = tiny_params()
    params["flow_pretrain"]["use"] = True
    cfg = parse_config(params)
    arch = flow_arch(cfg)
    small = dataclasses.replace(FlowPretrainConfig(), steps=2, val_every=2, val_bursts=2, batch_size=2)
    pretrain_flow(small, arch, 16, "cpu", tmp_path / "flow.pt", tmp_path / "m.json", tmp_path / "live",
                  tmp_path / "ckpt.pt")
    ctx, dev = setup_distributed("cpu")
    paths = [tmp_path / name for name in ("model.pt", "metrics.json", "exposures.json", "plot.png")]
    assert flow_weights(cfg, "kpn", tmp_path / "flow.pt") is None  # no flow network
    path = flow_weights(cfg, "gimbal", tmp_path / "flow.pt")
    task = GimbalTask(gimbal_run(cfg, "gimbal", path), tmp_path, ctx, dev, *paths)
    expected = arch.build()
    load_pretrained_flow(expected, tmp_path / "flow.pt", arch)
    for name, value in expected.state_dict().items():
        assert torch.equal(task.system.net.flow.state_dict()[name], value), name
    groups = {g["name"]: g["base_lr"] for g in task.opt.param_groups}
    assert groups["flow"] == cfg.flow_pretrain.finetune_lr and groups["network"] == cfg.train.lr
    scratch = GimbalTask(gimbal_run(cfg, "gimbal"), tmp_path, ctx, dev, *paths)
    assert float(scratch.system.net.flow.sub_cnn[-1].weight.detach().abs().sum()) == 0.0
    assert "flow" not in {g["name"] for g in scratch.opt.param_groups}
