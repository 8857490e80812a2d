"""The params file as a whole: every group is one typed, frozen dataclass in the module that owns it.

:data:`GROUPS` maps each params group to its dataclass; the dataclass fields hold the only defaults, and
``params.yaml`` is the documented copy of them (a test checks that they agree). :func:`check_params`
parses every group, so a misspelt key anywhere (``model.learn_exposur``) or an unknown group fails
before a stage does any work, with the nearest valid name.
"""

from __future__ import annotations

from typing import Any

from gimbal.baselines.deblurgan import DeblurGANConfig
from gimbal.baselines.train_deblurgan import DeblurGANTrainConfig
from gimbal.data.augment import AugmentConfig
from gimbal.data.clips import ClipsConfig
from gimbal.data.fetch import DataConfig
from gimbal.data.interpolate import InterpolateConfig
from gimbal.data.samples import SamplesConfig
from gimbal.data.shards import ShardConfig
from gimbal.errors import ParamError
from gimbal.evaluate import EvalConfig
from gimbal.losses import LossConfig
from gimbal.models.gimbal import ModelConfig
from gimbal.params import group_dict, parse_group, seed_from_params, unknown_key_error
from gimbal.sensor.exposure import ExposureConfig
from gimbal.sensor.model import SensorConfig
from gimbal.system import variant_configs
from gimbal.train import TrainConfig

__all__ = ["GROUPS", "TOP_LEVEL", "check_params", "default_params"]

GROUPS: dict[str, type] = {
    "samples": SamplesConfig,
    "data": DataConfig,
    "clips": ClipsConfig,
    "interpolate": InterpolateConfig,
    "shards": ShardConfig,
    "sensor": SensorConfig,
    "exposure": ExposureConfig,
    "augment": AugmentConfig,
    "model": ModelConfig,
    "loss": LossConfig,
    "train": TrainConfig,
    "eval": EvalConfig,
}
"""Params group -> its config dataclass."""

TOP_LEVEL: tuple[str, ...] = ("seed", *GROUPS, "variants", "baselines")
"""Every top-level key of the params file."""

DEFAULT_VARIANTS: dict[str, dict[str, dict[str, Any]]] = {
    "gimbal": {},
    "gimbal_uniform": {"model": {"learn_exposure": False}, "exposure": {"idle_slot": False, "init_us": None}},
    "kpn": {"model": {"learn_exposure": False, "use_flow": False}, "exposure": {"idle_slot": False, "init_us": None}},
}
"""The trained models: the paper's method, its uniform-exposure ablation (uniform over the whole budget) and
the KPN baseline on the uniform burst."""


def check_params(params: dict[str, Any]) -> None:
    """Parse every group of ``params`` (raises :class:`ParamError` naming the first bad key or value)."""
    for key in params:
        if key not in TOP_LEVEL:
            raise unknown_key_error(str(key), TOP_LEVEL, "the params file's top level")
    seed_from_params(params)
    for group, cls in GROUPS.items():
        parse_group(cls, params.get(group), group)
    variants = params.get("variants", DEFAULT_VARIANTS)
    if not isinstance(variants, dict) or not variants:
        raise ParamError(f"params: 'variants' must map model names to overrides, got {variants!r}")
    for name in variants:
        variant_configs({**params, "variants": variants}, name)
    DeblurGANTrainConfig.from_params(params)


def default_params() -> dict[str, Any]:
    """The params every dataclass default amounts to (what ``params.yaml`` documents)."""
    params: dict[str, Any] = {"seed": 0}
    params.update({group: group_dict(cls()) for group, cls in GROUPS.items()})
    params["variants"] = DEFAULT_VARIANTS
    deblurgan = {k: v for k, v in group_dict(DeblurGANConfig()).items() if k not in ("channels", "seed")}
    params["baselines"] = {"deblurgan": {**deblurgan, **group_dict(DeblurGANTrainConfig())}}
    return params
