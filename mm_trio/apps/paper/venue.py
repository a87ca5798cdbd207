"""The paper venue behind the Binance-compatible API: :class:`PaperVenue`, a thin facade.

It owns the parts and their wiring; the logic is in the modules it delegates to:

* accounts and the order ledger: :mod:`~mm_trio.apps.paper.ledger` (one
  :class:`~mm_trio.apps.paper.ledger.Account` per API key, each with its own
  :class:`~mm_trio.apps.paper.account_exchange.PaperAccountExchange`);
* market data: :mod:`~mm_trio.apps.paper.hub` (books and stream subscribers) and
  :mod:`~mm_trio.apps.paper.depth` (synthetic depth);
* requests: :mod:`~mm_trio.apps.paper.params`, :mod:`~mm_trio.apps.paper.orders` (new-order
  checks), :mod:`~mm_trio.apps.paper.replies` (public data) and
  :mod:`~mm_trio.apps.paper.trading` (account and order operations);
* rate limits, faults and the admin token: :mod:`~mm_trio.apps.paper.ratelimit`,
  :mod:`~mm_trio.apps.paper.faults`, :mod:`~mm_trio.apps.paper.auth`.

The FIRST account's exchange runs the venue clock and the seeded synthetic feed (or the
recordings of ``replay``); every market event it produces is passed through the other
accounts' engines and then to the market hub, so all accounts see (and fill against) the same
market.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

import trio

from mm_trio.apps.paper import replies, trading
from mm_trio.apps.paper.auth import AdminToken
from mm_trio.apps.paper.config import PaperConfig
from mm_trio.apps.paper.depth import DEPTH_SPEEDS
from mm_trio.apps.paper.faults import Faults
from mm_trio.apps.paper.hub import MarketHub
from mm_trio.apps.paper.ledger import Account, AccountJournal, OrderRecord
from mm_trio.apps.paper.orders import NewOrder, validate_order
from mm_trio.apps.paper.params import param_symbol, param_symbols
from mm_trio.apps.paper.ratelimit import RateLimiter
from mm_trio.apps.paper.state import VenueState, VenueStateError
from mm_trio.domain.errors import ReplayInputError
from mm_trio.domain.model import Event, SymbolSpec, native_symbol

__all__ = ["PaperVenue"]

log = logging.getLogger(__name__)

_NS_PER_S = 1e9
_NS_PER_MS = 1_000_000
_DEPTH_INTERVALS = dict(zip(DEPTH_SPEEDS, (0.1, 1.0), strict=True))  # seconds per depth speed


def replay_feed(config: PaperConfig) -> tuple[Any, dict[str, tuple[SymbolSpec, Decimal]]]:
    """The recorded feed of ``config.replay`` and its symbols (spec, first mid); ``(None,
    {})`` without recordings (the synthetic feed)."""
    if not config.replay:
        return None, {}
    from mm_trio.apps.paper.replay import scaled_replay
    from mm_trio.domain.config import Config
    from mm_trio.exchange.sim.recorded import RecordedMarket, replay_market

    paths = [Path(p) for p in config.replay]
    cfg = Config(venue=config.venue)
    feed: Any
    if config.replay_speed == 1 and config.replay_repeat == 1:
        feed, specs, mids = replay_market(paths, cfg, time.time_ns())
    else:
        for p in paths:
            if not p.is_file():
                raise ReplayInputError(f"recording {str(p)!r} does not exist")
        market = RecordedMarket(paths, cfg)
        specs, mids = market.specs, market.mids
        feed = scaled_replay(
            market,
            paths,
            cfg,
            start_ns=time.time_ns(),
            speed=config.replay_speed,
            repeat=config.replay_repeat,
        )
    return feed, {s: (spec, mids.get(s, Decimal(1))) for s, spec in specs.items()}


class PaperVenue:
    """Accounts, market hub, rate limiter and faults; the operations both APIs call.

    Construct inside a trio run (it reads the trio clock to align venue time with the wall
    clock); run :meth:`run` in a nursery.
    """

    def __init__(self, config: PaperConfig) -> None:
        self.config = config
        self.epoch_ns = time.time_ns() - round(trio.current_time() * _NS_PER_S)
        self.limiter = RateLimiter(config.rate_limits)
        self.faults = Faults(config.faults)
        self.admin_token = AdminToken.resolve(config.admin_token, os.environ)
        feed, extra = replay_feed(config)
        self.replay_symbols: tuple[str, ...] = tuple(extra)
        self.accounts: dict[str, Account] = {}
        for i, acct_cfg in enumerate(config.accounts):
            primary = i == 0
            self.accounts[acct_cfg.api_key] = Account(
                acct_cfg,
                config.venue,
                epoch_ns=self.epoch_ns,
                max_orders_kept=config.max_orders_kept,
                on_market=self.on_market if primary else None,
                feed=feed if primary else None,
                extra_specs=extra,
            )
        self.primary = next(iter(self.accounts.values()))
        self.others = list(self.accounts.values())[1:]
        self.engine_specs: dict[str, SymbolSpec] = self.primary.engine.specs
        self.natives: dict[str, str] = {native_symbol(s): s for s in self.engine_specs}
        self.hub = MarketHub(self.engine_specs, config.depth_levels)
        self.ws_scopes: set[trio.CancelScope] = set()
        # market-stream connections (apps.paper.streams.StreamConnection), latest last
        self.stream_connections: list[Any] = []
        self._started = trio.Event()
        self._failed = trio.Event()
        self._failure: VenueStateError | None = None
        self.state: VenueState | None = None
        if config.state is not None:
            self.state = VenueState.open(config.state)  # locked until close()
            try:
                self._restore(self.state)
            except BaseException:
                self.close()
                raise

    def _restore(self, state: VenueState) -> None:
        """Each account continues from the file (or is saved there as it starts).

        Every saved account is restored before anything is written, so a file refused
        here (an open order the venue cannot rest again) is left as it was.
        """
        saved = state.load()
        for key, acct in self.accounts.items():
            if key in saved:
                acct.restore(saved[key])
        now_ns = self.primary.sim.now_ns()
        for key, acct in self.accounts.items():
            if key not in saved:
                state.create_account(
                    key,
                    next_ids=acct.engine.next_ids(),
                    update_ms=acct.last_update_ms,
                    balances=acct.balance_amounts(),
                )
            acct.journal = AccountJournal(state, key, self._fail)
            acct.settle_restored(now_ns)
        unknown = sorted(set(saved) - set(self.accounts))
        if unknown:
            log.warning(
                "venue state %s holds accounts this config does not serve (kept, unused): %s",
                state.path,
                ", ".join(unknown),
            )

    def _fail(self, exc: VenueStateError) -> None:
        """A change could not be saved: the venue stops (see :meth:`run`)."""
        if self._failure is None:
            self._failure = exc
            self._failed.set()

    def close(self) -> None:
        """Release the state file (idempotent)."""
        if self.state is not None:
            self.state.close()
            self.state = None

    # ------------------------------------------------------------------ time
    def now_ms(self) -> int:
        return self.primary.sim.now_ns() // _NS_PER_MS

    def now_s(self) -> float:
        return self.now_ms() / 1000.0

    # ------------------------------------------------------------------ lifecycle
    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Market data and the venue clock until cancelled; then the state file is released.

        Stops with the :class:`~mm_trio.apps.paper.state.VenueStateWriteError` if a change
        could not be saved: a venue that cannot keep its state must not keep trading.
        """
        symbols = self.config.market_symbols
        if symbols is None:
            symbols = self.replay_symbols if self.config.replay else tuple(self.engine_specs)
        # restored orders rest again: their symbols' market must run for them to fill
        resting = {o.symbol for a in self.accounts.values() for o in a.engine.open_orders()}
        symbols = (*symbols, *sorted(resting - set(symbols)))
        try:
            await self.primary.sim.subscribe(list(symbols))
            start_at = getattr(self.primary.sim.feed, "start_at", None)
            if start_at is not None:  # a scaled replay starts with the clock, not before it
                start_at(self.primary.sim.now_ns())
            async with trio.open_nursery() as nursery:
                await nursery.start(self.primary.sim.run)
                for speed, interval in _DEPTH_INTERVALS.items():
                    nursery.start_soon(self._depth_loop, speed, interval)
                nursery.start_soon(self._stop_on_failure)
                self._started.set()
                task_status.started()
        finally:
            self.close()

    async def _stop_on_failure(self) -> None:
        await self._failed.wait()
        assert self._failure is not None
        raise self._failure

    async def _depth_loop(self, speed: str, interval: float) -> None:
        while True:
            await trio.sleep(interval)
            self.hub.flush_depth(speed, self.primary.sim.now_ns())

    def on_market(self, ev: Event) -> None:
        """Every market event of the feed: the other accounts (engine and ledger together),
        then books and streams."""
        for acct in self.others:
            fills = acct.engine.on_event(ev)
            if fills:
                acct.on_events(fills)
        self.hub.on_market(ev)

    async def ensure_market(self, symbol: str) -> None:
        """Start market data for a listed symbol (idempotent)."""
        if symbol not in self.primary.sim.subscribed and symbol in self.engine_specs:
            await self.primary.sim.subscribe([symbol])

    def stats(self) -> dict[str, Any]:
        """What the venue published and sent (``GET /_admin/stats``): market events through
        the hub by kind, the replay's progress, and each market-stream connection's counters
        (see :class:`~mm_trio.apps.paper.streams.StreamConnection`)."""
        feed = self.primary.sim.feed
        replay: dict[str, Any] | None = None
        if self.config.replay:
            replay = {
                "speed": self.config.replay_speed,
                "repeat": self.config.replay_repeat,
                "passes": getattr(feed, "passes", 1),
                "records": getattr(feed, "records", 0),
                "events": getattr(feed, "events", 0),
                "exhausted": bool(getattr(feed, "exhausted", False)),
                "max_lag_ms": getattr(feed, "max_lag_ns", 0) / _NS_PER_MS,
            }
        return {
            "market_events": dict(self.hub.published),
            "replay": replay,
            "connections": [c.stats() for c in self.stream_connections],
        }

    def drop_websockets(self) -> int:
        scopes = list(self.ws_scopes)
        for scope in scopes:
            scope.cancel()
        self.faults.ws_drops += 1
        return len(scopes)

    # ------------------------------------------------------------------ symbols
    def symbol(self, params: Mapping[str, str], *, required: bool = True) -> str | None:
        """Unified symbol of the ``symbol`` parameter (see
        :func:`~mm_trio.apps.paper.params.param_symbol`)."""
        return param_symbol(params, self.natives, required=required)

    def symbols_param(self, params: Mapping[str, str]) -> list[str] | None:
        return param_symbols(params, self.natives)

    # ------------------------------------------------------------------ operations
    def exchange_info(self, params: Mapping[str, str]) -> dict[str, Any]:
        return replies.exchange_info(self, params)

    async def depth(self, params: Mapping[str, str]) -> dict[str, Any]:
        return await replies.depth(self, params)

    def book_ticker(self, symbol: str) -> dict[str, Any]:
        return replies.book_ticker(self, symbol)

    def price_ticker(self, symbol: str) -> dict[str, Any]:
        return replies.price_ticker(self, symbol)

    def account_info(self, acct: Account, params: Mapping[str, str]) -> dict[str, Any]:
        return trading.account_info(self, acct, params)

    def my_trades(self, acct: Account, params: Mapping[str, str]) -> list[dict[str, Any]]:
        return trading.my_trades(self, acct, params)

    def open_orders(self, acct: Account, params: Mapping[str, str]) -> list[dict[str, Any]]:
        return trading.open_orders(self, acct, params)

    def query_order(self, acct: Account, params: Mapping[str, str]) -> dict[str, Any]:
        return trading.query_order(self, acct, params)

    async def cancel_order(self, acct: Account, params: Mapping[str, str]) -> dict[str, Any]:
        return await trading.cancel_order(self, acct, params)

    async def cancel_open_orders(
        self, acct: Account, params: Mapping[str, str]
    ) -> list[dict[str, Any]]:
        return await trading.cancel_open_orders(self, acct, params)

    def validate_order(self, params: Mapping[str, str]) -> NewOrder:
        """Parameter checks of a new order, in Binance's order (before any rate counting)."""
        symbol = self.symbol(params)
        assert symbol is not None
        return validate_order(params, symbol, self.engine_specs[symbol])

    async def place_order(self, acct: Account, order: NewOrder) -> OrderRecord:
        return await trading.place_order(self, acct, order)
