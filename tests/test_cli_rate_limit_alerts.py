"""``mm-trio run`` reports the venue's 429 pauses and 418 bans (issue 7, item 8).

The venue answers five placements with 429 and two with 418, each a separate pause. Every
pause is logged once with its cause and duration (429 WARNING, 418 ERROR), and the summary
JSON counts them and lists the ban alerts. On trio's MockClock, through ``run_command``
with the shared limiter the CLI builds.
"""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path
from typing import Any

import pytest
import trio

from mm_trio.apps import run as run_app
from mm_trio.domain.model import OpenOrder, OrderRequest
from mm_trio.exchange.base import RateLimited, StillWanted
from mm_trio.exchange.limiter import Limiter
from tests.fakes import QuotingFake, symbol_quote
from tests.test_orchestrator import make_config

PAUSE_429 = 2.0
BAN_418 = 10.0
SCRIPT = [(429, PAUSE_429)] * 5 + [(418, BAN_418)] * 2
RUN_SECONDS = 60.0  # the whole script plays out well within it
QUOTE_EVERY = 1.0  # seconds: the market data stays fresh (no stale-data halt)


class RateLimitingVenue(QuotingFake):
    """Takes the shared limiter like a real venue and quotes every second; answers
    placements from ``SCRIPT``, each once the previous pause has ended (so each is a pause
    of its own: the refused placement, sent again after the pause, gets the next one)."""

    def __init__(self, limiter: Limiter) -> None:
        super().__init__(["AAA/USDT"])
        self.limiter = limiter
        self.script = list(SCRIPT)
        self.next_at = 0.0

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        bid, ask = self.PRICES["AAA/USDT"]
        while True:
            await trio.sleep(QUOTE_EVERY)
            if "AAA/USDT" in self.subscribed:
                self.inject(symbol_quote("AAA/USDT", bid, ask, ts=int(trio.current_time() * 1e9)))

    async def place(
        self, request: OrderRequest, *, still_wanted: StillWanted | None = None
    ) -> OpenOrder:
        await self.limiter.acquire(1, 1)
        now = trio.current_time()
        if self.script and now >= self.next_at:
            status, seconds = self.script.pop(0)
            self.next_at = now + seconds
            exc = RateLimited(
                f"POST /api/v3/order: HTTP {status}: scripted",
                retry_after=seconds,
                banned=status == 418,
            )
            # as the Binance adapter does: it pauses the limiter, then its caller (the
            # manager) reports the same answer again -- one pause, logged once
            self.limiter.pause(seconds, banned=exc.banned, reason=str(exc))
            raise exc
        return await super().place(request, still_wanted=still_wanted)


async def test_each_429_and_418_is_logged_once_and_counted_in_the_summary(
    autojump_clock: trio.abc.Clock,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    tmp_path: Path,
) -> None:
    caplog.set_level(logging.INFO)
    venues: list[RateLimitingVenue] = []

    def make_exchange(
        venue: str, base_url: str | None, config: Any, limiter: Limiter
    ) -> RateLimitingVenue:
        venues.append(RateLimitingVenue(limiter))
        return venues[-1]

    monkeypatch.setattr(run_app, "make_exchange", make_exchange)
    summary_path = tmp_path / "summary.json"
    rc = await run_app.run_command(
        make_config(),
        ["AAA/USDT"],
        duration=RUN_SECONDS,
        summary_json=summary_path,
        out=io.StringIO(),
        err=io.StringIO(),
    )
    assert rc == 0
    assert venues[0].script == []  # every scripted answer was given
    pauses = [
        r for r in caplog.records if r.levelno >= logging.WARNING and "HTTP 4" in r.getMessage()
    ]
    rate = [r.getMessage() for r in pauses if r.levelno == logging.WARNING]
    bans = [r.getMessage() for r in pauses if r.levelno == logging.ERROR]
    assert len(rate) == 5 and all("429" in m and f"{PAUSE_429:.1f}s" in m for m in rate)
    assert len(bans) == 2 and all("418" in m and f"{BAN_418:.0f}s" in m for m in bans)
    summary = json.loads(summary_path.read_text())
    limiter = summary["limiter"]
    assert (limiter["pauses"], limiter["bans"]) == (7, 2)
    assert limiter["alerts"] == bans
