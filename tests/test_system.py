"""gimbal.system: the sensor and the network joined, and its model file (written by save_system, read through the
one reader of torch files)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from model_fixtures import flip_tensor_bytes

from gimbal.checkpoint import save_checkpoint
from gimbal.errors import (
    DataError,
    ModelFileCorrupt,
    ModelFileIncompatible,
    ModelFileNotFound,
    ModelFileUnreadable,
    ModelFileWrongKind,
    ParamError,
)
from gimbal.system import GimbalSystem, load_system, read_system_file, save_system

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_params() -> dict[str, Any]:
    """params.yaml with tiny networks."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["augment"].update(crop=32, center=16, out_size=16)
    params["model"].update(kpn_depth=1, flow_levels=2, kpn_base_channels=4, flow_channels=[8, 8, 8], kernel_size=3)
    params["train"].update(loader="torch", device="cpu", batch_size=2)
    return params


def _trained_looking(system: GimbalSystem, seed: int = 0) -> GimbalSystem:
    """``system`` with every parameter moved off its init (the exposures too), as a trained model's would be."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in system.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return system


def _burst(system: GimbalSystem, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(2, system.sensor.n, system.net.channels, 16, 16, generator=g) * 0.5


def test_a_saved_system_loads_back_to_the_same_model(tmp_path: Path) -> None:
    params = tiny_params()
    system = _trained_looking(GimbalSystem.from_params(params)).eval()
    path = tmp_path / "gimbal.pt"
    save_system(path, system, params, "gimbal")
    loaded = load_system(path)
    assert not loaded.training
    burst = _burst(system)
    with torch.no_grad():
        torch.testing.assert_close(loaded.reconstruct(burst).image, system.reconstruct(burst).image, atol=0, rtol=0)
    assert loaded.sensor.schedule_us() == system.sensor.schedule_us()
    for (name, a), (_, b) in zip(system.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    state = read_system_file(path)
    assert state["variant"] == "gimbal" and state["exposures"]["durations_us"] == system.sensor.schedule_us()[
        "durations_us"]
    save_system(tmp_path / "again.pt", loaded, params, "gimbal")  # the same model, the same bytes
    assert (tmp_path / "again.pt").read_bytes() == path.read_bytes()


@pytest.mark.parametrize("normalize", [True, False])
def test_the_network_sees_the_burst_normalized_by_eq_14_or_not(normalize: bool) -> None:
    """Eq. (14): with normalization the network gets each frame times T / dt_i (T the budget, dt_i its exposure),
    the numbers taken from the schedule in microseconds; without it (the ablation) the raw burst."""
    params = tiny_params()
    params["exposure"].update(idle_slot=True, init_us=[872, 234, 583])  # the supplement's learned schedule
    system = GimbalSystem.from_params(params, "gimbal" if normalize else "gimbal_no_norm")
    assert system.normalize is normalize
    sched = system.sensor.schedule_us()
    assert len(set(sched["durations_us"])) > 1  # unequal exposures: a wrong scale per frame would show
    seen = {}
    system.net.register_forward_pre_hook(lambda m, args: seen.update(x=args[0].detach().clone()))
    burst = _burst(system)
    with torch.no_grad():
        system.reconstruct(burst)
    scale = [sched["budget_us"] / d if normalize else 1.0 for d in sched["durations_us"]]
    for i, s in enumerate(scale):
        torch.testing.assert_close(seen["x"][:, i].double(), burst[:, i].double() * s, rtol=1e-5, atol=1e-7)


def test_a_network_for_another_burst_length_is_refused() -> None:
    params = tiny_params()
    system = GimbalSystem.from_params(params)
    other = GimbalSystem.from_params({**params, "exposure": {**params["exposure"], "n": 5, "init_us": None}})
    with pytest.raises(ParamError, match="network burst length 5 != sensor burst length 3"):
        GimbalSystem(system.sensor, other.net)


def test_a_training_step_gives_a_finite_loss_that_reaches_the_exposures() -> None:
    params = tiny_params()
    system = GimbalSystem.from_params(params)
    g = torch.Generator().manual_seed(0)
    clip = torch.rand(2, 9, system.net.channels, 16, 16, generator=g) * 3e5  # e-/s
    srgb = torch.rand(2, system.net.channels, 16, 16, generator=g)
    out = system(clip, step=0, generator=torch.Generator().manual_seed(1), srgb=srgb)
    assert out.loss.dim() == 0 and torch.isfinite(out.loss)
    assert out.image.shape == out.target.shape == (2, system.net.channels, 16, 16)
    out.loss.backward()
    grad = system.sensor.exposure.logits.grad
    assert grad is not None and grad.abs().sum() > 0


# ----------------------------------------------------------------------------------------------- model file errors
@pytest.fixture
def model(tmp_path: Path) -> Path:
    params = tiny_params()
    path = tmp_path / "gimbal.pt"
    save_system(path, GimbalSystem.from_params(params), params, "gimbal")
    return path


def _stored(path: Path) -> dict[str, Any]:
    state = torch.load(path, weights_only=True)
    state.pop("tensors_sha256")
    return state


def test_each_damaged_model_file_is_one_error_naming_the_file(model: Path, tmp_path: Path) -> None:
    cases: dict[str, tuple[type, Path]] = {}
    cases["missing"] = (ModelFileNotFound, tmp_path / "missing.pt")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a model\n" * 10)
    cases["garbage"] = (ModelFileUnreadable, garbage)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(model.read_bytes()[:2000])
    cases["truncated"] = (ModelFileUnreadable, truncated)
    flipped = tmp_path / "flipped.pt"
    flipped.write_bytes(model.read_bytes())
    flip_tensor_bytes(flipped)
    cases["flipped"] = (ModelFileCorrupt, flipped)
    no_sum = tmp_path / "no_sum.pt"
    torch.save(_stored(model), no_sum)
    cases["no checksum"] = (ModelFileCorrupt, no_sum)
    other = tmp_path / "other.pt"
    save_checkpoint(other, {"format": "dmphn-v1", "config": {}, "network": {"w": torch.zeros(2)}})
    cases["another kind"] = (ModelFileWrongKind, other)
    params_list = tmp_path / "params_list.pt"
    save_checkpoint(params_list, {**_stored(model), "params": ["seed", 0]})
    cases["params not a mapping"] = (ModelFileWrongKind, params_list)
    bad_params = tmp_path / "bad_params.pt"
    state = _stored(model)
    state["params"] = copy.deepcopy(state["params"])
    state["params"]["model"]["channels"] = "three"
    save_checkpoint(bad_params, state)
    cases["params do not build"] = (ModelFileIncompatible, bad_params)
    wider = tmp_path / "wider.pt"
    state = _stored(model)
    state["params"] = copy.deepcopy(state["params"])
    state["params"]["model"]["kernel_size"] = 5  # the stored weights are those of 3 x 3 kernels
    save_checkpoint(wider, state)
    cases["weights do not fit"] = (ModelFileIncompatible, wider)
    for name, (error, path) in cases.items():
        with pytest.raises(DataError) as err:
            load_system(path)
        line = str(err.value)
        assert type(err.value) is error, (name, type(err.value), line)
        assert line.startswith(f"{path}: ") and "\n" not in line, (name, line)
        assert "re-train" in line or "train it first" in line, (name, line)
    assert load_system(model).sensor.n == 3  # the undamaged file still loads


# -- the groups a system is built from: from a parsed params file (training) and from a model file's params --------
@pytest.mark.parametrize("variant", ["gimbal", "gimbal_uniform", "kpn", "gimbal_no_norm"])
def test_a_model_file_builds_the_system_its_training_built(variant: str) -> None:
    """The groups parsed from stored params (``system_groups``, what ``load_system`` reads) equal those the training
    took from the whole parsed config (``pipeline.system_groups``), so both build the same system: same weights
    from the same seed, same schedule, loss and display."""
    from gimbal.config import parse_config
    from gimbal.model_params import system_groups
    from gimbal.pipeline import build_system
    from gimbal.pipeline import system_groups as groups_of_config

    params = tiny_params()
    params["train"]["steps"] = 40
    params["loss"].update(anneal=True, anneal_crossover=0.5)  # the anneal follows train.steps
    assert system_groups(params, variant) == groups_of_config(parse_config(params), variant)
    torch.manual_seed(3)
    stored = GimbalSystem.from_params(params, variant)
    torch.manual_seed(3)
    trained = build_system(parse_config(params), variant)
    assert stored.state_dict().keys() == trained.state_dict().keys()
    assert all(torch.equal(v, trained.state_dict()[k]) for k, v in stored.state_dict().items())
    assert stored.sensor.schedule_us() == trained.sensor.schedule_us()
    assert stored.loss_config == trained.loss_config and stored.loss_config.anneal_alpha != parse_config(
        params).loss.anneal_alpha  # alpha follows the run's 40 steps in both
    assert stored.normalize == trained.normalize and stored.display.target == trained.display.target


def test_the_groups_of_stored_params_are_checked_by_key() -> None:
    from gimbal.model_params import system_groups

    params = tiny_params()
    with pytest.raises(ParamError, match="unknown model variant 'nope'"):
        system_groups(params, "nope")
    with pytest.raises(ParamError, match="did you mean 'use_flow'"):
        system_groups({**params, "model": {**params["model"], "use_flw": False}}, "gimbal")
    with pytest.raises(ParamError, match="variants.kpn.model"):
        system_groups({**params, "variants": {"kpn": {"model": {"use_flw": False}}}}, "kpn")
    with pytest.raises(ParamError, match="sensor.overrides.read_noise_e"):
        system_groups({**params, "sensor": {"overrides": {"read_noise_e": "loud"}}}, "gimbal")
