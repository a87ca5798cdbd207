"""Shutdown (SPEC §2, §12): leaving cancels our open orders on every symbol, bounded in time
even when the venue hangs; ``run.cancel_on_exit = false`` leaves them; a second Ctrl-C while
shutdown waits for cancel acks still ends with exit status 0 and nothing left open.

Time-based tests run on trio's MockClock (pytest-trio's ``autojump_clock``); the Ctrl-C test
runs ``mm-trio run`` in a subprocess.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

import pytest
import trio

from mm_trio.apps import run as run_app
from mm_trio.domain.model import OpenOrder
from mm_trio.engine.orchestrator import open_orchestrator
from mm_trio.exchange.limiter import Limiter
from tests.fakes import QuotingFake, ours
from tests.test_cli_e2e import ROOT, mm_trio_cmd
from tests.test_orchestrator import make_config, wait_for

# --------------------------------------------------------------------------- in process


class HungFirstCancel(QuotingFake):
    """The first cancel request for AAA/USDT hangs (a stuck connection); later ones work."""

    def __init__(self, symbols: Sequence[str]) -> None:
        super().__init__(symbols)
        self.hung: str | None = None

    async def cancel(self, symbol: str, client_id: str) -> OpenOrder:
        if symbol == "AAA/USDT" and self.hung is None:
            self.hung = client_id
            await trio.sleep(3600)
        return await super().cancel(symbol, client_id)


async def test_shutdown_clears_orders_when_one_symbol_is_not_flat(
    autojump_clock: trio.abc.Clock,
) -> None:
    """One symbol's cancel hangs at shutdown: the final cancel-all still clears its orders."""
    fake = HungFirstCancel(["AAA/USDT", "BBB/USDT"])
    config = make_config()
    async with open_orchestrator(fake, config, limiter=Limiter(config.limiter)) as orch:
        await orch.add_symbol("AAA/USDT")
        await orch.add_symbol("BBB/USDT")
        await wait_for(lambda: len(ours(fake, "AAA/USDT")) > 0)
        await trio.sleep(1)
    assert fake.hung is not None
    # the stuck cancel's order is not left open on the venue as an orphan
    assert ours(fake, "AAA/USDT") == []


class BannedOpenOrders(QuotingFake):
    """The account-wide open-orders request waits out a venue ban (limiter paused)."""

    async def open_orders(self, symbol: str | None = None) -> list[OpenOrder]:
        if symbol is None:
            await trio.sleep(3600)  # e.g. a 418 ban: the shared limiter holds every request
        return await super().open_orders(symbol)


async def test_run_exit_is_bounded_when_venue_hangs(
    autojump_clock: trio.abc.Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``mm-trio run`` ends within its shutdown bounds when a venue request never returns."""
    fake = BannedOpenOrders(["AAA/USDT"])
    monkeypatch.setattr(run_app, "make_exchange", lambda *a, **k: fake)
    config = make_config()
    start = trio.current_time()
    rc = await run_app.run_command(
        config, ["AAA/USDT"], duration=5.0, summary_json=None, out=io.StringIO(), err=io.StringIO()
    )
    elapsed = trio.current_time() - start
    assert rc == 0
    assert elapsed < 5.0 + 2 * config.run.shutdown_timeout + 5.0, elapsed


async def test_run_respects_cancel_on_exit_false(
    autojump_clock: trio.abc.Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With ``run.cancel_on_exit = false`` the orders stay on the venue at exit."""
    fake = QuotingFake(["AAA/USDT"])
    monkeypatch.setattr(run_app, "make_exchange", lambda *a, **k: fake)
    config = make_config({"run": {"cancel_on_exit": False}})
    rc = await run_app.run_command(
        config, ["AAA/USDT"], duration=5.0, summary_json=None, out=io.StringIO(), err=io.StringIO()
    )
    assert rc == 0
    assert fake.placed, "the grid placed orders"
    assert ours(fake, "AAA/USDT"), "cancel_on_exit = false: orders must stay on the venue"


# --------------------------------------------------------------------------- signals


SLOW_CANCEL_TOML = """
[venue]
latency_ms = 3000

[grid]
step = "0.001"
levels_below = 4
"""


@pytest.mark.slow
def test_second_sigint_during_shutdown_still_exits_0_and_cancels(tmp_path: Path) -> None:
    """A second SIGINT while shutdown waits for cancel acks does not abort it."""
    cfg = tmp_path / "slow.toml"
    cfg.write_text(SLOW_CANCEL_TOML)
    summary_path = tmp_path / "s.json"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        mm_trio_cmd()
        + [
            "run",
            "--symbols",
            "BTC/USDT",
            "--config",
            str(cfg),
            "--summary-json",
            str(summary_path),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=env,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert "trading" in line, line
        time.sleep(8)  # orders placed (3 s latency each)
        proc.send_signal(signal.SIGINT)
        time.sleep(1.0)  # shutdown is waiting for the (3 s) cancel acks
        proc.send_signal(signal.SIGINT)  # the impatient trader presses Ctrl-C again
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err[-2000:]
    summary = json.loads(summary_path.read_text())
    assert summary["symbols"]["BTC/USDT"]["open_orders_at_exit"] == 0
