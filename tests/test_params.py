"""gimbal.params: params.yaml read once, each group a frozen dataclass that rejects unknown keys and wrong types.

The groups checked here are defined in this file (their defaults and types are the test's own), plus the real
groups of :func:`gimbal.config.parse_config` for the promise that a missing key takes the dataclass default."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

from gimbal.config import parse_config
from gimbal.errors import ParamError
from gimbal.params import check_seed, group_dict, load_params, parse_fields, parse_group


@dataclass(frozen=True)
class Inner:
    width: int = 8
    scale: float = 0.5


@dataclass(frozen=True)
class Group:
    steps: int = 100
    lr: float = 1e-3
    name: str = "ours"
    flag: bool = True
    mode: Literal["fast", "exact"] = "exact"
    init_us: tuple[float, ...] | None = None
    pair: tuple[int, int] = (1, 2)
    tags: list[str] = field(default_factory=list)
    inner: Inner = Inner()


def test_missing_keys_take_the_defaults() -> None:
    assert parse_group(Group, {}, "g") == Group()
    assert parse_group(Group, None, "g") == Group()
    got = parse_group(Group, {"steps": 5}, "g")
    assert got.steps == 5 and got.lr == 1e-3 and got.name == "ours" and got.inner == Inner(8, 0.5)


def test_values_are_converted_to_the_field_types() -> None:
    got = parse_group(Group, {"lr": 1, "init_us": [400, 500.5], "pair": [3, 4], "tags": ["a"],
                              "inner": {"scale": 2}, "mode": "fast"}, "g")
    assert got.lr == 1.0 and isinstance(got.lr, float)
    assert got.init_us == (400.0, 500.5) and isinstance(got.init_us, tuple)
    assert all(isinstance(x, float) for x in got.init_us)
    assert got.pair == (3, 4) and got.tags == ["a"] and got.mode == "fast"
    assert got.inner == Inner(width=8, scale=2.0) and isinstance(got.inner.scale, float)
    assert parse_group(Group, {"init_us": None}, "g").init_us is None


def test_groups_are_frozen() -> None:
    got = parse_group(Group, {}, "g")
    with pytest.raises(dataclasses.FrozenInstanceError):
        got.steps = 3  # type: ignore[misc]
    cfg = parse_config({})
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.train.steps = 3  # type: ignore[misc]


def test_an_unknown_key_is_named_with_the_nearest_valid_one() -> None:
    with pytest.raises(ParamError) as err:
        parse_group(Group, {"stesp": 5}, "train")
    line = str(err.value)
    assert "unknown key 'stesp' in 'train'" in line and "did you mean 'steps'?" in line
    assert "valid keys: flag, init_us, inner, lr, mode, name, pair, steps, tags" in line
    with pytest.raises(ParamError, match="unknown key 'zzz' in 'train'; valid keys"):
        parse_group(Group, {"zzz": 1}, "train")  # nothing close: no suggestion
    with pytest.raises(ParamError, match=r"unknown key 'depth' in 'g\.inner'"):
        parse_group(Group, {"inner": {"depth": 2}}, "g")


@pytest.mark.parametrize(("key", "value", "expected"), [
    ("steps", "100", "an int"),
    ("steps", 2.5, "an int"),
    ("steps", True, "an int"),  # a bool is no int here, though Python says it is
    ("lr", "1e-3", "a number"),
    ("lr", float("nan"), "a finite number"),
    ("lr", float("inf"), "a finite number"),
    ("flag", "yes", "true or false"),
    ("flag", 1, "true or false"),
    ("name", 3, "a string"),
    ("mode", "slow", "'fast' or 'exact'"),
    ("init_us", [400, "x"], "a list or null"),
    ("pair", [1, 2, 3], "a list of 2 values"),
    ("inner", 5, "Inner"),
])
def test_a_wrong_type_names_the_key_and_the_type(key: str, value: object, expected: str) -> None:
    with pytest.raises(ParamError) as err:
        parse_group(Group, {key: value}, "grp")
    line = str(err.value)
    assert f"'grp.{key}" in line and expected in line and "\n" not in line, line


def test_a_group_that_is_not_a_mapping() -> None:
    with pytest.raises(ParamError, match="'train' must be a mapping of keys"):
        parse_group(Group, [1, 2], "train")


def test_group_dict_is_what_params_yaml_holds_and_parses_back() -> None:
    got = parse_group(Inner, {"width": 3}, "g")
    assert group_dict(got) == {"width": 3, "scale": 0.5}
    got = parse_group(Group, {"init_us": [1, 2], "tags": ["x"]}, "g")
    plain = group_dict(got)
    assert plain["init_us"] == [1.0, 2.0] and plain["pair"] == [1, 2] and plain["steps"] == 100
    assert parse_group(Group, {k: v for k, v in plain.items() if k != "inner"}, "g") == got


def test_parse_fields_checks_some_fields_only() -> None:
    assert parse_fields(Inner, {"scale": 3}, "sensor.overrides") == {"scale": 3.0}
    with pytest.raises(ParamError, match=r"'sensor\.overrides\.width' must be an int"):
        parse_fields(Inner, {"width": "wide"}, "sensor.overrides")
    with pytest.raises(ParamError, match=r"unknown key 'hight' in 'sensor\.overrides'"):
        parse_fields(Inner, {"hight": 1}, "sensor.overrides")


def test_the_real_groups_default_to_their_dataclass_defaults() -> None:
    cfg = parse_config({})
    for name in ("train", "model", "exposure", "loss", "augment"):
        group = getattr(cfg, name)
        assert group == type(group)(), name  # every field at the default the dataclass declares
    with pytest.raises(ParamError, match=r"unknown key 'stpes' in 'train'; did you mean 'steps'"):
        parse_config({"train": {"stpes": 3}})
    with pytest.raises(ParamError, match=r"'train\.steps' must be an int"):
        parse_config({"train": {"steps": "many"}})


@pytest.mark.parametrize("value", [-1, 2**32, 1.5, True, "7", None])
def test_check_seed_rejects_what_numpy_and_torch_cannot_seed(value: object) -> None:
    with pytest.raises(ParamError, match="'seed' must be an int in"):
        check_seed(value, "seed")


def test_check_seed_accepts_the_range_ends() -> None:
    assert check_seed(0, "seed") == 0 and check_seed(2**32 - 1, "seed") == 2**32 - 1


def test_load_params_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(ParamError, match=f"{tmp_path / 'nope.yaml'}: params file not found"):
        load_params(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [unclosed\n")
    with pytest.raises(ParamError, match=f"{bad}: invalid YAML"):
        load_params(bad)
    bad.write_text("- a\n- b\n")
    with pytest.raises(ParamError, match=f"{bad}: expected a mapping"):
        load_params(bad)
    bad.write_text("")
    assert load_params(bad) == {}
    good = tmp_path / "params.yaml"
    good.write_text("seed: 3\ntrain:\n  steps: 7\n")
    assert load_params(good) == {"seed": 3, "train": {"steps": 7}}


def test_numbers_read_as_dvc_writes_them(tmp_path):
    """`dvc exp run -S sensor.tau_decay=1e-5` writes ``1e-05`` (YAML 1.2, ruamel); PyYAML's YAML 1.1 rules read that as
    a string. The params file must read as DVC (ruamel, the independent reader) reads it."""
    from dvc.utils.hydra import apply_overrides
    from ruamel.yaml import YAML

    from gimbal.config import load_config

    path = tmp_path / "params.yaml"
    path.write_text("sensor:\n  tau_decay: 1.0e-2\n  tau_min: 0.1\ntrain:\n  lr: 1.0e-3\n")
    apply_overrides(path, ["sensor.tau_decay=1e-5", "train.lr=2E-4"])
    assert "1e-05" in path.read_text()
    theirs = YAML(typ="safe").load(path.read_text())
    assert load_params(path) == theirs
    assert load_config(path).sensor.tau_decay == 1e-5 and load_config(path).train.lr == 2e-4
    path.write_text("a: 1e5\nb: '1e5'\nc: 1_000\nd: .5\ne: 12\n")
    assert load_params(path) == {"a": 1e5, "b": "1e5", "c": 1000, "d": 0.5, "e": 12}
