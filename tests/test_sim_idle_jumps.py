"""The simulated venue moving trio's MockClock itself while every other task waits
(``SimulatedExchange(advance_clock=...)``, the replay's fast path, issue 12).

What must hold: every event and every other task's timer happens at exactly the time it
would under plain autojump (the clock takes the same values), ties with another task's
deadline are left to trio, a request's caller is woken at its due time, and the quiet
stretches really are crossed without a scheduler pass per tick.
"""

from __future__ import annotations

from decimal import Decimal

import attrs
import trio
from trio._core import MockClock

from mm_trio.domain.config import SimVenueConfig
from mm_trio.domain.model import Event, OrderRequest, OrderUpdate, Quote, Trade
from mm_trio.exchange.sim import EPOCH_NS, SimulatedExchange

D = Decimal
SYM = "BTC/USDT"
MS = 1_000_000


class TimedFeed:
    """Market events at their ts, with ``next_ts`` (so the venue wakes at each one)."""

    def __init__(self, events: list[Event]) -> None:
        self.events = sorted(events, key=lambda e: e.ts)  # type: ignore[union-attr]

    def next_ts(self) -> int | None:
        return self.events[0].ts if self.events else None  # type: ignore[union-attr]

    def add(self, symbol: str, start_price: Decimal) -> None:
        pass

    def remove(self, symbol: str) -> None:
        pass

    def advance(self, to_ts: int) -> list[Event]:
        out = []
        while self.events and self.events[0].ts <= to_ts:  # type: ignore[union-attr]
            out.append(self.events.pop(0))
        return out


def quote(ms: float, bid: str = "99.99", ask: str = "100.01") -> Quote:
    return Quote(
        symbol=SYM,
        bid=D(bid),
        bid_qty=D(1),
        ask=D(ask),
        ask_qty=D(1),
        ts=EPOCH_NS + round(ms * MS),
    )


def trade(ms: float, price: str = "100") -> Trade:
    return Trade(
        symbol=SYM,
        price=D(price),
        qty=D("0.01"),
        buyer_maker=True,
        trade_id=round(ms * 1000),
        ts=EPOCH_NS + round(ms * MS),
    )


def market() -> list[Event]:
    events: list[Event] = [quote(1.0 + 0.7 * i) for i in range(400)]
    events += [trade(1.3 + 2.9 * i) for i in range(90)]
    events.append(quote(250.0))  # the same instant as a timer below: a tie
    return events


def _session(jump: bool) -> tuple[list[tuple[float, str]], int]:
    """Run the venue on ``market()`` with a sleeper and an order; what happened, when."""
    clock = MockClock(autojump_threshold=0)
    seen: list[tuple[float, str]] = []

    async def main() -> int:
        venue = SimulatedExchange(
            attrs.evolve(SimVenueConfig(), latency_ms=3.0),
            feed=TimedFeed(market()),
            advance_clock=clock.jump if jump else None,
        )
        venue.engine.add_symbol(venue.engine.specs[SYM], D(100), replace=True)

        def sink(ev: Event) -> None:
            seen.append((trio.current_time(), type(ev).__name__ + str(getattr(ev, "ts", ""))))

        venue.attach(sink)
        async with trio.open_nursery() as nursery:
            await nursery.start(venue.run)
            await venue.subscribe([SYM])

            async def sleeper() -> None:
                for at in (0.0333, 0.1, 0.25, 0.2871):  # 0.25 s: also a quote's time
                    await trio.sleep_until(at)
                    seen.append((trio.current_time(), f"timer {at}"))

            async def trader() -> None:
                await trio.sleep_until(0.05)
                ack = await venue.place(
                    OrderRequest(
                        symbol=SYM,
                        client_id="c1",
                        side="BUY",
                        price=D("99.5"),
                        qty=D("0.1"),
                        post_only=True,
                    )
                )
                seen.append((trio.current_time(), f"ack {ack.status}"))

            nursery.start_soon(sleeper)
            nursery.start_soon(trader)
            await trio.sleep_until(0.4)
            nursery.cancel_scope.cancel()
        return venue.idle_jumps

    jumps = trio.run(main, clock=clock)
    return seen, jumps


def test_idle_jumps_keep_every_time_exactly_as_autojump_gives_it() -> None:
    plain, none = _session(jump=False)
    fast, jumps = _session(jump=True)
    assert none == 0
    assert jumps > 300  # most ticks were reached without a scheduler pass
    # the same events and timers at the same (float-identical) times; at a tie (the quote
    # and the timer at 0.25 s) trio picks the order, as it always did
    assert sorted(fast) == sorted(plain)
    venue = [e for e in fast if not e[1].startswith(("timer", "ack"))]
    assert venue == [e for e in plain if not e[1].startswith(("timer", "ack"))]
    # and those are the right times: each market event exactly at its own ts
    for at, what in fast:
        if what.startswith(("Quote", "Trade")):
            ts = int(what.removeprefix("Quote").removeprefix("Trade"))
            assert at == (ts - EPOCH_NS) / 1e9
    timers = [at for at, what in fast if what.startswith("timer")]
    assert timers == [0.0333, 0.1, 0.25, 0.2871]
    ack = next(at for at, what in fast if what.startswith("ack"))
    assert abs(ack - 0.053) < 1e-9  # one latency after the request
    reports = [what for _, what in fast if what.startswith(OrderUpdate.__name__)]
    assert len(reports) == 1  # the NEW of our order, posted when the request landed


def test_without_advance_clock_the_venue_never_moves_the_clock() -> None:
    _, jumps = _session(jump=False)
    assert jumps == 0
