"""The dashboard in a real headless browser (Debian's chromium + chromium-driver, driven by
selenium) against a real ``mm-trio run --control 127.0.0.1:0`` subprocess on the simulated
venue: enter the token, see the symbols, add one through the form, see it trade, pause,
kill and resume, remove it and see it gone; the chart gets points, the fills arrive live,
and the console has no error but the one 400 the test provokes on purpose.

Skips (with the reason) where selenium, chromium or chromedriver is missing; `.ci/run`
installs them on a Debian machine.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.test_control_cli import TOKEN, _env, running

pytestmark = pytest.mark.slow  # a browser and a trading subprocess, in real time

BTC, ETH, SOL = "BTC/USDT", "ETH/USDT", "SOL/USDT"
WAIT_S = 45.0  # generous: two cores shared with other work
POLL_S = 0.2
BROWSER_NAMES = ("chromium", "chromium-browser", "google-chrome")
DRIVER_NAMES = ("chromedriver",)
WINDOW = "1400,1200"


def _which(names: tuple[str, ...]) -> str | None:
    for name in names:
        found = shutil.which(name) or (
            f"/usr/lib/chromium/{name}" if Path(f"/usr/lib/chromium/{name}").exists() else None
        )
        if found:
            return found
    return None


@pytest.fixture
def browser() -> Iterator[Any]:
    webdriver = pytest.importorskip(
        "selenium.webdriver", reason="selenium is not installed (pip install -e '.[dev]')"
    )
    binary, driver_path = _which(BROWSER_NAMES), _which(DRIVER_NAMES)
    if binary is None or driver_path is None:
        pytest.skip(
            "no headless browser: install Debian's chromium and chromium-driver "
            "(apt-get install chromium chromium-driver; .ci/run does)"
        )
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for arg in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root, where chromium's sandbox cannot start
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--no-first-run",
        "--disable-extensions",
        f"--window-size={WINDOW}",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # the driver is given: selenium's own manager never looks for (downloads) one
    service = webdriver.ChromeService(executable_path=driver_path)
    driver = webdriver.Chrome(service=service, options=options)
    try:
        yield driver
    finally:
        driver.quit()


def until(check: Callable[[], Any], what: str, limit: float = WAIT_S) -> Any:
    """Poll ``check`` (real time) until it returns something truthy; that value."""
    deadline = time.monotonic() + limit
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = check()
        except Exception as exc:  # a row replaced between lookup and read: try again
            last_error = exc
            value = None
        if value:
            return value
        time.sleep(POLL_S)
    raise AssertionError(f"not seen in {limit:.0f} s: {what} (last error: {last_error!r})")


def _row(driver: Any, symbol: str) -> Any:
    from selenium.webdriver.common.by import By

    rows = driver.find_elements(By.CSS_SELECTOR, f'#symbols-body tr[data-symbol="{symbol}"]')
    return rows[0] if rows else None


def _cell(driver: Any, symbol: str, col: str) -> str | None:
    row = _row(driver, symbol)
    if row is None:
        return None
    from selenium.webdriver.common.by import By

    text: str = row.find_element(By.CSS_SELECTOR, f'td[data-col="{col}"]').text
    return text


def _symbols(driver: Any) -> list[str]:
    from selenium.webdriver.common.by import By

    return [
        r.get_attribute("data-symbol")
        for r in driver.find_elements(By.CSS_SELECTOR, "#symbols-body tr")
    ]


def _chart_points(driver: Any) -> int:
    from selenium.webdriver.common.by import By

    return int(driver.find_element(By.ID, "chart").get_attribute("data-points") or 0)


def _trading(driver: Any, symbol: str) -> bool:
    row = _row(driver, symbol)
    if row is None:
        return False
    return (
        int(row.get_attribute("data-open-orders") or 0) > 0
        or int(row.get_attribute("data-fills") or 0) > 0
    )


def test_dashboard_in_a_real_browser(tmp_path: Path, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    started = time.monotonic()
    env = _env(tmp_path, TOKEN)
    with running(tmp_path, ["--symbols", f"{BTC},{ETH}", "--duration", "300", "--quiet"], env) as (
        proc,
        url,
        _note,
    ):
        driver = browser
        find = driver.find_element

        # the page loads without the token and asks for it; nothing is shown before
        driver.get(url + "/")
        assert find(By.ID, "token-input").is_displayed()
        assert not find(By.ID, "dash").is_displayed()
        find(By.ID, "token-input").send_keys(TOKEN)
        find(By.ID, "token-submit").click()

        # both symbols in the table, trading; the token is nowhere in the address
        until(lambda: _symbols(driver) == [BTC, ETH], "BTC and ETH rows")
        until(lambda: _trading(driver, BTC) and _trading(driver, ETH), "BTC and ETH trading")
        assert TOKEN not in driver.current_url
        until(
            lambda: find(By.ID, "stream-state").get_attribute("data-state") == "live",
            "the event stream connected",
        )
        until(lambda: _cell(driver, BTC, "state") == "RUNNING", "BTC RUNNING")

        # a bad symbol: the API's error, naming the field, is shown; nothing is added
        find(By.ID, "add-symbol").send_keys("BTCUSDT")
        find(By.ID, "add-submit").click()
        error = until(
            lambda: find(By.ID, "error").is_displayed() and find(By.ID, "error-text").text,
            "the error banner",
        )
        assert "BTCUSDT" in error and "HTTP 400" in error and "field: symbol" in error
        assert "invalid" in (find(By.ID, "add-symbol").get_attribute("class") or "")
        assert _symbols(driver) == [BTC, ETH]

        # add SOL/USDT with a grid override through the form; it trades
        find(By.ID, "add-symbol").clear()
        find(By.ID, "add-symbol").send_keys(SOL)
        find(By.ID, "add-grid").send_keys("step=0.002 levels_below=3")
        find(By.ID, "add-submit").click()
        until(lambda: SOL in _symbols(driver), "the SOL/USDT row")
        assert not find(By.ID, "error").is_displayed()
        until(lambda: "added SOL/USDT" in find(By.ID, "notice").text, "the added notice")
        until(lambda: _trading(driver, SOL), "SOL/USDT open orders or fills")

        # fills arrive in the recent-fills table (the initial load and the live stream)
        until(lambda: driver.find_elements(By.CSS_SELECTOR, "#fills-body tr"), "a row of fills")

        # pause BTC from its row: HALTED (paused); resume it
        _row(driver, BTC).find_element(By.CSS_SELECTOR, "button[data-action='pause']").click()
        until(lambda: "(paused)" in (_cell(driver, BTC, "state") or ""), "BTC paused")
        assert "paused by operator" in (_cell(driver, BTC, "reason") or "")
        _row(driver, BTC).find_element(By.CSS_SELECTOR, "button[data-action='resume']").click()
        until(lambda: (_cell(driver, BTC, "state") or "") == "RUNNING", "BTC running again")

        # the kill switch with a reason, then resume all lifts it
        find(By.ID, "kill-reason").send_keys("browser check")
        find(By.ID, "kill-submit").click()
        badge = until(
            lambda: find(By.ID, "kill-badge").is_displayed() and find(By.ID, "kill-badge").text,
            "the KILLED badge",
        )
        assert "browser check" in badge
        until(
            lambda: all(
                _row(driver, s).get_attribute("data-open-orders") == "0" for s in (BTC, ETH, SOL)
            ),
            "no open order after the kill",
        )
        find(By.ID, "resume-all").click()
        until(lambda: not find(By.ID, "kill-badge").is_displayed(), "the badge gone")
        until(lambda: _trading(driver, SOL), "SOL trading after resume")

        # remove SOL from its row: gone from the table and from the exposure list
        _row(driver, SOL).find_element(By.CSS_SELECTOR, "button[data-action='remove']").click()
        until(lambda: SOL not in _symbols(driver), "the SOL/USDT row gone")
        assert _symbols(driver) == [BTC, ETH]
        assert not driver.find_elements(By.CSS_SELECTOR, f'#exposure-symbols [data-symbol="{SOL}"]')
        until(
            lambda: (
                {"SOL/USDT added", "SOL/USDT removed"}
                <= {line.split(" ", 1)[-1] for line in find(By.ID, "activity").text.splitlines()}
            ),
            "SOL/USDT added and removed in the activity log (from the event stream)",
        )

        # the chart got points and keeps getting them (one per status refresh)
        first = until(lambda: _chart_points(driver) >= 2 and _chart_points(driver), "chart points")
        until(lambda: _chart_points(driver) > first, "a new chart point")
        assert find(By.ID, "chart-line").get_attribute("points").count(",") >= 2

        # a reload keeps the token for this tab (sessionStorage): no prompt again
        driver.refresh()
        until(lambda: _symbols(driver) == [BTC, ETH], "the table after a reload")

        # no JS error in the console; the one network error is the 400 provoked above
        logs = driver.get_log("browser")
        severe = [e for e in logs if e["level"] == "SEVERE"]
        unexpected = [
            e
            for e in severe
            if not (
                e.get("source") == "network"
                and "/api/symbols" in e["message"]
                and "400" in e["message"]
            )
        ]
        assert not unexpected, unexpected
        assert proc.poll() is None  # the run trades on

    # the run stopped cleanly on SIGINT with the browser's event stream still open
    assert proc.returncode == 0
    # the token never reached the run's output (logs, banner)
    assert proc.stdout is not None and proc.stderr is not None
    output = proc.stdout.read() + proc.stderr.read()
    assert "SOL/USDT added" in output and TOKEN not in output
    print(f"\ndashboard browser test: {time.monotonic() - started:.1f} s")


def test_dashboard_token_from_the_address_fragment(tmp_path: Path, browser: Any) -> None:
    """``/#token=...`` connects at once and the fragment is dropped from the address."""
    from selenium.webdriver.common.by import By

    env = _env(tmp_path, TOKEN)
    with running(tmp_path, ["--symbols", BTC, "--quiet"], env) as (_proc, url, _note):
        browser.get(f"{url}/#token={TOKEN}")
        until(lambda: _symbols(browser) == [BTC], "the BTC row")
        assert TOKEN not in browser.current_url
        assert browser.current_url.rstrip("/") == url
        assert not browser.find_element(By.ID, "token-input").is_displayed()
        # "Forget token" asks again; a wrong token is refused with a message
        browser.find_element(By.ID, "forget-token").click()
        assert browser.find_element(By.ID, "token-input").is_displayed()
        browser.find_element(By.ID, "token-input").send_keys("not-the-token-0123456789")
        browser.find_element(By.ID, "token-submit").click()
        message = until(
            lambda: (
                browser.find_element(By.ID, "auth-message").is_displayed()
                and browser.find_element(By.ID, "auth-message").text
            ),
            "the refused-token message",
        )
        assert "refused" in message
        assert not browser.find_element(By.ID, "dash").is_displayed()
        js_errors = [
            e
            for e in browser.get_log("browser")
            if e["level"] == "SEVERE" and e.get("source") != "network"
        ]
        assert not js_errors, js_errors
