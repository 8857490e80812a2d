"""The params parser: reading ``params.yaml``, and building one typed frozen dataclass per params group.

The only module (with :mod:`gimbal.config`, which assembles the groups) that reads a raw params mapping."""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import re
import types
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar, Union

import yaml

from gimbal.errors import ParamError


def check_seed(value: Any, key: str) -> int:
    """``value`` as a seed for params key ``key``: an int in ``[0, 2**32)`` (numpy's and torch's range), else a
    :class:`ParamError` naming the key."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**32:
        raise ParamError(f"params: '{key}' must be an int in [0, 2**32), got {value!r}")
    return value


class ParamsLoader(yaml.SafeLoader):
    """PyYAML's safe loader with YAML 1.2's floats: ``1e-05`` is a number, as DVC (ruamel, YAML 1.2) writes it for
    ``dvc exp run -S key=1e-5`` and reads it; PyYAML's YAML 1.1 rules need a dot and would read a string."""


ParamsLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                   |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
                   |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
                   |[-+]?\.(?:inf|Inf|INF)
                   |\.(?:nan|NaN|NAN))$""", re.X),
    list("-+0123456789."))


def read_yaml(text: str) -> Any:
    """``text`` parsed as a params file is (:class:`ParamsLoader`); for params, tiers and sweep grids."""
    return yaml.load(text, Loader=ParamsLoader)  # noqa: S506 - a SafeLoader subclass


def load_params(path: str | os.PathLike[str] = "params.yaml") -> dict[str, Any]:
    """Read the params file as a nested dict (:func:`read_yaml`); errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise ParamError(f"{path}: params file not found; run from the repository root or pass --params")
    try:
        params = read_yaml(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ParamError(f"{path}: invalid YAML: {exc}") from exc
    if not isinstance(params, dict):
        raise ParamError(f"{path}: expected a mapping of param groups at top level")
    return params


# ---------------------------------------------------------------------------------- typed groups
# Each params group is a frozen dataclass in the module that owns it (its fields are the keys,
# its field defaults the only defaults); :func:`parse_group` builds one from params.yaml and
# rejects unknown keys and wrong types. Hand-written because no small library gives these
# one-line, key-naming errors for plain frozen dataclasses without a schema of its own.

T = TypeVar("T")


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " or ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if tp is type(None):
        return "null"
    if origin is not None:
        return {list: "a list", tuple: "a list", dict: "a mapping"}.get(origin, str(tp))
    return {int: "an int", float: "a number", bool: "true or false", str: "a string"}.get(tp, getattr(tp, "__name__", str(tp)))


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against the annotation ``tp``; return it converted (int -> float, list -> tuple)."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if isinstance(value, float) and not math.isfinite(value):  # NaN / inf is no valid value of any param
        raise ParamError(f"params: '{key}' must be a finite number, got {value!r}")
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, key)
            except ParamError:
                continue
    elif origin is Literal:
        if value in args and type(value) is type(args[args.index(value)]):
            return value
    elif tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    elif origin in (tuple, list):
        if isinstance(value, (list, tuple)):
            if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
                items = [_coerce(v, args[0], f"{key}[{i}]") for i, v in enumerate(value)]
            elif origin is tuple and args:
                if len(value) != len(args):
                    raise ParamError(f"params: '{key}' must be a list of {len(args)} values, got {value!r}")
                items = [_coerce(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args))]
            else:
                items = [_coerce(v, args[0], f"{key}[{i}]") if args else v for i, v in enumerate(value)]
            return tuple(items) if origin is tuple else items
    elif origin is dict:
        if isinstance(value, dict):
            return dict(value)
    elif dataclasses.is_dataclass(tp):
        if isinstance(value, dict):
            return parse_group(tp, value, key)
    else:  # pragma: no cover - an annotation this parser does not know is a programming error
        raise TypeError(f"parse_group: unsupported annotation {tp!r} for '{key}'")
    raise ParamError(f"params: '{key}' must be {_type_name(tp)}, got {value!r}")


def unknown_key_error(key: str, valid: Iterable[str], where: str) -> ParamError:
    """A :class:`ParamError` for an unknown key, with the closest valid name when there is one."""
    valid = sorted(valid)
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
    hint = f"did you mean '{close[0]}'? " if close else ""
    return ParamError(f"params: unknown key '{key}' in {where}; {hint}valid keys: {', '.join(valid)}")


def parse_group(cls: type[T], raw: Mapping[str, Any] | None, group: str) -> T:
    """Build the frozen dataclass ``cls`` from the mapping ``raw`` (params group ``group``).

    Missing keys take the dataclass defaults; an unknown key raises :class:`ParamError` with
    the nearest valid name ("did you mean ...?"); each value is checked against the field's
    annotation. Further checks belong in the dataclass's ``__post_init__``.
    """
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise ParamError(f"params: '{group}' must be a mapping of keys, got {raw!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.init]  # type: ignore[arg-type]
    for key in raw:
        if key not in names:
            raise unknown_key_error(str(key), names, f"'{group}'")
    kwargs = {k: _coerce(v, hints[k], f"{group}.{k}") for k, v in raw.items()}
    return cls(**kwargs)


def parse_fields(cls: type, raw: Any, where: str) -> dict[str, Any]:
    """``raw``, some of the fields of the dataclass ``cls`` (e.g. ``sensor.overrides``: camera fields to replace),
    with each value checked against its field's annotation and converted (int -> float, list -> tuple).

    Raises :class:`ParamError` naming ``<where>.<key>`` and the expected type, or the unknown key with the nearest
    valid name, before the values reach ``cls`` (where a string in a number field was a ``TypeError``)."""
    if not isinstance(raw, Mapping):
        raise ParamError(f"params: '{where}' must be a mapping of keys, got {raw!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.init]
    for key in raw:
        if key not in names:
            raise unknown_key_error(str(key), names, f"'{where}'")
    return {k: _coerce(v, hints[k], f"{where}.{k}") for k, v in raw.items()}


def group_dict(cfg: Any) -> dict[str, Any]:
    """A config dataclass as the plain dict params.yaml holds (tuples become lists)."""

    def plain(v: Any) -> Any:
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v

    return {f.name: plain(getattr(cfg, f.name)) for f in dataclasses.fields(cfg) if f.init}
