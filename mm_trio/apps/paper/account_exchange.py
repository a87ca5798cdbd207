"""One paper account's simulated exchange: :class:`PaperAccountExchange`, a
:class:`~mm_trio.exchange.sim.SimulatedExchange` whose events go to callbacks synchronously.

The FIRST account's exchange runs the venue clock and the seeded synthetic (or recorded) feed;
every market event it produces is checked (:func:`market_event_error`), matched, its fills put
into that account's ledger, then published (``on_market``: the other accounts' engines, the
books and the market streams), so all accounts see, and fill against, the same market.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any

from mm_trio.domain.config import SimVenueConfig
from mm_trio.domain.model import ZERO, Event, Quote, SymbolSpec, Trade
from mm_trio.exchange.sim import SimulatedExchange

__all__ = ["MARKET_VALUE_CEILING", "PaperAccountExchange", "market_event_error"]

log = logging.getLogger(__name__)

MARKET_VALUE_CEILING = Decimal("1e30")
"""Largest price or size a market event may carry into the books. Far above any real market
(and every symbol's own max price / qty), far below where the books' arithmetic (price / tick,
price * qty) overflows the Decimal context; an event beyond it is dropped before matching."""
_LOGGED_REJECTS = 10  # dropped market events logged one by one; later ones only counted
_CALLBACK_BUFFER = 16  # the event channel is unused: events go to the callbacks


def market_event_error(ev: Quote | Trade, specs: Mapping[str, SymbolSpec]) -> str | None:
    """Why a market event must not reach the books (None if it may): an unlisted symbol, or
    a price that is not finite and in (0, :data:`MARKET_VALUE_CEILING`], or a size that is
    not finite and in [0, ceiling]. Pure; the admin endpoint's own checks are stricter."""
    if ev.symbol not in specs:
        return f"{ev.symbol}: not a listed symbol"
    prices: tuple[tuple[str, Decimal], ...]
    sizes: tuple[tuple[str, Decimal], ...]
    if type(ev) is Quote:
        prices = (("bid", ev.bid), ("ask", ev.ask))
        sizes = (("bid_qty", ev.bid_qty), ("ask_qty", ev.ask_qty))
    else:
        assert type(ev) is Trade
        prices = (("price", ev.price),)
        sizes = (("qty", ev.qty),)
    for name, value in prices:
        if not value.is_finite() or not ZERO < value <= MARKET_VALUE_CEILING:
            return f"{ev.symbol} {name} {value}: not a finite price in (0, 1e30]"
    for name, value in sizes:
        if not value.is_finite() or not ZERO <= value <= MARKET_VALUE_CEILING:
            return f"{ev.symbol} {name} {value}: not a finite size in [0, 1e30]"
    return None


class PaperAccountExchange(SimulatedExchange):
    """A SimulatedExchange whose events go to callbacks synchronously (no event channel):
    ``on_account`` gets the account's order and balance events, ``on_market`` (primary
    account only) every market event after it was matched.

    Overrides the private ``_post`` / ``_process`` of SimulatedExchange (a public hook there
    would be cleaner).
    """

    def __init__(
        self,
        config: SimVenueConfig,
        *,
        epoch_ns: int,
        on_account: Callable[[Sequence[Event]], None],
        on_market: Callable[[Event], None] | None = None,
        feed: Any = None,
    ) -> None:
        super().__init__(config, epoch_ns=epoch_ns, buffer_size=_CALLBACK_BUFFER, feed=feed)
        self._on_account = on_account
        self._on_market = on_market
        self.rejected_market_events = 0  # dropped by market_event_error, never matched

    def _post(self, events: Sequence[Event]) -> None:
        if events:
            self._on_account(events)

    def _process(self, events: Iterable[Event]) -> None:
        """Each market event: checked, matched, its fills into the ledger, then published.

        The ledger takes the fills straight after the engine made them, before anything
        else (books, streams, other accounts) can fail: the engine and the ledger never
        disagree about an order.
        """
        engine = self.engine
        specs = engine.specs
        on_market = self._on_market
        n = 0
        for ev in events:
            n += 1
            kind = type(ev)
            if kind is not Quote and kind is not Trade:
                continue
            why = market_event_error(ev, specs)  # type: ignore[arg-type]
            if why is not None:
                self.rejected_market_events += 1
                if self.rejected_market_events <= _LOGGED_REJECTS:
                    log.warning("market event dropped before matching: %s", why)
                continue
            fills = engine.on_quote(ev) if kind is Quote else engine.on_trade(ev)  # type: ignore[arg-type]
            if fills:
                self._on_account(fills)
            if on_market is not None:
                on_market(ev)
        self.market_events += n
