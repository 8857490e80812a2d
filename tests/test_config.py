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
