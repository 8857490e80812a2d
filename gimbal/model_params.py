"""The groups a model is built from, without the root config: a model variant's groups, and a model file's params.

:class:`gimbal.config.Config` parses a whole params file; a trained model file stores those params, and loading it
needs only the groups the model reads. This module holds what both share: the ``variants`` overrides
(:func:`check_variants`, :func:`apply_variant`), the ``sensor`` group with its camera overrides
(:func:`parse_sensor`), how a model file stores its params (:func:`model_file_params`, :func:`check_stored_params`)
and :class:`SystemGroups`, the groups of one end-to-end system (:func:`system_groups` parses them from a stored
params mapping; :func:`gimbal.pipeline.system_groups` takes them from a parsed config).
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from gimbal import methods
from gimbal.data.augment import AugmentConfig
from gimbal.errors import ParamError
from gimbal.eval_config import EvalConfig
from gimbal.losses import LossConfig
from gimbal.models.net import ModelConfig
from gimbal.params import check_seed, parse_fields, parse_group, unknown_key_error
from gimbal.runtime import TrainConfig
from gimbal.sensor.camera import TIMING_FIELDS, CameraSpec
from gimbal.sensor.exposure import ExposureConfig
from gimbal.sensor.model import SensorConfig

__all__ = [
    "VARIANT_GROUPS",
    "SystemGroups",
    "Variant",
    "apply_variant",
    "check_stored_params",
    "check_variants",
    "default_variants",
    "model_file_params",
    "parse_sensor",
    "system_groups",
]

VARIANT_GROUPS: tuple[str, ...] = ("model", "exposure", "loss")
"""The param groups a model variant may override (``variants.<name>.<group>.<key>``)."""

LEGACY_MODEL_KEYS: dict[str, Any] = {"kpn_norm": False}
"""``model`` keys added after model files were first written, with the value a file that lacks one was trained with
(its KPN saw the frames as they are): :func:`system_groups` fills them in, so an older file loads as it trained."""


class Variant(NamedTuple):
    """The groups of one model variant: the configured ones with ``variants.<name>`` applied."""

    model: ModelConfig
    exposure: ExposureConfig
    loss: LossConfig


def default_variants() -> dict[str, dict[str, dict[str, Any]]]:
    """The default ``variants``: every burst method of the table of methods and its
    :attr:`~gimbal.methods.Method.overrides` (``params.yaml`` documents them)."""
    return {n: copy.deepcopy({g: dict(k) for g, k in methods.TABLE[n].overrides.items()}) for n in methods.burst()}


def check_variants(variants: Any) -> dict[str, dict[str, dict[str, Any]]]:
    """The ``variants`` mapping checked: names -> ``{group: {key: value}}`` over :data:`VARIANT_GROUPS`."""
    if not isinstance(variants, dict) or not variants:
        raise ParamError(f"params: 'variants' must map model names to overrides, got {variants!r}")
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for name, overrides in variants.items():
        overrides = overrides or {}
        if not isinstance(overrides, dict):
            raise ParamError(f"params: 'variants.{name}' must map groups {list(VARIANT_GROUPS)} to overrides, "
                             f"got {overrides!r}")
        for group, keys in overrides.items():
            if group not in VARIANT_GROUPS:
                raise unknown_key_error(str(group), VARIANT_GROUPS, f"'variants.{name}'")
            if keys is not None and not isinstance(keys, dict):
                raise ParamError(f"params: 'variants.{name}.{group}' must be a mapping of keys, got {keys!r}")
        out[str(name)] = {g: dict(k or {}) for g, k in overrides.items()}
    return out


def apply_variant(variants: Mapping[str, dict[str, dict[str, Any]]], name: str, model: ModelConfig,
                  exposure: ExposureConfig, loss: LossConfig) -> Variant:
    """The ``model``, ``exposure`` and ``loss`` groups of model variant ``name``: the configured ones with
    ``variants.<name>`` (checked by :func:`check_variants`) applied. ``gimbal: {}`` is the model exactly as
    configured. Unknown variants raise :class:`ParamError`."""
    if name not in variants:
        raise ParamError(f"params: unknown model variant '{name}' (variants: {', '.join(sorted(variants))}); "
                         "add it under 'variants'")
    overrides = variants[name]
    merged = []
    for group, base in zip(VARIANT_GROUPS, (model, exposure, loss), strict=True):
        keys = overrides.get(group) or {}
        parsed = parse_group(type(base), keys, f"variants.{name}.{group}")  # names a bad override key
        merged.append(dataclasses.replace(base, **{k: getattr(parsed, k) for k in keys}))
    return Variant(*merged)


def parse_sensor(sensor: Any) -> SensorConfig:
    """The ``sensor`` group, with ``sensor.overrides`` checked field by field against :class:`CameraSpec`'s types
    before the group builds its camera from them, and a camera value an override made invalid named as
    ``sensor.overrides.<key>`` (each was an internal ``TypeError``, or a message naming only the camera)."""
    if not isinstance(sensor, Mapping) or sensor.get("overrides") is None:
        return parse_group(SensorConfig, sensor, "sensor")
    overrides = parse_fields(CameraSpec, sensor["overrides"], "sensor.overrides")
    try:
        return parse_group(SensorConfig, {**sensor, "overrides": overrides}, "sensor")
    except ParamError as exc:
        bad = [key for key in overrides if f": {key} must" in str(exc)]
        if not bad:
            raise
        raise ParamError(f"params: 'sensor.overrides.{bad[0]}' = {overrides[bad[0]]!r}: {exc}") from None


def model_file_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """``params`` as a model file stores them: a camera preset file (``sensor.camera``) replaced by its values in
    ``sensor.overrides`` (the experiment's timing kept, the run's own overrides applied last), so the stored
    params build the same camera without naming a path (:func:`check_stored_params`). Params without a preset
    file are returned as they are."""
    sensor = params.get("sensor")
    if not isinstance(sensor, Mapping) or sensor.get("camera") is None:
        return dict(params)
    spec = SensorConfig(experiment=sensor.get("experiment", SensorConfig.experiment), camera=sensor["camera"]).spec()
    values = {f.name: getattr(spec, f.name) for f in dataclasses.fields(CameraSpec) if f.name not in TIMING_FIELDS}
    overrides = {**values, **(sensor.get("overrides") or {})}
    return {**params, "sensor": {**sensor, "camera": None, "overrides": overrides}}


def check_stored_params(params: Any) -> dict[str, Any]:
    """A model file's stored params, checked as data before they are parsed: a mapping of param groups that names
    no camera preset file. A model file is data only, and parsing a preset *path* would open it
    (:func:`model_file_params` stores the preset's values instead). Raises :class:`ParamError` saying which."""
    if not isinstance(params, Mapping):
        raise ParamError(f"the stored params are {type(params).__name__}, not a mapping of param groups")
    sensor = params.get("sensor")
    if isinstance(sensor, Mapping) and sensor.get("camera") is not None:
        raise ParamError(f"the stored params name a camera preset file (sensor.camera: "
                         f"{str(sensor['camera'])[:200]!r}); a model file is loaded as data only and never opens a "
                         "path stored in it")
    return dict(params)


@dataclass(frozen=True)
class SystemGroups:
    """The groups an end-to-end system (:class:`gimbal.system.GimbalSystem`) is built from.

    Attributes:
        seed: ``seed`` (the sensor's noise stream).
        sensor: the ``sensor`` group (the camera).
        model, exposure, loss: the variant's groups (:func:`apply_variant`).
        target: ``eval.target`` (the ground truth the network learns).
        white_level: ``augment.white_level`` (the floors' fixed gain).
        steps: ``train.steps`` (the anneal follows it when ``loss.anneal_crossover`` is set).
    """

    seed: int
    sensor: SensorConfig
    model: ModelConfig
    exposure: ExposureConfig
    loss: LossConfig
    target: str
    white_level: tuple[float, float]
    steps: int


def system_groups(params: Mapping[str, Any], variant: str) -> SystemGroups:
    """The :class:`SystemGroups` of ``variant`` parsed from a params mapping (a model file's stored params): only
    the groups a system reads, each checked as the config checks it (:class:`ParamError` naming the key)."""
    model = params.get("model")
    stored = {**params, "model": {**LEGACY_MODEL_KEYS, **(model or {})}} if isinstance(model, Mapping | None) else params
    base = {g: parse_group(cls, stored.get(g), g)
            for g, cls in (("model", ModelConfig), ("exposure", ExposureConfig), ("loss", LossConfig))}
    model, exposure, loss = apply_variant(check_variants(params.get("variants", default_variants())), variant,
                                          **base)
    return SystemGroups(
        seed=check_seed(params.get("seed", 0), "seed"), sensor=parse_sensor(params.get("sensor")), model=model,
        exposure=exposure, loss=loss, target=parse_group(EvalConfig, params.get("eval"), "eval").target,
        white_level=parse_group(AugmentConfig, params.get("augment"), "augment").white_level,
        steps=parse_group(TrainConfig, params.get("train"), "train").steps)
