"""The dashboard page as the control server serves it: the page and its assets without the
token (and only they, only GET/HEAD), the Host check still on them, a strict CSP, nothing
from another origin, nothing inline; the files are package data (also in a built wheel)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zipfile
from html.parser import HTMLParser
from importlib import resources
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette

from mm_trio.apps.control import dashboard
from tests.test_control_api import TOKEN, served

BTC = "BTC/USDT"
ROOT = Path(__file__).resolve().parent.parent
STATIC = resources.files("mm_trio.apps.control").joinpath("static")
ASSET_PATHS = sorted(dashboard.PUBLIC_PATHS)


class _Refs(HTMLParser):
    """Every URL the page refers to, and anything inline that the CSP would refuse."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.inline: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        for key in ("src", "href", "action", "data"):
            if values.get(key):
                self.urls.append(str(values[key]))
        if tag == "script" and not values.get("src"):
            self.inline.append("inline <script>")
        if tag == "style":
            self.inline.append("<style> element")
        for key in values:
            if key == "style" or key.startswith("on"):
                self.inline.append(f"{tag} {key}=")


def test_page_refers_only_to_its_own_assets_and_has_nothing_inline() -> None:
    refs = _Refs()
    refs.feed(STATIC.joinpath("index.html").read_text("utf-8"))
    assert refs.urls, "the page loads its script and stylesheet"
    assert not refs.inline, refs.inline
    for url in refs.urls:
        assert url in dashboard.PUBLIC_PATHS, f"{url}: not one of the served assets"
    for name in ("dashboard.js", "dashboard.css"):
        text = STATIC.joinpath(name).read_text("utf-8")
        # no CDN, no other origin (the CSP would refuse it anyway)
        assert not re.search(r"https?://|//cdn|@import", text), name
    script = STATIC.joinpath("dashboard.js").read_text("utf-8")
    # data is never written as HTML, and the token never into a URL
    assert "innerHTML" not in script and "insertAdjacentHTML" not in script
    assert "new EventSource" not in script  # it cannot send the Authorization header
    assert "Authorization" in script and "sessionStorage" in script


def test_csp_is_strict() -> None:
    directives = dict(d.split(" ", 1) for d in dashboard.CSP.split("; "))
    assert directives["default-src"] == "'none'"
    assert directives["script-src"] == "'self'"
    assert directives["style-src"] == "'self'"
    assert directives["connect-src"] == "'self'"
    assert directives["frame-ancestors"] == "'none'"
    assert directives["form-action"] == "'none'"
    assert "unsafe" not in dashboard.CSP


async def test_a_missing_package_file_is_a_clear_500_not_a_traceback(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = dashboard._read
    monkeypatch.setattr(
        dashboard, "_read", lambda name: None if name == "dashboard.js" else real(name)
    )
    app = Starlette(routes=dashboard.routes())
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1"
    ) as c:
        r = await c.get("/static/dashboard.js")
        assert r.status_code == 500
        assert "dashboard.js is missing from this installation" in r.text
        assert (await c.get("/")).status_code == 200


@pytest.mark.slow
async def test_page_and_assets_load_without_token_with_security_headers() -> None:
    async with served([BTC]) as s:
        async with s.client(headers={}) as c:
            for path in ASSET_PATHS:
                r = await c.get(path)
                assert r.status_code == 200, path
                name = "index.html" if path == "/" else path.rsplit("/", 1)[1]
                assert r.content == STATIC.joinpath(name).read_bytes(), path
                assert r.headers["content-type"] == dashboard.ASSETS[name], path
                assert r.headers["content-security-policy"] == dashboard.CSP, path
                assert r.headers["x-content-type-options"] == "nosniff", path
                assert not any(k.lower().startswith("access-control-") for k in r.headers)
                head = await c.head(path)
                assert head.status_code == 200 and not head.content, path
            page = (await c.get("/")).text
            assert "<title>mm-trio dashboard</title>" in page
            assert TOKEN not in page


@pytest.mark.slow
async def test_only_the_page_is_public_and_the_host_check_holds_on_it() -> None:
    async with served([BTC]) as s:
        before = s.orch.symbols()
        async with s.client(headers={}) as c:
            # data and controls still need the token
            for path in ("/api/status", "/api/fills", "/api/events", "/metrics"):
                assert (await c.get(path)).status_code == 401, path
            # only GET/HEAD of the listed files: not a POST to them, not another file
            assert (await c.post("/", json={"symbol": "SOL/USDT"})).status_code == 401
            for path in ("/static/index.html", "/static/other.js", "/static/../api/status",
                         "/static/dashboard.js/", "/index.html"):  # fmt: skip
                assert (await c.get(path)).status_code == 401, path
            # a page of another site that resolves its name to 127.0.0.1 gets nothing
            for host in ("evil.example", f"evil.example:{s.port}"):
                r = await c.get("/", headers={"Host": host})
                assert r.status_code == 421 and "mm-trio dashboard" not in r.text, host
        async with s.client() as c:  # with the token: an unknown file is a plain 404
            assert (await c.get("/static/other.js")).status_code == 404
            assert (await c.post("/")).status_code == 405
        assert s.orch.symbols() == before


@pytest.mark.slow
def test_a_built_wheel_carries_the_dashboard_files(tmp_path: Path) -> None:
    """A normal (non-editable) install gets the files: they are package data. Built as pip
    builds it for a user (an isolated build environment with the pinned backend)."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "mm_trio", src / "mm_trio", ignore=shutil.ignore_patterns("__pycache__"))
    out = tmp_path / "dist"
    r = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(src)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if r.returncode != 0 and "setuptools" in r.stderr and "No matching distribution" in r.stderr:
        pytest.skip(f"the build backend cannot be installed here: {r.stderr.strip()[-300:]}")
    assert r.returncode == 0, r.stderr
    (wheel,) = out.glob("mm_trio-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for name in dashboard.ASSETS:
        assert f"mm_trio/apps/control/static/{name}" in names, name
