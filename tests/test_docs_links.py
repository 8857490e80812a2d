"""The README and docs/ as a reader meets them: every relative link leads to a file (and heading) that exists, the
README stays short, and no user-facing page talks about how the project was developed."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
# development history, not a user's business: issue numbers, commit hashes, sessions
HISTORY = [
    (re.compile(r"\bissues? #?\d+", re.I), "an issue number"),
    (re.compile(r"\bsessions?\b", re.I), "a session"),
    (re.compile(r"\bcommit `?[0-9a-f]{7,40}\b", re.I), "a commit hash"),
    (re.compile(r"`[0-9a-f]{7,40}`"), "a commit hash"),
    (re.compile(r"\bthis (\S+ )?VM\b"), "'this VM' (name the machine)"),
]


def _prose(text: str) -> str:
    """``text`` without fenced code blocks (links there are not links)."""
    return re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)


def anchors(path: Path) -> set[str]:
    """The heading anchors GitHub makes for ``path``: lower case, punctuation dropped, spaces to hyphens."""
    out = set()
    for line in _prose(path.read_text()).splitlines():
        if m := re.match(r"#{1,6}\s+(.*)", line):
            out.add(re.sub(r"[^\w\- ]", "", m.group(1).strip().lower()).replace(" ", "-"))
    return out


def links(path: Path) -> list[str]:
    return [t for t in LINK.findall(_prose(path.read_text())) if not re.match(r"[a-z]+:", t)]


def _rel(path: Path) -> Path:
    return path.relative_to(REPO) if path.is_relative_to(REPO) else path


def broken(path: Path) -> list[str]:
    """The relative links of ``path`` whose file, or heading within it, does not exist."""
    bad = []
    for target in links(path):
        file, _, anchor = target.partition("#")
        dest = (path.parent / file).resolve() if file else path
        if not dest.exists():
            bad.append(f"{target}: no file {_rel(dest)}")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            bad.append(f"{target}: no heading #{anchor} in {_rel(dest)}")
    return bad


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_resolves(page: Path) -> None:
    assert broken(page) == []


def test_the_readme_links_every_page_of_docs() -> None:
    linked = {(REPO / t.partition("#")[0]).resolve() for t in links(REPO / "README.md")}
    assert [p.name for p in PAGES[1:] if p.resolve() not in linked] == []


def test_a_broken_link_or_anchor_is_found(tmp_path: Path) -> None:
    (tmp_path / "b.md").write_text("# The paper's record: Table 1\n")
    page = tmp_path / "a.md"
    page.write_text("[ok](b.md#the-papers-record-table-1) [gone](c.md) [bad](b.md#nope) [web](https://x.org/y)\n"
                    "```\n[in code](nothing.md)\n```\n")
    assert [b.split(":")[0] for b in broken(page)] == ["c.md", "b.md#nope"]


def test_the_readme_is_short_and_keeps_its_generated_results() -> None:
    text = (REPO / "README.md").read_text()
    lines = text.splitlines()
    assert len(lines) < 250, len(lines)
    start, end = lines.index("<!-- results:start -->"), lines.index("<!-- results:end -->")
    assert start < 60 < end, (start, end)  # the results within the first screen or two
    for cmd in ("make repro", "make test", "-S model.learn_exposure=false",
                "dvc exp show --md --drop '.*' --keep 'Experiment|model\\.learn_exposure|psnr_.*'",
                "dvc metrics show --md", "dvc plots show", "reports/paper.md", "gimbal calibrate",
                "gimbal schedule", "gimbal infer"):
        assert cmd in text, cmd


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_no_development_history(page: Path) -> None:
    text = page.read_text()
    found = [(what, m.group(0)) for pattern, what in HISTORY for m in pattern.finditer(text)]
    assert found == []


def test_history_wording_is_caught() -> None:
    text = "as issue 16 asks, at commit `4cbf78f`, measured in this session on this 2-core VM"
    assert {what for pattern, what in HISTORY if pattern.search(text)} == {
        "an issue number", "a session", "a commit hash", "'this VM' (name the machine)"}
