"""Loading and checking ``params.yaml``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from gimbal.errors import ParamError


def load_params(path: str | os.PathLike[str] = "params.yaml") -> dict[str, Any]:
    """Read the params file as a nested dict; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise ParamError(f"{path}: params file not found; run from the repository root or pass --params")
    try:
        params = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ParamError(f"{path}: invalid YAML: {exc}") from exc
    if not isinstance(params, dict):
        raise ParamError(f"{path}: expected a mapping of param groups at top level")
    return params


def get(params: dict[str, Any], dotted: str, typ: type | tuple[type, ...] | None = None, default: Any = ...) -> Any:
    """Return ``params['a']['b']`` for ``dotted='a.b'``.

    Raises :class:`ParamError` naming the key if it is missing (and no default) or if
    ``typ`` is given and the value is not an instance of it.
    """
    node: Any = params
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            if default is not ...:
                return default
            raise ParamError(f"params: missing '{dotted}'; add it to params.yaml")
        node = node[part]
    if typ is not None:
        ok = isinstance(node, typ) and not (isinstance(node, bool) and typ in (int, float, (int, float)))
        if not ok:
            name = typ.__name__ if isinstance(typ, type) else " or ".join(t.__name__ for t in typ)
            raise ParamError(f"params: '{dotted}' must be {name}, got {node!r}")
    return node
