"""Layers that import downward only, and no import circle, read from the source (no import is run).

Every import of a ``gimbal`` module counts: at module level, inside a function, and under ``if TYPE_CHECKING:``,
so a circle cannot hide behind a guard or a function-level import. A module may import its own layer or a lower
one; within a layer the imports must still form no circle. A new module must be given a layer in :data:`LAYERS`.

Training, evaluation, inference and planning (the packages ``gimbal.training``, ``gimbal.evaluation``,
``gimbal.inference`` and ``gimbal.planning``, one layer each package) take the groups they read; the one module that
splits the whole config into them, :mod:`gimbal.pipeline`, sits above them, below the stages (the Fig. 9 sweep
takes the groups it reads as a protocol, :class:`gimbal.planning.fig9.SweepGroups`). A model file's params are parsed into a system's groups
by :mod:`gimbal.model_params`, beside the config. Nothing below the config may import it.
"""

from __future__ import annotations

import ast
import fnmatch
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("entry points: the stages and the gimbal command", ("stages.*", "gimbal.cli", "gimbal.cli_utils")),
    ("the pipeline: splits the whole config into the groups each function takes", ("gimbal.pipeline",)),
    ("training, evaluation, inference, planning: read the whole config or a model file built from it", (
        "gimbal.training", "gimbal.training.*", "gimbal.evaluation", "gimbal.evaluation.*", "gimbal.inference",
        "gimbal.inference.*", "gimbal.planning", "gimbal.planning.*", "gimbal.baselines.single",
        "gimbal.baselines.*.train", "gimbal.system", "gimbal.calibration", "gimbal.calibration.*")),
    ("the config: parses params.yaml into every group, and a model file's params into a system's groups", (
        "gimbal.config", "gimbal.model_params")),
    ("the table of methods", ("gimbal.methods",)),
    ("components and their params groups: models, sensor, data, baselines' networks, losses, scores", (
        "gimbal.models", "gimbal.models.*", "gimbal.sensor", "gimbal.sensor.*", "gimbal.data", "gimbal.data.*",
        "gimbal.baselines", "gimbal.baselines.base", "gimbal.baselines.*", "gimbal.losses", "gimbal.display",
        "gimbal.metrics", "gimbal.eval_config")),
    ("run machinery", ("gimbal.runtime", "gimbal.checkpoint")),
    ("io, params, named tiers of params, errors", ("gimbal", "gimbal.io", "gimbal.params", "gimbal.tiers",
                                                   "gimbal.errors")),
)
"""Top to bottom: (what the layer holds, the module name patterns in it; the first layer a module matches)."""


def modules(repo: Path = REPO) -> dict[str, Path]:
    """Module name -> file of every module of the ``gimbal`` package and of the ``stages`` scripts."""
    out: dict[str, Path] = {}
    for path in sorted((repo / "gimbal").rglob("*.py")):
        parts = path.relative_to(repo).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    for path in sorted((repo / "stages").glob("*.py")):
        out[f"stages.{path.stem}"] = path
    return out


def import_graph(mods: Mapping[str, Path]) -> dict[str, set[str]]:
    """Module -> the project modules it imports anywhere in its source (``from gimbal.x import y`` counts as
    ``gimbal.x.y`` when that is a module, else as ``gimbal.x``). Relative imports are resolved too."""

    def known(name: str) -> str | None:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for name, path in mods.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        found: set[str | None] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found |= {known(a.name) for a in node.names if a.name.split(".")[0] in ("gimbal", "stages")}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    base = ".".join([*up, base] if base else up)
                if base.split(".")[0] not in ("gimbal", "stages"):
                    continue
                for a in node.names:
                    found.add(f"{base}.{a.name}" if f"{base}.{a.name}" in mods else known(base))
        targets = {m for m in found if m is not None and m != name}
        # importing gimbal.a.b runs gimbal/a/__init__.py first, unless the importer is already inside gimbal.a
        mine = {name.rsplit(".", k)[0] for k in range(1, name.count(".") + 1)}
        parents = {m.rsplit(".", k)[0] for m in targets for k in range(1, m.count(".") + 1)}
        graph[name] = targets | {m for m in parents - mine - {name} if m in mods}
    return graph


def circles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """The import circles: every strongly connected set of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def layer_of(module: str, layers: Sequence[tuple[str, Sequence[str]]] = LAYERS) -> int | None:
    """The index (0 = top) of the first layer with a pattern matching ``module``; ``None`` if none."""
    return next((i for i, (_, patterns) in enumerate(layers) if any(fnmatch.fnmatchcase(module, p)
                                                                      for p in patterns)), None)


def upward(graph: Mapping[str, set[str]], layers: Sequence[tuple[str, Sequence[str]]] = LAYERS) -> list[str]:
    """Every import of a module of a higher layer, as ``"a (layer) -> b (layer)"``."""
    out = []
    for a, targets in sorted(graph.items()):
        for b in sorted(targets):
            la, lb = layer_of(a, layers), layer_of(b, layers)
            if la is not None and lb is not None and lb < la:
                out.append(f"{a} ({layers[la][0]}) -> {b} ({layers[lb][0]})")
    return out


def test_every_module_has_a_layer() -> None:
    unplaced = [m for m in modules() if layer_of(m) is None]
    assert not unplaced, f"give these modules a layer in tests/test_layers.py LAYERS: {unplaced}"


def test_no_import_circle() -> None:
    """No circle, counting imports inside functions and under TYPE_CHECKING."""
    assert circles(import_graph(modules())) == []


def test_imports_go_downward_only() -> None:
    assert upward(import_graph(modules())) == []


def test_the_config_pulls_in_no_training_or_evaluation() -> None:
    """Parsing params.yaml needs the groups only: nothing of the layers above the config is reachable from it."""
    graph = import_graph(modules())
    seen, todo = set(), ["gimbal.config"]
    while todo:
        m = todo.pop()
        if m not in seen:
            seen.add(m)
            todo += graph[m]
    above = sorted(m for m in seen if (layer_of(m) or 0) < layer_of("gimbal.config"))  # type: ignore[operator]
    assert above == []


WHOLE_CONFIG: tuple[str, ...] = ("stages.*", "gimbal.cli_utils", "gimbal.pipeline")
"""The modules that still import the root config (functions that take the whole ``Config`` or rebuild it from a
model file); every other function takes the groups it uses. The list may shrink, never grow."""


def test_only_the_listed_modules_take_the_whole_config() -> None:
    graph = import_graph(modules())
    users = sorted(m for m, targets in graph.items() if "gimbal.config" in targets)
    assert [m for m in users if not any(fnmatch.fnmatchcase(m, p) for p in WHOLE_CONFIG)] == []


# -- the checks themselves catch what they are for, on a small made-up package ------------------------------------
def _package(tmp_path: Path, files: dict[str, str]) -> dict[str, Path]:
    for rel, text in {"gimbal/__init__.py": "", **files}.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    return modules(tmp_path)


@pytest.mark.parametrize("hidden", [
    "from gimbal.low import x\n",  # at module level
    "def f():\n    from gimbal.low import x\n",  # inside a function
    "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from gimbal.low import x\n",  # behind the guard
    "from . import low\n",  # relative
    "import gimbal.pkg.leaf\n",  # through the package's __init__
])
def test_a_circle_is_found_however_it_is_imported(tmp_path: Path, hidden: str) -> None:
    mods = _package(tmp_path, {"gimbal/high.py": hidden, "gimbal/low.py": "import gimbal.high\n",
                               "gimbal/pkg/__init__.py": "from gimbal import low\n", "gimbal/pkg/leaf.py": ""})
    assert [c for c in circles(import_graph(mods)) if "gimbal.high" in c][0] in (
        ["gimbal.high", "gimbal.low"], ["gimbal.high", "gimbal.low", "gimbal.pkg"])


def test_an_upward_import_is_found(tmp_path: Path) -> None:
    mods = _package(tmp_path, {"gimbal/high.py": "from gimbal import low\n",
                               "gimbal/low.py": "def f():\n    from gimbal.high import g\n"})
    layers = (("top", ("gimbal.high",)), ("bottom", ("gimbal.low", "gimbal")))
    assert upward(import_graph(mods), layers) == ["gimbal.low (bottom) -> gimbal.high (top)"]
    mods = _package(tmp_path, {"gimbal/low.py": "x = 1\n"})
    assert upward(import_graph(mods), layers) == []
