"""Named tiers: a params file of overrides (``tiers/<name>.yaml``) that ``dvc exp run`` takes in one line.

    dvc exp run -n medium $(gimbal tier medium)

A tier file has the shape of ``params.yaml`` and holds only the keys it changes. :func:`set_flags` turns it into
DVC's ``-S key=value`` flags (DVC writes them into ``params.yaml``, comments kept, and records the experiment), once
:func:`gimbal.pipeline.tier_overrides` has checked that the overridden params file still parses (a misspelt key in
the tier fails there, naming it).
Written by hand because DVC has no params presets besides Hydra, which would make ``params.yaml`` generated.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml

from gimbal.errors import ParamError
from gimbal.params import load_params, read_yaml

#: where ``gimbal tier NAME`` looks for ``NAME.yaml`` (relative to the repository root, the current folder)
TIERS_DIR = Path("tiers")


def tier_path(name: str, tiers_dir: str | os.PathLike[str] = TIERS_DIR) -> Path:
    """The file of tier ``name`` (a name in ``tiers_dir`` or a path to a ``.yaml``); raises :class:`ParamError`
    naming the tiers there when it does not exist."""
    path = Path(name) if name.endswith((".yaml", ".yml")) else Path(tiers_dir) / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in Path(tiers_dir).glob("*.yaml"))
        raise ParamError(f"tier file {path} not found; tiers in {tiers_dir}/: {', '.join(known) or 'none'}")
    return path


def flatten(overrides: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``: a nested mapping's leaves under dotted keys (lists are leaves)."""
    flat: dict[str, Any] = {}
    for key, value in overrides.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, dotted + "."))
        else:
            flat[dotted] = value
    return flat


def apply(params: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """A deep copy of ``params`` with each dotted key of ``overrides`` set; a key whose parent is missing or not a
    mapping raises :class:`ParamError` naming it."""
    out = copy.deepcopy(dict(params))
    for dotted, value in overrides.items():
        *parents, leaf = dotted.split(".")
        node: Any = out
        for i, part in enumerate(parents):
            if not isinstance(node, dict) or part not in node or not isinstance(node[part], dict):
                raise ParamError(f"tier key {dotted!r}: {'.'.join(parents[:i + 1])!r} is not a params group")
            node = node[part]
        node[leaf] = copy.deepcopy(value)
    return out


def load_tier(name: str, params_path: str | os.PathLike[str] = "params.yaml",
              tiers_dir: str | os.PathLike[str] = TIERS_DIR,
              check: Callable[[Mapping[str, Any]], None] | None = None) -> dict[str, Any]:
    """The tier's overrides as ``{dotted key: value}``, checked: ``params_path`` with them applied must pass
    ``check`` (:func:`gimbal.pipeline.tier_overrides` passes the config's parser; an unknown key or bad value
    raises :class:`ParamError`, named with the tier file)."""
    path = tier_path(name, tiers_dir)
    raw = read_yaml(path.read_text()) or {}
    if not isinstance(raw, Mapping):
        raise ParamError(f"{path}: expected a mapping of params groups, got {type(raw).__name__}")
    overrides = flatten(raw)
    try:
        applied = apply(load_params(params_path), overrides)
        if check is not None:
            check(applied)
    except ParamError as exc:
        raise ParamError(f"{path}: {exc}") from exc
    return overrides


def set_flags(overrides: Mapping[str, Any]) -> list[str]:
    """DVC's ``-S key=value`` flags for ``overrides``, each value as YAML flow text that reads back as the same
    value (``dvc exp run`` parses ``-S`` values as YAML) and holds no whitespace, so that an unquoted
    ``$(gimbal tier NAME)`` splits into exactly these words; a value that would need quoting raises
    :class:`ParamError`."""
    flags = []
    for key, value in overrides.items():
        text = next((t for t, unsafe in _flag_texts(value) if yaml.safe_load(t) == value
                     and not any(c.isspace() or c in unsafe for c in t)), None)
        if text is None:
            raise ParamError(f"tier key {key!r}: its value {value!r} needs shell quoting; write it in params.yaml "
                             "or pass it as a quoted -S flag")
        flags += ["-S", f"{key}={text}"]
    return flags


def _flag_texts(value: Any) -> list[tuple[str, str]]:
    """The candidate texts of ``value`` for a ``-S`` flag, in order, each with the characters it may not hold: YAML
    flow (no ``[``: a list goes the compact JSON way), then compact JSON."""
    flow = yaml.safe_dump(value, default_flow_style=True, width=10**6).strip().removesuffix("\n...").strip()
    return [(flow, "'\"$`*?["), (json.dumps(value, separators=(",", ":")), "'\"$`*?")]
