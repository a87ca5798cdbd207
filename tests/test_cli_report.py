"""``mm-trio report`` end to end: replays, then the report as a subprocess, then the page in
a real headless Chromium (Debian's chromium + chromium-driver, driven by selenium)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures"
RECORDINGS = [FIXTURES / "btcusdt-synth.gz", FIXTURES / "ethusdt-synth.gz"]
pytestmark = pytest.mark.slow  # replays and the report run as subprocesses
WIDE_GRID = '[grid]\nstep = "0.002"\nlevels_below = 3\n'
PAGE_LOAD_TIMEOUT_S = 60


def mm_trio(args: list[str], timeout: float = 180) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("mm-trio", path=str(Path(sys.executable).parent)) or shutil.which("mm-trio")
    cmd = [exe] if exe else [sys.executable, "-m", "mm_trio.cli"]
    return subprocess.run(cmd + args, capture_output=True, text=True, timeout=timeout, cwd=ROOT)


@pytest.fixture(scope="module")
def reported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """Two replays of the synthetic recordings (default grid, a wider one) and their report."""
    d = tmp_path_factory.mktemp("report")
    (d / "wide.toml").write_text(WIDE_GRID)
    for name, extra in [("default", []), ("wide", ["--config", str(d / "wide.toml")])]:
        proc = mm_trio(
            ["replay", *map(str, RECORDINGS), "--out", str(d / name), "--no-progress", *extra]
        )
        assert proc.returncode == 0, proc.stderr
    proc = mm_trio(["report", str(d / "default"), str(d / "wide"), "--out", str(d / "r.html")])
    assert proc.returncode == 0, proc.stderr
    return d / "r.html", proc.stdout


def test_the_terminal_gets_the_metrics_side_by_side(reported: tuple[Path, str]) -> None:
    _, out = reported
    header = out.splitlines()[0].split()
    assert header[:5] == ["metric", "default", "TOTAL", "wide", "TOTAL"]
    for label in ["net PnL", "Sharpe (annualised)", "round trips per level", "fill rate"]:
        assert any(line.startswith(label) for line in out.splitlines()), label
    assert "BTC/USDT" in out and "ETH/USDT" in out
    assert out.rstrip().endswith("r.html")


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.external: list[str] = []
        self.scripts = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.scripts += tag == "script"
        for key, value in attrs:
            if key in ("src", "href") and value and not value.startswith("#"):
                self.external.append(f"{tag} {key}={value}")


def test_the_page_is_self_contained(reported: tuple[Path, str]) -> None:
    page = reported[0].read_text(encoding="utf-8")
    tags = _Tags()
    tags.feed(page)
    # no script, style sheet or image from elsewhere (plotly.js itself mentions a CDN only
    # as the default address of map data, which these plots never load)
    assert tags.external == []
    assert tags.scripts >= 1 and "plotly.js v" in page  # the library itself is inlined
    assert page.count('class="plotly-graph-div"') == 1 + 2 * 3  # compared + 2 x (total + 2)


def test_a_bad_run_exits_2_naming_it(tmp_path: Path) -> None:
    proc = mm_trio(["report", str(tmp_path / "nope"), "--out", str(tmp_path / "r.html")])
    assert proc.returncode == 2
    assert "nope' does not exist" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "r.html").exists()


def _browser(tmp_path: Path):  # type: ignore[no-untyped-def]
    webdriver = pytest.importorskip("selenium.webdriver")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if chromium is None or driver_path is None:
        pytest.skip("no headless browser: apt-get install chromium chromium-driver")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in [
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--window-size=1400,1000",
    ]:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(driver_path), options=options)


def test_the_plots_render_in_a_real_browser(reported: tuple[Path, str], tmp_path: Path) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    browser = _browser(tmp_path)
    try:
        browser.set_page_load_timeout(PAGE_LOAD_TIMEOUT_S)
        browser.get(reported[0].as_uri())
        WebDriverWait(browser, PAGE_LOAD_TIMEOUT_S).until(
            lambda b: b.execute_script(
                "const d = document.querySelectorAll('.js-plotly-plot');"
                "return d.length === 7 && Array.from(d).every(x => x._fullLayout);"
            )
        )
        figures = browser.execute_script(
            "return Array.from(document.querySelectorAll('.js-plotly-plot')).map(d => ({"
            " title: d._fullLayout.title.text,"
            " names: d.data.map(t => t.name),"
            " drawn: d.querySelectorAll('.scatterlayer .trace').length,"
            " points: d.querySelectorAll('.scatterlayer .point').length}));"
        )
        errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
        fetched = browser.execute_script(
            "return performance.getEntriesByType('resource').map(e => e.name);"
        )
        table = browser.find_element("css selector", "table.metrics").text
    finally:
        browser.quit()
    assert errors == []
    assert fetched == []  # nothing loaded from anywhere: the page works offline
    titles = [f["title"] for f in figures]
    assert titles[0] == "runs compared"
    assert "default: BTC/USDT" in titles and "wide: ETH/USDT" in titles
    compared = figures[0]["names"]
    assert {"default", "wide", "default drawdown", "wide drawdown"} <= set(compared)
    btc = figures[titles.index("default: BTC/USDT")]
    for name in ["mid", "grid: open BUY", "buy (opening)", "sell (take-profit)", "total PnL",
                 "realized", "unrealized", "fees", "inventory", "drawdown"]:  # fmt: skip
        assert name in btc["names"], name
    for f in figures:
        assert f["drawn"] == len(f["names"]), f["title"]  # every trace was drawn as SVG
    assert btc["points"] > 0  # the fill markers
    assert "Sharpe (annualised)" in table and "default BTC/USDT" in table
