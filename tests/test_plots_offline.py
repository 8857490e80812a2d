"""`dvc plots show` draws the learning curves with no network (docs/reliability.md).

DVC's default page loads vega, vega-lite and vega-embed from a CDN; `.dvc/config` points `plots.html_template`
at `.dvc/plots-offline.html`, which `make install` builds with the three libraries inlined
(tools/dvc_plots_template.py). These tests run `dvc plots show` on the repo's dvclive logs and open the page
in headless Chromium with every network fetch failing (a proxy that refuses connections, loopback included):
each vega plot must hold a drawn chart and the page must report no error and fetch nothing. A control run of
DVC's default (CDN) page under the same conditions must fail the same checks, so the checks can fail.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
TEMPLATE = REPO / ".dvc" / "plots-offline.html"
CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser")) if p), None)
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (Debian: apt-get install "
                                                               "chromium; .ci/run installs it)")

# Records errors, failed loads and every fetched resource as attributes of <html>, where --dump-dom shows them.
PROBE = """<script>
(function () {
  var root = document.documentElement, errors = [];
  function note(msg) { errors.push(String(msg)); root.setAttribute("data-probe-errors", JSON.stringify(errors)); }
  root.setAttribute("data-probe-errors", "[]");
  window.addEventListener("error", function (e) {
    var t = e.target;
    if (t && t !== window && (t.src || t.href)) note("failed to load " + (t.src || t.href));
    else note("error: " + e.message);
  }, true);
  window.addEventListener("unhandledrejection", function (e) {
    note("unhandled rejection: " + ((e.reason && e.reason.message) || e.reason));
  });
  var consoleError = console.error;
  console.error = function () {
    note("console.error: " + Array.prototype.join.call(arguments, " "));
    return consoleError.apply(console, arguments);
  };
  window.addEventListener("load", function () {
    setTimeout(function () {
      var names = performance.getEntriesByType("resource").map(function (r) { return r.name; });
      root.setAttribute("data-probe-resources", JSON.stringify(names));
      root.setAttribute("data-probe-done", "1");
    }, 1000);
  });
})();
</script>"""


def _plots_show(out: Path, template: Path | None = None) -> Path:
    """Run `dvc plots show` in the repo root (the config's template, or ``template``); the page it wrote."""
    cmd = [sys.executable, "-m", "dvc", "plots", "show", "-o", str(out)]
    if template is not None:
        cmd += ["--html-template", str(template)]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    page = out / "index.html"
    assert page.is_file(), proc.stdout + proc.stderr
    return page


def _vega_ids(html: str) -> list[str]:
    return re.findall(r"vegaEmbed\('#([^']+)'", html)


class _Dom(HTMLParser):
    """The <html> attributes and, per element id, whether a drawn vega chart is inside it."""

    VOID = frozenset({"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param", "source",
            "track", "wbr"})

    def __init__(self) -> None:
        super().__init__()
        self.root: dict[str, str] = {}
        self.drawn: dict[str, bool] = {}
        self._stack: list[tuple[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "html":
            self.root = a
        if "id" in a:
            self.drawn.setdefault(a["id"], False)
        chart = (tag == "canvas" and int(a.get("width", "0") or 0) > 0 and int(a.get("height", "0") or 0) > 0) or \
                (tag == "svg" and "marks" in a.get("class", "").split())
        if chart:
            for _, el_id in self._stack:
                if el_id is not None:
                    self.drawn[el_id] = True
        if tag not in self.VOID:
            self._stack.append((tag, a.get("id")))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in self.VOID and self._stack and self._stack[-1][0] == tag:
            self._stack.pop()

    def handle_endtag(self, tag: str) -> None:
        for i in range(len(self._stack) - 1, -1, -1):
            if self._stack[i][0] == tag:
                del self._stack[i:]
                return


def _render_offline(page: Path, tmp: Path) -> _Dom:
    """Open ``page`` (with the probe) in headless Chromium whose every network fetch fails; the final DOM."""
    html = page.read_text(encoding="utf-8")
    probed = page.with_name("probed.html")
    probed.write_text(html.replace("<head>", "<head>\n" + PROBE, 1), encoding="utf-8")
    profile = tmp / "chromium-profile"
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--disable-extensions", "--disable-default-apps", f"--user-data-dir={profile}",
           # every http(s) fetch, loopback included, goes to a proxy that refuses the connection
           "--proxy-server=127.0.0.1:9", "--proxy-bypass-list=<-loopback>",
           "--virtual-time-budget=10000", "--window-size=1400,1000", "--dump-dom", probed.as_uri()]
    env = {**os.environ, "HOME": str(tmp)}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False, env=env)
    assert proc.returncode == 0 and "<html" in proc.stdout, proc.stderr[-2000:]
    dom = _Dom()
    dom.feed(proc.stdout)
    dom.close()
    assert dom.root.get("data-probe-done") == "1", "the page did not finish loading within the virtual time budget"
    return dom


def _fetched(dom: _Dom) -> list[str]:
    return [u for u in json.loads(dom.root["data-probe-resources"]) if not u.startswith(("file:", "data:", "blob:"))]


@pytest.fixture(scope="module")
def pages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """`dvc plots show` with the repo's config (offline template) and with DVC's default (CDN) page."""
    assert TEMPLATE.is_file(), f"{TEMPLATE} is missing: run `make install` (tools/dvc_plots_template.py builds it)"
    from dvc_render.html import PAGE_HTML

    tmp = tmp_path_factory.mktemp("plots")
    default = tmp / "default-template.html"
    default.write_text(PAGE_HTML, encoding="utf-8")
    return {"offline": _plots_show(tmp / "offline"), "cdn": _plots_show(tmp / "cdn", default)}


def test_config_names_the_offline_template() -> None:
    proc = subprocess.run([sys.executable, "-m", "dvc", "config", "plots.html_template"], cwd=REPO,
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert (REPO / ".dvc" / proc.stdout.strip()).resolve() == TEMPLATE


def test_page_has_the_libraries_inline_and_no_remote_script(pages: dict[str, Path]) -> None:
    html = pages["offline"].read_text(encoding="utf-8")
    assert not re.search(r"<script[^>]*\ssrc\s*=", html, re.IGNORECASE), "a <script src> in the page"
    assert "cdn.jsdelivr.net" not in html
    for lib in ("vega@5.20.2", "vega-lite@5.2.0", "vega-embed@6.18.2"):
        assert lib in html, lib
    panels = [next(iter(p)) for p in yaml.safe_load((REPO / "dvc.yaml").read_text())["plots"]]
    assert panels, "no plots defined in dvc.yaml"
    ids = set(_vega_ids(html))
    for title in panels:  # every panel of dvc.yaml's `plots:` is on the page
        assert re.sub(r"[^A-Za-z0-9-]", "_", title) in ids, title


@needs_chromium
def test_every_plot_is_drawn_with_the_network_off(pages: dict[str, Path], tmp_path: Path) -> None:
    page = pages["offline"]
    ids = _vega_ids(page.read_text(encoding="utf-8"))
    assert ids
    dom = _render_offline(page, tmp_path)
    assert json.loads(dom.root["data-probe-errors"]) == []
    assert _fetched(dom) == []
    blank = [i for i in ids if not dom.drawn.get(i)]
    assert not blank, f"{len(blank)} of {len(ids)} plots not drawn, e.g. {blank[:3]}"


@needs_chromium
def test_the_check_fails_on_dvcs_default_cdn_page(pages: dict[str, Path], tmp_path: Path) -> None:
    """Control: the same checks on the page DVC writes by default (libraries from cdn.jsdelivr.net) fail, so the
    browser really is offline and a blank plot is seen."""
    page = pages["cdn"]
    html = page.read_text(encoding="utf-8")
    assert "cdn.jsdelivr.net" in html
    ids = _vega_ids(html)
    dom = _render_offline(page, tmp_path)
    errors = json.loads(dom.root["data-probe-errors"])
    assert any("failed to load https://cdn.jsdelivr.net" in e for e in errors), errors
    assert not any(dom.drawn.get(i) for i in ids)
