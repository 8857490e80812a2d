"""The params schema: one typed group per dataclass, params.yaml its documented copy, typos rejected."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from gimbal.config import GROUPS, default_params, parse_config
from gimbal.errors import ParamError

REPO = Path(__file__).resolve().parents[1]


def _params() -> dict:
    return yaml.safe_load((REPO / "params.yaml").read_text())


def test_params_yaml_equals_the_dataclass_defaults() -> None:
    """No second default: every key of params.yaml is a dataclass field with the same value, and back."""
    assert _params() == default_params()


@pytest.mark.parametrize(
    ("path", "hint"),
    [(("model", "learn_exposur"), "learn_exposure"), (("train", "setps"), "steps"),
     (("sensor", "experimnt"), "experiment"), (("clips", "lenght"), "length"), (("shards", "codek"), "codec"),
     (("interpolate", "methd"), "method"), (("data", "source"), "sources"), (("augment", "white_levl"), "white_level"),
     (("eval", "clip"), "clips"), (("baselines", "deblurgan", "step"), "steps"), (("modle",), "model")],
)
def test_a_misspelt_key_is_rejected_with_the_nearest_name(path: tuple[str, ...], hint: str) -> None:
    params = _params()
    node = params
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = node.get(hint, 1) if isinstance(node.get(hint), (int, float, str, bool)) else 1
    if len(path) > 1:
        node.pop(hint, None)
    with pytest.raises(ParamError, match=f"did you mean '{hint}'"):
        parse_config(params)


def test_wrong_types_name_the_key() -> None:
    params = _params()
    params["train"]["lr"] = "fast"
    with pytest.raises(ParamError, match="train.lr"):
        parse_config(params)
    params = _params()
    params["variants"]["kpn"]["model"]["use_flow"] = "no"
    with pytest.raises(ParamError, match="variants.kpn.model.use_flow"):
        parse_config(params)


def test_every_group_is_checked() -> None:
    assert set(GROUPS) | {"seed", "variants", "baselines"} == set(_params())
    parse_config(copy.deepcopy(_params()))


def test_a_stage_with_a_typo_exits_with_one_line(tmp_path: Path) -> None:
    """`model.learn_exposur: false` used to train with learned exposures and exit 0."""
    params = _params()
    params["model"]["learn_exposur"] = False
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    proc = subprocess.run([sys.executable, str(REPO / "stages/train.py"), "--params", str(tmp_path / "params.yaml"),
                           "--variant", "gimbal", "--shards", str(tmp_path / "none")], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1].startswith("error: params: unknown key 'learn_exposur' in 'model'")
    assert "did you mean 'learn_exposure'" in proc.stderr


def test_timing_control_variant_is_uniform_with_the_reference_centred() -> None:
    """params.yaml's `gimbal_uniform_centred`: the budget, n and readouts of `gimbal_uniform`, its reference exposure
    centred on T/2 (the uniform one's is centred early), its exposures shorter, the idle time first."""
    from gimbal.sensor.model import Sensor

    cfg = parse_config(yaml.safe_load((REPO / "params.yaml").read_text()))
    scheds = {}
    for v in ("gimbal_uniform", "gimbal_uniform_centred"):
        model, exposure, _ = cfg.variant(v)
        scheds[v] = Sensor.from_config(cfg.sensor, exposure, model.learn_exposure).exposure.to_us()
    uni, cen = scheds["gimbal_uniform"], scheds["gimbal_uniform_centred"]
    assert (uni["n"], uni["budget_us"], uni["readout_us"]) == (cen["n"], cen["budget_us"], cen["readout_us"])
    ref = uni["n"] // 2
    assert uni["starts_us"][ref] + uni["durations_us"][ref] / 2 < uni["budget_us"] / 2 - 1
    assert cen["starts_us"][ref] + cen["durations_us"][ref] / 2 == pytest.approx(cen["budget_us"] / 2, abs=1e-6)
    assert max(cen["durations_us"]) < min(uni["durations_us"]) and cen["starts_us"][0] > 0
    assert len(set(cen["durations_us"])) == 1 and not cen["learned"]


def test_centre_reference_with_learned_exposures_is_refused() -> None:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["variants"]["gimbal_uniform_centred"]["model"] = {"learn_exposure": True}
    with pytest.raises(ParamError, match="centre_reference.*gimbal_uniform_centred.*learn_exposure"):
        parse_config(params)
