"""The experiment tools read params exactly as the stages do (experiments/inmemory.py)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from gimbal.errors import ParamError

REPO = Path(__file__).resolve().parents[1]


def _inmemory():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("inmemory", REPO / "experiments" / "inmemory.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_overrides_parse_like_dvc_set_param() -> None:
    params = _inmemory().load_params(["train.lr=3e-3", "model.kpn_depth=4", "loss.anneal=true",
                                      "augment.window_frames=null", "baselines.deblurgan.width_mult=1.0"])
    assert params["train"]["lr"] == pytest.approx(3e-3) and isinstance(params["train"]["lr"], float)
    assert params["model"]["kpn_depth"] == 4 and params["loss"]["anneal"] is True
    assert params["augment"]["window_frames"] is None
    assert params["baselines"]["deblurgan"]["width_mult"] == 1.0


def test_a_misspelt_override_is_rejected_by_name() -> None:
    with pytest.raises(ParamError, match="did you mean 'kpn_depth'"):
        _inmemory().load_params(["model.kpn_dept=4"])
