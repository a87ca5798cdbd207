"""Regression tests for bugs found in review (shutdown, signals, kill latch, cancels, overflow).

Time-based tests run on trio's MockClock (pytest-trio's ``autojump_clock``).
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import trio

from mm_trio.apps import run as run_app
from mm_trio.domain.model import OpenOrder, OrderUpdate, Quote
from mm_trio.engine.orchestrator import open_orchestrator
from mm_trio.exchange.base import OrderRejected
from mm_trio.exchange.limiter import Limiter
from tests.fakes import FakeExchange
from tests.test_cli_e2e import ROOT, mm_trio_cmd
from tests.test_orchestrator import make_config, wait_for

D = Decimal


def quote(symbol: str, bid: str, ask: str, ts: int = 1) -> Quote:
    return Quote(symbol=symbol, bid=D(bid), bid_qty=D(100), ask=D(ask), ask_qty=D(100), ts=ts)


class QuotingFake(FakeExchange):
    """FakeExchange that publishes one quote per symbol as soon as it is subscribed."""

    PRICES = {"AAA/USDT": ("10.00", "10.01"), "BBB/USDT": ("20.00", "20.02")}

    async def subscribe(self, symbols: Sequence[str]) -> None:
        await super().subscribe(symbols)
        for s in symbols:
            bid, ask = self.PRICES[s]
            self.inject(quote(s, bid, ask))


def ours(fake: FakeExchange, symbol: str) -> list[OpenOrder]:
    return [o for o in fake.orders.values() if o.symbol == symbol]


# --------------------------------------------------------------------------- shutdown


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


async def test_shutdown_leaves_orders_when_one_symbol_is_not_flat(
        autojump_clock: trio.abc.Clock) -> None:
    fake = HungFirstCancel(["AAA/USDT", "BBB/USDT"])
    config = make_config()
    async with open_orchestrator(fake, config, limiter=Limiter(config.limiter)) as orch:
        await orch.add_symbol("AAA/USDT")
        await orch.add_symbol("BBB/USDT")
        await wait_for(lambda: len(ours(fake, "AAA/USDT")) > 0)
        await trio.sleep(1)
    assert fake.hung is not None
    # the stuck cancel's order is still open on the venue: an orphan
    assert ours(fake, "AAA/USDT") == []


class BannedOpenOrders(QuotingFake):
    """The account-wide open-orders request waits out a venue ban (limiter paused)."""

    async def open_orders(self, symbol: str | None = None) -> list[OpenOrder]:
        if symbol is None:
            await trio.sleep(3600)  # e.g. a 418 ban: the shared limiter holds every request
        return await super().open_orders(symbol)


async def test_run_exit_is_bounded_when_venue_hangs(autojump_clock: trio.abc.Clock,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    fake = BannedOpenOrders(["AAA/USDT"])
    monkeypatch.setattr(run_app, "make_exchange", lambda *a, **k: fake)
    config = make_config()
    start = trio.current_time()
    rc = await run_app.run_command(config, ["AAA/USDT"], duration=5.0, summary_json=None,
                               out=io.StringIO(), err=io.StringIO())
    elapsed = trio.current_time() - start
    assert rc == 0
    assert elapsed < 5.0 + 2 * config.run.shutdown_timeout + 5.0, elapsed


async def test_run_respects_cancel_on_exit_false(autojump_clock: trio.abc.Clock,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    fake = QuotingFake(["AAA/USDT"])
    monkeypatch.setattr(run_app, "make_exchange", lambda *a, **k: fake)
    config = make_config({"run": {"cancel_on_exit": False}})
    rc = await run_app.run_command(config, ["AAA/USDT"], duration=5.0, summary_json=None,
                               out=io.StringIO(), err=io.StringIO())
    assert rc == 0
    assert fake.placed, "the grid placed orders"
    assert ours(fake, "AAA/USDT"), "cancel_on_exit = false: orders must stay on the venue"


# --------------------------------------------------------------------------- kill switch


async def test_operator_kill_is_latched_until_resume(autojump_clock: trio.abc.Clock) -> None:
    fake = QuotingFake(["AAA/USDT", "BBB/USDT"])
    config = make_config()
    async with open_orchestrator(fake, config, limiter=Limiter(config.limiter)) as orch:
        await orch.add_symbol("AAA/USDT")
        await wait_for(lambda: len(ours(fake, "AAA/USDT")) > 0)
        await orch.kill("operator: stop everything")
        await wait_for(lambda: ours(fake, "AAA/USDT") == [])
        await orch.add_symbol("BBB/USDT")
        await trio.sleep(5)
        assert [r for r in fake.placed if r.symbol == "BBB/USDT"] == []
        assert orch.snapshot().killed


# --------------------------------------------------------------------------- order path


class RejectFirstCancel(QuotingFake):
    """The first cancel is refused with a 4xx the adapter maps to OrderRejected (e.g. -1021
    timestamp outside recvWindow); the order stays open on the venue."""

    def __init__(self, symbols: Sequence[str]) -> None:
        super().__init__(symbols)
        self.rejected: str | None = None

    async def cancel(self, symbol: str, client_id: str) -> OpenOrder:
        if self.rejected is None:
            self.rejected = client_id
            raise OrderRejected("HTTP 400 code -1021: Timestamp for this request was outside "
                                "of the recvWindow.")
        return await super().cancel(symbol, client_id)


async def test_rejected_cancel_is_not_left_as_a_zombie(autojump_clock: trio.abc.Clock) -> None:
    fake = RejectFirstCancel(["AAA/USDT"])
    config = make_config()
    async with open_orchestrator(fake, config, limiter=Limiter(config.limiter)) as orch:
        m = await orch.add_symbol("AAA/USDT")
        await wait_for(lambda: len(ours(fake, "AAA/USDT")) == 4)
        fake.inject(quote("AAA/USDT", "11.00", "11.01", ts=2))  # every buy leaves the window
        await wait_for(lambda: fake.rejected is not None)
        await trio.sleep(120)
        assert fake.rejected not in fake.orders, "out-of-window order still open on the venue"
        assert fake.rejected not in {o.client_id for o in m.strategy.live_orders()}


# --------------------------------------------------------------------------- isolation


class SlowCancel(QuotingFake):
    def __init__(self, symbols: Sequence[str]) -> None:
        super().__init__(symbols)
        self.slow = False

    async def cancel(self, symbol: str, client_id: str) -> OpenOrder:
        if self.slow and symbol == "AAA/USDT":
            await trio.sleep(5)
        return await super().cancel(symbol, client_id)


async def test_overflow_while_a_symbol_fails_does_not_kill_the_others(
        autojump_clock: trio.abc.Clock) -> None:
    fake = SlowCancel(["AAA/USDT", "BBB/USDT"])
    config = make_config({"run": {"order_channel_size": 4}})
    async with open_orchestrator(fake, config, limiter=Limiter(config.limiter)) as orch:
        a = await orch.add_symbol("AAA/USDT")
        b = await orch.add_symbol("BBB/USDT")
        await wait_for(lambda: len(ours(fake, "AAA/USDT")) > 0 and len(ours(fake, "BBB/USDT")) > 0)

        def boom(q: Quote) -> list[Any]:
            raise RuntimeError("strategy bug in AAA")

        a.strategy.on_quote = boom  # type: ignore[method-assign]
        fake.slow = True
        fake.inject(quote("AAA/USDT", "10.01", "10.02", ts=3))
        await trio.sleep(0.5)  # AAA is in _fail, awaiting its (slow) cancel_all
        for i in range(10):  # order reports keep arriving for AAA (e.g. foreign ids, fills)
            fake.inject(OrderUpdate(symbol="AAA/USDT", client_id=f"other-{i}", side="BUY",
                                    price=D("9"), qty=D(1), status="NEW"))
        await trio.sleep(30)
        events = b.events
        fake.inject(quote("BBB/USDT", "20.10", "20.12", ts=4))
        await trio.sleep(1)
        assert b.events > events, "BBB must keep trading"
        assert a.state.value == "FAILED"


async def test_resume_during_remove_does_not_restart_trading(
        autojump_clock: trio.abc.Clock) -> None:
    fake = SlowCancel(["AAA/USDT"])
    config = make_config()
    async with open_orchestrator(fake, config, limiter=Limiter(config.limiter)) as orch:
        await orch.add_symbol("AAA/USDT")
        await wait_for(lambda: len(ours(fake, "AAA/USDT")) > 0)
        placed_before = len(fake.placed)
        fake.slow = True
        async with trio.open_nursery() as nursery:
            nursery.start_soon(orch.remove_symbol, "AAA/USDT")
            await trio.sleep(1)
            await orch.resume()  # an operator resumes (e.g. after a kill) meanwhile
        assert "AAA/USDT" not in orch.symbols()
        # only the final cancel_all happened to catch them here; a quote after it (or F1's
        # skipped cancel_all) leaves them as orphans
        assert fake.placed[placed_before:] == [], "a symbol being removed placed new orders"


# --------------------------------------------------------------------------- signals


SLOW_CANCEL_TOML = """
[venue]
latency_ms = 3000

[grid]
step = "0.001"
levels_below = 4
"""


def test_second_sigint_during_shutdown_still_exits_0_and_cancels(tmp_path: Path) -> None:
    cfg = tmp_path / "slow.toml"
    cfg.write_text(SLOW_CANCEL_TOML)
    summary_path = tmp_path / "s.json"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(mm_trio_cmd() + ["run", "--symbols", "BTC/USDT", "--config", str(cfg),
                                             "--summary-json", str(summary_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                            env=env)
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


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-v"]))
