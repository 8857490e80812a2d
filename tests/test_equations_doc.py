"""docs/equations.md against the code: every numbered equation of the paper is listed once, every function the page
names exists, the function it gives an equation to cites that equation in its docstring, no other docstring opens
with a claim to it, and no docstring or page points to an equation map outside the repository."""

from __future__ import annotations

import ast
import importlib
import inspect
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "equations.md"
PAPER_EQUATIONS = list(range(1, 19))  # the paper numbers its equations (1) to (18)
ROW = re.compile(r"^\|\s*\((\d+)\)(?:\s*-\s*\((\d+)\))?\s*\|(.*)\|\s*$")
NAME = re.compile(r"`([A-Za-z_][\w.]*:[A-Za-z_][\w.]*)`")
CLAIM = re.compile(r"^Eq\. \((\d+)\)")  # a docstring that opens with "Eq. (N)" says: this implements eq. (N)


def cites(doc: str, n: int) -> bool:
    """Whether ``doc`` cites equation ``n`` as ``eq. (n)`` (the form a search for the number finds)."""
    return re.search(rf"\beqs?\. \({n}\)", doc, re.I) is not None


def rows(text: str) -> list[tuple[list[int], list[str]]]:
    """The table rows of the page that start with an equation number: (numbers, the other cells)."""
    out = []
    for line in text.splitlines():
        if m := ROW.match(line.strip()):
            first, last = int(m.group(1)), int(m.group(2) or m.group(1))
            out.append((list(range(first, last + 1)), [c.strip() for c in m.group(3).split("|")]))
    return out


def implementer(cells: list[str]) -> str | None:
    """The one ``module:qualname`` of a row, or None for a row that says why the equation is not implemented."""
    last = cells[-1]
    if last.startswith("not implemented"):
        return None
    names = NAME.findall(last)
    assert len(names) == 1, f"docs/equations.md: a row must name exactly one function, got {names} in {last!r}"
    return names[0]


def resolve(name: str) -> object:
    module, _, qualname = name.partition(":")
    obj: object = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


def mapping(text: str) -> dict[int, str | None]:
    return {n: implementer(cells) for numbers, cells in rows(text) for n in numbers}


def test_every_paper_equation_is_listed_once() -> None:
    numbers = sorted(n for ns, _ in rows(DOC.read_text()) for n in ns)
    assert numbers == PAPER_EQUATIONS


def test_each_row_says_what_and_units_and_who_or_why() -> None:
    for numbers, cells in rows(DOC.read_text()):
        assert len(cells) == 3 and all(cells), f"eq. {numbers}: need what it computes, units and the function"
        if implementer(cells) is None:
            assert len(cells[-1]) > len("not implemented: ") + 20, f"eq. {numbers}: say why it is not implemented"


def test_every_named_function_exists() -> None:
    names = NAME.findall(DOC.read_text())
    assert len(names) >= 20
    for name in names:
        resolve(name)


@pytest.mark.parametrize("n", PAPER_EQUATIONS)
def test_the_function_given_an_equation_cites_it(n: int) -> None:
    name = mapping(DOC.read_text())[n]
    if name is None:
        return
    doc = inspect.getdoc(resolve(name)) or ""
    assert cites(doc, n), f"{name}: its docstring must cite eq. ({n}), as docs/equations.md maps eq. ({n}) to it"


def _claims(path: Path) -> list[tuple[int, str]]:
    """``(n, module:qualname)`` of every function or class in ``path`` whose docstring opens with ``Eq. (n)``."""
    module = ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
    out = []

    def walk(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                qual = f"{prefix}{child.name}"
                if (m := CLAIM.match(ast.get_docstring(child) or "")) is not None:
                    out.append((int(m.group(1)), f"{module}:{qual}"))
                walk(child, f"{qual}.")

    walk(ast.parse(path.read_text()), "")
    return out


def test_no_other_docstring_claims_an_equation() -> None:
    """One home per equation: a docstring opening with ``Eq. (n)`` belongs to the function the page names for n."""
    owner = mapping(DOC.read_text())
    wrong = [f"{name} opens with eq. ({n}), which docs/equations.md gives to {owner.get(n)}"
             for path in sorted((REPO / "gimbal").rglob("*.py")) for n, name in _claims(path) if owner.get(n) != name]
    assert not wrong, "\n".join(wrong)


def test_no_reference_to_an_equation_map_outside_the_repository() -> None:
    files = [*sorted((REPO / "gimbal").rglob("*.py")), *sorted((REPO / "docs").rglob("*.md"))]
    hits = [f"{p.relative_to(REPO)}:{i}" for p in files for i, line in enumerate(p.read_text().splitlines(), 1)
            if "DESIGN.md" in line]
    assert not hits, f"'DESIGN.md' is not in the repository; cite the equation or a docs/ page instead: {hits}"


def test_layout_links_the_equation_map() -> None:
    assert "](equations.md)" in (REPO / "docs" / "layout.md").read_text()
