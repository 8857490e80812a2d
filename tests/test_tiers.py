"""Named tiers (``tiers/*.yaml``): ``dvc exp run -n NAME $(gimbal tier NAME)`` must set exactly the tier's params.

The independent check is DVC's own: its ``-S`` parser and params writer (``dvc.utils.hydra.apply_overrides``, what
``dvc exp run -S`` calls) applied to the printed flags must give the params a direct merge of the tier file gives.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from dvc.utils.hydra import apply_overrides

from gimbal.cli import main
from gimbal.errors import ParamError
from gimbal.params import load_params
from gimbal.pipeline import tier_overrides
from gimbal.tiers import apply, flatten, set_flags

REPO = Path(__file__).resolve().parents[1]


def _merged(params: dict, tier: dict) -> dict:
    """The tier file merged into params by a plain recursive walk (not :func:`gimbal.tiers.apply`)."""
    out = dict(params)
    for key, value in tier.items():
        out[key] = _merged(params[key], value) if isinstance(value, dict) else value
    return out


@pytest.mark.parametrize("name", sorted(p.stem for p in (REPO / "tiers").glob("*.yaml")))
def test_dvc_applies_exactly_the_tier(name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    params = tmp_path / "params.yaml"
    shutil.copy(REPO / "params.yaml", params)
    tier = yaml.safe_load((REPO / "tiers" / f"{name}.yaml").read_text())
    assert main(["tier", str(REPO / "tiers" / f"{name}.yaml"), "--params", str(params)]) == 0
    words = capsys.readouterr().out.split()  # an unquoted $(gimbal tier NAME) splits on whitespace only
    assert words[0::2] == ["-S"] * (len(words) // 2)
    before = load_params(params)
    apply_overrides(params, words[1::2])  # what `dvc exp run -S ...` does to params.yaml
    after = load_params(params)
    assert after == _merged(before, tier)
    assert after != before
    assert "# " in params.read_text()  # DVC keeps the file's comments


def test_medium_is_the_paper_widths_at_64_px() -> None:
    over = tier_overrides(str(REPO / "tiers/medium.yaml"), REPO / "params.yaml")
    assert over["augment.out_size"] == 64 and over["model.kpn_base_channels"] == 64
    assert over["model.flow_levels"] == 4 and over["model.kpn_depth"] == 4


def test_a_misspelt_key_is_refused_naming_the_tier_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  stepz: 10\n")
    with pytest.raises(ParamError, match=r"bad\.yaml.*stepz"):
        tier_overrides(str(bad), REPO / "params.yaml")
    bad.write_text("nogroup:\n  x: 1\n")
    with pytest.raises(ParamError, match="bad.yaml"):
        tier_overrides(str(bad), REPO / "params.yaml")
    with pytest.raises(ParamError, match="tiers in"):
        tier_overrides("no_such_tier", REPO / "params.yaml")


def test_flags_need_no_shell_quoting() -> None:
    over = flatten({"a": {"b": [1, 2], "c": None, "d": True, "e": "bf16", "f": 1.0e-3}})
    assert over == {"a.b": [1, 2], "a.c": None, "a.d": True, "a.e": "bf16", "a.f": 1.0e-3}
    flags = set_flags(over)
    assert all(not any(ch.isspace() or ch in "'\"" for ch in f) for f in flags)
    assert {k: yaml.safe_load(v) for k, v in (f.split("=", 1) for f in flags[1::2])} == over
    with pytest.raises(ParamError, match="needs shell quoting"):
        set_flags({"x": "two words"})
    assert apply({"a": {"b": 1}}, {"a.b": 2}) == {"a": {"b": 2}}
    with pytest.raises(ParamError, match="not a params group"):
        apply({"a": 1}, {"a.b": 2})
