"""The params file as one typed root config: every group is one frozen dataclass in the module that owns it.

A stage parses ``params.yaml`` once, with :func:`load_config`, into a :class:`Config` whose fields are the
group dataclasses of :data:`GROUPS` (plus ``seed``, ``variants`` and ``baselines``, whose entries come from the
table of methods, :data:`gimbal.methods.TABLE`), and hands each function
only the groups it uses. Every group is parsed even when the stage uses few, so a misspelt key anywhere
(``model.learn_exposur``) fails before any work, with the nearest valid name. The groups a stage declares
in ``uses`` are the only ones it can read: touching another raises :class:`UndeclaredGroupError`, and a
test checks that each stage's ``uses`` equals the groups of its ``params:`` list in ``dvc.yaml``, so DVC
re-runs a stage exactly when a param it reads changes.

The dataclass fields hold the only defaults; ``params.yaml`` is the documented copy of them (a test checks
that they agree). :meth:`Config.raw` is the file as read: trained models store it, and
:func:`gimbal.model_params.system_groups` parses the groups a loaded model reads from them.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from gimbal import methods
from gimbal.data.augment import AugmentConfig
from gimbal.data.clips import ClipsConfig
from gimbal.data.fetch import DataConfig
from gimbal.data.interpolate import InterpolateConfig
from gimbal.data.samples import SamplesConfig
from gimbal.data.shards import ShardConfig
from gimbal.errors import ParamError
from gimbal.eval_config import EvalConfig
from gimbal.losses import LossConfig
from gimbal.model_params import Variant, apply_variant, check_variants, default_variants, parse_sensor
from gimbal.models.flow_pretrain import FlowPretrainConfig
from gimbal.models.net import ModelConfig
from gimbal.params import check_seed, group_dict, load_params, parse_group, unknown_key_error
from gimbal.runtime import TrainConfig
from gimbal.sensor.exposure import ExposureConfig, centred_schedule_us
from gimbal.sensor.model import SensorConfig

__all__ = [
    "GROUPS",
    "TOP_LEVEL",
    "Config",
    "UndeclaredGroupError",
    "Variant",
    "baselines_config",
    "check_params",
    "default_params",
    "default_variants",
    "load_config",
    "parse_config",
]


@functools.cache
def _baselines_class(groups: tuple[tuple[str, type], ...]) -> type:
    def reduce(self: Any) -> tuple[Any, ...]:  # pickled by its groups: the class is made at run time
        return _baselines, (tuple((name, getattr(self, name)) for name, _ in groups),)

    return dataclasses.make_dataclass(
        "BaselinesConfig", [(name, cls, field(default_factory=cls)) for name, cls in groups], frozen=True,
        namespace={"__doc__": "Params group ``baselines``: one sub-group per single-image method.",
                   "__module__": __name__, "__reduce__": reduce})


def _baselines(items: tuple[tuple[str, Any], ...]) -> Any:
    """A ``baselines`` group of these sub-groups (how one is unpickled)."""
    return _baselines_class(tuple((name, type(value)) for name, value in items))(**dict(items))


def baselines_config() -> type:
    """The dataclass of params group ``baselines``: one field ``<name>`` per single-image method of the table of
    methods, its :attr:`~gimbal.methods.Method.config` (the same class while the table's baselines are the same)."""
    return _baselines_class(tuple((n, methods.TABLE[n].config) for n in methods.single()))  # type: ignore[misc]


class UndeclaredGroupError(AttributeError):
    """Code read a params group its stage did not declare in ``uses`` (a programming error, not a user's)."""


class _Undeclared:
    """Stands for a group the stage did not declare: any use names the group and the fix."""

    def __init__(self, group: str) -> None:
        object.__setattr__(self, "_group", group)

    def __getattr__(self, name: str) -> Any:
        group = object.__getattribute__(self, "_group")
        raise UndeclaredGroupError(
            f"params group '{group}' is read ('{group}.{name}') but the stage did not declare it: add '{group}' to "
            "the stage's USES and to its params list in dvc.yaml")

    def __repr__(self) -> str:
        return f"<undeclared params group {object.__getattribute__(self, '_group')!r}>"


@dataclass(frozen=True)
class Config:
    """The whole params file, one typed field per group (see the module docstring).

    Attributes:
        seed: the run seed (``seed``): weight init, augmentation, noise (:class:`gimbal.runtime.Seeds`).
        variants: ``variants.<name>`` -> ``{"model": {...}, "exposure": {...}, "loss": {...}}`` overrides (checked).
        baselines: ``baselines.<name>``: the group of each single-image method (:func:`baselines_config`).
        raw: the params as read from the file (stored in model files; not for reading params from).
    """

    seed: int = 0
    samples: SamplesConfig = SamplesConfig()
    data: DataConfig = DataConfig()
    clips: ClipsConfig = ClipsConfig()
    interpolate: InterpolateConfig = InterpolateConfig()
    shards: ShardConfig = ShardConfig()
    sensor: SensorConfig = SensorConfig()
    exposure: ExposureConfig = ExposureConfig()
    augment: AugmentConfig = AugmentConfig()
    model: ModelConfig = ModelConfig()
    loss: LossConfig = LossConfig()
    train: TrainConfig = TrainConfig()
    flow_pretrain: FlowPretrainConfig = FlowPretrainConfig()
    eval: EvalConfig = EvalConfig()
    variants: dict[str, dict[str, dict[str, Any]]] = field(default_factory=default_variants)
    baselines: Any = field(default_factory=lambda: baselines_config()())
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def variant(self, name: str) -> Variant:
        """The ``model``, ``exposure`` and ``loss`` groups of model variant ``name``, with ``variants.<name>`` applied.

        ``gimbal: {}`` is the model exactly as configured. Unknown variants raise :class:`ParamError`.
        """
        return apply_variant(self.variants, name, self.model, self.exposure, self.loss)


_NOT_GROUPS = ("seed", "variants", "baselines", "raw")
GROUPS: dict[str, type] = {f.name: type(f.default) for f in dataclasses.fields(Config) if f.name not in _NOT_GROUPS}
"""Params group -> its config dataclass (the group fields of :class:`Config`, in file order)."""

TOP_LEVEL: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(Config) if f.name != "raw")
"""Every top-level key of the params file (the names a stage may declare it uses)."""


def _check_across_groups(config: Config) -> None:
    """Limits that tie groups together, checked before any work (each message names both keys)."""
    size = config.augment.out_size
    for variant in config.variants:
        model, exposure, _ = config.variant(variant)
        where = "" if variant == "gimbal" else f" (variant '{variant}')"
        coarsest = {"flow_levels": (2 ** (model.flow_levels - 1) if model.use_flow else 1, "pyramid"),
                    "kpn_depth": (2 ** model.kpn_depth, "U-Net")}
        for key, (need, what) in coarsest.items():
            if need > size:
                raise ParamError(f"params: 'model.{key}' = {getattr(model, key)}{where} needs crops of at least "
                                 f"{need} px (the {what}'s coarsest level), but 'augment.out_size' is {size}; "
                                 f"lower model.{key} or raise augment.out_size")
        if exposure.centre_reference:
            if model.learn_exposure:
                raise ParamError(f"params: 'exposure.centre_reference: true'{where} is a fixed schedule; set "
                                 "'model.learn_exposure: false' beside it")
            spec = config.sensor.spec()
            try:  # it must fit
                centred_schedule_us(exposure.n, spec.budget_s, spec.min_exposure_s, spec.readout_s)
            except ParamError as exc:
                raise ParamError(f"{exc}{where}; or leave that variant out of 'variants' (and its train stage out "
                                 "of dvc.yaml)") from exc
        if exposure.init_us is not None:
            dt_min_us = config.sensor.spec().min_exposure_s * 1e6
            short = [d for d in exposure.init_us if d < dt_min_us]
            if short:
                raise ParamError(f"params: 'exposure.init_us'{where} has {short} us, shorter than the camera's "
                                 f"minimum exposure dt_min = {dt_min_us:g} us; raise them")
    pretrain = config.flow_pretrain.size or size
    multiple = 2 ** (config.model.flow_levels - 1)
    if config.flow_pretrain.use and pretrain % multiple:
        raise ParamError(f"params: 'flow_pretrain.size' (null: 'augment.out_size') = {pretrain} px must be a multiple "
                         f"of {multiple} (2 ** (model.flow_levels - 1), the flow pyramid); set flow_pretrain.size")


def parse_config(params: Mapping[str, Any], uses: Iterable[str] | None = None) -> Config:
    """Parse a whole params mapping into a :class:`Config` (raises :class:`ParamError` naming the first bad key).

    Every group is parsed and checked; with ``uses`` (top-level names of :data:`TOP_LEVEL`) the others are
    replaced by a placeholder that raises :class:`UndeclaredGroupError` when read.
    """
    if not isinstance(params, Mapping):
        raise ParamError(f"params: expected a mapping of param groups at top level, got {params!r}")
    for key in params:
        if key not in TOP_LEVEL:
            raise unknown_key_error(str(key), TOP_LEVEL, "the params file's top level")
    kwargs: dict[str, Any] = {"seed": check_seed(params.get("seed", 0), "seed")}
    for group, cls in GROUPS.items():
        kwargs[group] = parse_sensor(params.get(group)) if group == "sensor" else parse_group(cls, params.get(group),
                                                                                                group)
    kwargs["baselines"] = parse_group(baselines_config(), params.get("baselines"), "baselines")
    kwargs["variants"] = check_variants(params.get("variants", default_variants()))
    config = Config(**kwargs, raw=dict(params))
    _check_across_groups(config)
    if uses is None:
        return config
    uses = set(uses)
    unknown = uses - set(TOP_LEVEL)
    if unknown:
        raise ValueError(f"parse_config: unknown groups in uses: {sorted(unknown)}")
    hidden = {g: _Undeclared(g) for g in TOP_LEVEL if g not in uses}
    return dataclasses.replace(config, **hidden)


def load_config(path: str | os.PathLike[str] = "params.yaml", uses: Iterable[str] | None = None) -> Config:
    """Read and parse the params file at ``path`` (see :func:`parse_config`); errors name the file or key."""
    return parse_config(load_params(path), uses)


def check_params(params: Mapping[str, Any]) -> None:
    """Parse every group of ``params`` (raises :class:`ParamError` naming the first bad key or value)."""
    parse_config(params)


def default_params() -> dict[str, Any]:
    """The params every dataclass default amounts to (what ``params.yaml`` documents)."""
    params: dict[str, Any] = {"seed": 0}
    params.update({group: group_dict(cls()) for group, cls in GROUPS.items()})
    params["variants"] = default_variants()
    params["baselines"] = {name: group_dict(methods.TABLE[name].config()) for name in methods.single()}  # type: ignore[misc]
    return params
