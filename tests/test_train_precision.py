"""train.precision: bf16 runs the networks under autocast, everything else (sensor, exposures, losses, optimizer,
saved weights) stays float32; fp32 changes nothing."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import yaml
from shard_fixtures import training_shards

from gimbal.baselines.deblurgan import DeblurGANv2
from gimbal.baselines.dmphn import DMPHN
from gimbal.config import parse_config
from gimbal.errors import Interrupted, ParamError
from gimbal.pipeline import train, train_baseline
from gimbal.runtime import cuda_available
from gimbal.system import GimbalSystem, load_system

REPO = Path(__file__).resolve().parents[1]


def tiny_params(precision: str, steps: int = 3) -> dict:
    """params.yaml shrunk to a few steps on 16 px crops of 17-frame clips, in ``precision``."""
    p = yaml.safe_load((REPO / "params.yaml").read_text())
    p["augment"].update(crop=24, center=16, out_size=16)
    p["model"].update(flow_levels=2, kpn_base_channels=4, kpn_depth=1)
    p["train"].update(steps=steps, batch_size=2, val_every=steps, val_clips=2, checkpoint_every=2, samples_per_clip=2,
                      loader="torch", device="cpu", precision=precision)
    for name in ("deblurgan", "dmphn"):
        p["baselines"][name].update(steps=steps, batch_size=2)
    p["baselines"]["deblurgan"]["weights"] = None
    return p


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("precision_shards")
    return training_shards(root)


def _train(p: dict, method: str, shards: Path, out: Path) -> dict:
    cfg = parse_config(p)
    common = dict(shards_dir=shards, model_path=out / "model.pt", metrics_path=out / "metrics.json",
                  live_dir=out / "live", checkpoint_path=out / "ckpt" / "last.pt")
    if method in ("deblurgan", "dmphn"):
        return train_baseline(cfg, method, progress=False, **common)
    return train(cfg, method, exposures_path=out / "exposures.json", schedule_plot=out / "schedule.png", **common)


def _float_dtypes(state: object) -> set[torch.dtype]:
    if isinstance(state, torch.Tensor):
        return {state.dtype} if state.is_floating_point() else set()
    if isinstance(state, dict):
        return set().union(*(_float_dtypes(v) for v in state.values())) if state else set()
    return set()


def _load_weights(method: str, path: Path) -> dict:
    """The networks' weights of a model file, read as evaluation and `gimbal infer` read them."""
    if method == "deblurgan":
        return DeblurGANv2.from_checkpoint(path, feature_extractor=torch.nn.Identity()).generator.state_dict()
    if method == "dmphn":
        return DMPHN.from_checkpoint(path).network.state_dict()
    return load_system(path).net.state_dict()


@pytest.mark.parametrize("method", ["gimbal", "kpn", "dmphn", "deblurgan"])
def test_bf16_trains_every_model_with_finite_loss_and_saves_fp32(method: str, shards: Path, tmp_path: Path) -> None:
    metrics = _train(tiny_params("bf16"), method, shards, tmp_path)
    losses = [float(line.split("\t")[-1]) for line in
              (tmp_path / "live/plots/metrics/train" / ("loss_g.tsv" if method == "deblurgan" else
                                                        "loss.tsv"))
              .read_text().splitlines()[1:]]
    assert len(losses) == 3 and all(math.isfinite(x) for x in losses)
    assert math.isfinite(metrics["train_loss"])
    weights = _load_weights(method, tmp_path / "model.pt")
    assert weights and _float_dtypes(weights) == {torch.float32}
    assert json.loads((tmp_path / "metrics.json").read_text())["selected_step"] in (0, 3)


def test_bf16_runs_only_the_networks_in_bfloat16(shards: Path, tmp_path: Path, monkeypatch) -> None:
    """Inside a bf16 training step the KPN computes in bfloat16 under autocast; the sensor runs outside autocast, its
    burst and exposure logits are float32 (or wider), the network's output reaches the loss as float32, and the
    optimizer's moments are float32."""
    seen: dict[str, object] = {}
    real_init = GimbalSystem.__init__

    def spy_init(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        real_init(self, *args, **kwargs)

        def sensor_hook(module, args, out):  # type: ignore[no-untyped-def]
            if module.training:
                seen["sensor_autocast"] = torch.is_autocast_enabled("cpu")
                seen["burst"] = out.burst.dtype
                seen["logits"] = {p.dtype for p in module.parameters()}

        def kpn_hook(module, args, out):  # type: ignore[no-untyped-def]
            if module.training:
                seen["kpn_autocast"] = torch.is_autocast_enabled("cpu")
                seen["kpn_out"] = out.dtype

        def net_hook(module, args, out):  # type: ignore[no-untyped-def]
            if module.training:
                seen["net_image"] = out.image.dtype

        self.sensor.register_forward_hook(sensor_hook)
        self.net.kpn.register_forward_hook(kpn_hook)
        self.net.register_forward_hook(net_hook)

    monkeypatch.setattr(GimbalSystem, "__init__", spy_init)
    _train(tiny_params("bf16", steps=2), "gimbal", shards, tmp_path)
    assert seen["kpn_autocast"] is True and seen["kpn_out"] == torch.bfloat16
    assert seen["sensor_autocast"] is False and seen["burst"] == torch.float32
    assert all(dtype in (torch.float32, torch.float64) for dtype in seen["logits"])  # type: ignore[union-attr]
    assert seen["net_image"] == torch.float32
    state = torch.load(tmp_path / "ckpt" / "last.pt", weights_only=True)["model"]["optimizer"]["state"]
    assert state and {v.dtype for s in state.values() for k, v in s.items() if k != "step"} <= {torch.float32,
                                                                                               torch.float64}


def test_bf16_single_image_baseline_networks_autocast(shards: Path, tmp_path: Path, monkeypatch) -> None:
    """DMPHN under bf16: its network runs under autocast in training steps (not during validation), the loss it
    returns is finite."""
    calls: list[tuple[bool, bool]] = []
    real_init = DMPHN.__init__

    def spy_init(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        real_init(self, *args, **kwargs)
        self.network.register_forward_hook(
            lambda m, a, o: calls.append((m.training, torch.is_autocast_enabled("cpu"))))

    monkeypatch.setattr(DMPHN, "__init__", spy_init)
    _train(tiny_params("bf16", steps=2), "dmphn", shards, tmp_path)
    assert {autocast for training, autocast in calls if training} == {True}
    assert {autocast for training, autocast in calls if not training} == {False}


def test_fp32_changes_nothing_and_a_bad_precision_is_refused(shards: Path, tmp_path: Path) -> None:
    """fp32 (the default) trains without autocast: the same weights as params without the key."""
    default = tiny_params("fp32", steps=2)
    del default["train"]["precision"]
    _train(tiny_params("fp32", steps=2), "kpn", shards, tmp_path / "a")
    _train(default, "kpn", shards, tmp_path / "b")
    a, b = load_system(tmp_path / "a/model.pt").state_dict(), load_system(tmp_path / "b/model.pt").state_dict()
    assert all(torch.equal(v, b[k]) for k, v in a.items())
    with pytest.raises(ParamError, match=r"train\.precision"):
        parse_config(tiny_params("fp16"))


def test_bf16_killed_and_resumed_equals_an_uninterrupted_run(shards: Path, tmp_path: Path, monkeypatch) -> None:
    """Under bf16 too, a run killed at step 3 (after the checkpoint of step 2) and rerun writes the same model file
    and learning curves as an uninterrupted one."""
    import gimbal.training.burst as train_module

    p = tiny_params("bf16", steps=4)
    _train(p, "gimbal", shards, tmp_path / "a")
    real, calls = train_module.make_irradiance, {"n": 0}

    def killed(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt("killed")
        return real(*args, **kwargs)

    with monkeypatch.context() as m:
        m.setattr(train_module, "make_irradiance", killed)
        with pytest.raises(Interrupted, match="resumes from step 2"):
            _train(p, "gimbal", shards, tmp_path / "b")
    _train(p, "gimbal", shards, tmp_path / "b")
    assert (tmp_path / "a/model.pt").read_bytes() == (tmp_path / "b/model.pt").read_bytes()
    assert (tmp_path / "a/live/plots/metrics/train/loss.tsv").read_text() == \
        (tmp_path / "b/live/plots/metrics/train/loss.tsv").read_text()


@pytest.mark.skipif(not cuda_available(), reason="needs a CUDA device")
def test_bf16_trains_on_cuda(shards: Path, tmp_path: Path) -> None:
    for method in ("gimbal", "dmphn"):
        p = tiny_params("bf16", steps=2)
        p["train"]["device"] = "cuda"
        metrics = _train(p, method, shards, tmp_path / method)
        assert math.isfinite(metrics["train_loss"])
        assert _float_dtypes(_load_weights(method, tmp_path / method / "model.pt")) == {torch.float32}


def test_networks_in_computes_in_bfloat16_and_returns_float32() -> None:
    """A network called inside ``networks_in("bf16")`` computes in bfloat16 (its result differs from float32's) and
    hands back float32; after the context (also after a forward pass that raised) nothing is autocast."""
    from gimbal.training.loop import networks_in

    torch.manual_seed(0)
    conv, x = torch.nn.Conv2d(3, 8, 3), torch.randn(2, 3, 16, 16)
    with networks_in("bf16", "cpu", [conv]):
        y = conv(x)
        outside = torch.nn.functional.conv2d(x, conv.weight)  # not one of the networks: float32
    assert y.dtype == torch.float32 and outside.dtype == torch.float32
    assert not torch.equal(y, conv(x)) and torch.allclose(y, conv(x), atol=0.05)
    assert conv.weight.dtype == torch.float32

    with pytest.raises(RuntimeError), networks_in("bf16", "cpu", [conv]):
        conv(x[:, :2])  # raises inside the forward pass, under autocast
    assert not torch.is_autocast_enabled("cpu")
    with networks_in("fp32", "cpu", [conv]):
        assert not torch.is_autocast_enabled("cpu")
