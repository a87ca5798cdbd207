"""SymbolManager: the trio shell around one symbol's pure core (grid, position, risk).

One manager runs in its own child nursery. Its single event-loop task is the only code that
touches the pure objects, so they never see concurrent mutation. Everything else is thin:

* the demux calls :meth:`SymbolManager.deliver` (never blocks: quotes are conflated, order
  events go into a bounded channel whose overflow halts the symbol and resyncs it over REST);
* every intent is gated by the aggregate
  :class:`~mm_trio.core.risk.governor.RiskGovernor`, then sent by a short-lived task per
  request (the shared limiter orders them, cancels first);
* venue outcomes (rejects, unknown outcomes resolved by query) come back into the same channel
  as ``OrderUpdate`` events, so the strategy learns everything the same way.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from decimal import Decimal
from typing import Any, Protocol

import attrs
import trio

from mm_trio.core.grid.strategy import GridStrategy
from mm_trio.core.lifecycle import Lifecycle, LifecycleEvent, SymbolState
from mm_trio.core.position import PositionManager
from mm_trio.core.risk.governor import GovernorChange, RiskGovernor
from mm_trio.core.risk.monitor import BreakerChange, RiskMonitor
from mm_trio.domain.config import GridConfig, RiskConfig, RunConfig, with_geometry
from mm_trio.domain.intents import CancelOrder, Intent, PlaceOrder
from mm_trio.domain.model import (
    ZERO,
    OrderUpdate,
    Quote,
    StreamStatus,
    SymbolSpec,
    Trade,
)
from mm_trio.engine.exposure import ExposureReporter
from mm_trio.engine.gate import IntentGate
from mm_trio.engine.inbox import Inbox, Marker
from mm_trio.engine.orderflow import OrderFlow, Recheck
from mm_trio.engine.persistence import Persistence
from mm_trio.engine.recovery import Takeover
from mm_trio.engine.snapshot import SymbolSnapshot, symbol_snapshot
from mm_trio.engine.stats import LatencyHistogram, reject_class
from mm_trio.exchange.base import Exchange
from mm_trio.exchange.limiter import Priority, priority

__all__ = ["SymbolHost", "SymbolManager", "SymbolSnapshot", "SymbolState"]

log = logging.getLogger("mm_trio.engine.manager")


def takeover_grid(grid: GridConfig, takeover: Takeover) -> GridConfig:
    """The grid a taken-over symbol trades: its config, on the earlier run's levels."""
    if takeover.geometry is not None:
        grid = with_geometry(grid, takeover.geometry)
    if takeover.anchor is not None:
        grid = attrs.evolve(grid, anchor=takeover.anchor)
    return grid


def _describe(exc: BaseException) -> str:
    """``Type: message`` of the first leaf of a (possibly nested) exception group."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return f"{type(exc).__name__}: {exc}"


_EVENT_KINDS: dict[type, str] = {
    OrderUpdate: "order",
    Trade: "trade",
    StreamStatus: "stream",
}
_TERMINAL = frozenset({"FILLED", "CANCELED", "REJECTED", "EXPIRED"})
# a symbol in these states places nothing: stopping (removal, shutdown) or stopped (kill
# switch, loss limit) until resumed
_STOPPED_STATES = frozenset({SymbolState.STOPPING, SymbolState.STOPPED})

FOREIGN_MEMORY = 1_000
"""How many client ids of orders not ours are remembered (each is logged once)."""


class SymbolHost(Protocol):
    """What a symbol needs of the orchestrator that runs it (the manager does not know the
    orchestrator itself): the venue, the limiter, the aggregate governor, the journal, and
    where to report governor changes and its own failure."""

    @property
    def exchange(self) -> Exchange: ...

    @property
    def limiter(self) -> Recheck: ...

    @property
    def governor(self) -> RiskGovernor: ...

    @property
    def persistence(self) -> Persistence | None: ...

    def journal(self, kind: str, payload: Any) -> None: ...

    def on_symbol_changed(self, manager: SymbolManager) -> None: ...

    def on_governor_changes(self, changes: list[GovernorChange]) -> None: ...

    def on_symbol_failed(self, manager: SymbolManager) -> None: ...

    def publish(self, kind: str, symbol: str, data: dict[str, Any]) -> None:
        """Tell the operator's event stream (fills, state, breakers); never blocks."""
        ...


class SymbolManager:
    """Runs one symbol: GridStrategy + PositionManager + RiskMonitor behind one event loop."""

    def __init__(
        self,
        host: SymbolHost,
        spec: SymbolSpec,
        grid: GridConfig,
        risk: RiskConfig,
        run: RunConfig,
        *,
        start_position: Decimal = ZERO,
        clock: Callable[[], float] = trio.current_time,
        generation_start: int = 0,
        started_ns: int = 0,
        takeover: Takeover | None = None,
    ) -> None:
        self.symbol = spec.symbol
        self.spec = spec
        self.grid_config = grid
        self._host = host
        self._exchange: Exchange = host.exchange
        self._persist = host.persistence
        self._run_config = run
        self._clock = clock
        if takeover is not None:
            start_position = takeover.start_position
            grid = takeover_grid(grid, takeover)
        self.start_position = start_position
        self.strategy = GridStrategy(
            spec, grid, start_position=start_position, generation_start=generation_start
        )
        self.position = (
            takeover.position
            if takeover is not None and takeover.position is not None
            else PositionManager(spec.symbol, spec.base, spec.quote, start_position=start_position)
        )
        self.loss_latched = False
        self.unfit: list[str] = []  # taken-over orders the grid cannot use: cancelled at start
        self.risk = RiskMonitor(risk)
        self.lifecycle = Lifecycle()
        # told each quote the symbol handles and the intents it produced (benchmarks, metrics)
        self.quote_observer: Callable[[Quote, list[Intent]], None] | None = None
        self.mid: Decimal | None = None
        self.prefix = grid.client_id_prefix
        self.inbox = Inbox(run.order_channel_size, self._overflow, clock)
        self.exposure = ExposureReporter(
            self.symbol, self.strategy, self.position, host.governor, host.on_governor_changes
        )
        self._now = 0.0
        self._tick_error: Exception | None = None  # met by the ticker, raised in our task
        self._stopping = False
        self._resyncing = False
        # the next event must run the gates (and the flat and state checks), even one that
        # changes nothing: after an overflow, and when its resync ends
        self._regate = False
        self.flat = trio.Event()  # set when stopping and no live orders remain
        self.done = trio.Event()  # set when the manager's scope has exited
        self.cancel_scope = trio.CancelScope()
        self._nursery: trio.Nursery | None = None
        # metrics
        self.events = 0
        self.rejects = 0
        self.bad_quotes = 0
        self.foreign_reports = 0  # reports of orders that are not ours (ignored)
        self._foreign_seen: set[str] = set()
        self.event_counts: Counter[str] = Counter()  # by kind: quote, order, trade, stream, marker
        self.reject_classes: Counter[str] = Counter()  # filter, balance, duplicate, ...
        self.order_outcomes: Counter[tuple[str, str]] = Counter()  # (side, terminal status)
        self.latency = LatencyHistogram()  # quote queued -> its intents dispatched
        self.resyncs = 0  # order-state resyncs from the venue (reconnects, overflows)
        self.paused = False  # an operator's pause: no opening orders, take-profits stay
        self._shown_state: tuple[SymbolState, str] = (self.lifecycle.state, "")
        self.orders = OrderFlow(
            self.symbol,
            host.exchange,
            self.strategy,
            host.limiter,
            started_ns=started_ns,
            feedback=self._feedback,
            journal=host.journal,
            start=self._start,
            resync=lambda: self.poke(Marker.RESYNC),
        )
        self.gate = IntentGate(
            self.symbol,
            self.strategy,
            self.risk,
            host.governor,
            self.lifecycle,
            self.exposure,
            host.journal,
            self._send_intent,
        )
        self.taken_over = takeover is not None and bool(takeover.orders)
        if takeover is not None:
            self._take_over(takeover)
        self.anchor_saved = self.strategy.anchor  # the registry has it (see _on_quote)

    def _take_over(self, takeover: Takeover) -> None:
        """Start from an earlier run's fills, lots and resting orders (see recovery)."""
        for fill in takeover.fills:
            self.position.on_fill(fill)
        self.unfit = [o.client_id for o in self.strategy.restore(takeover.held, takeover.orders)]
        for order in takeover.orders:
            if order.client_id not in self.unfit:
                self.orders.taken_over[order.client_id] = order.not_before_ns
                if self._persist is not None:  # what the ledger holds (not the venue's cum)
                    traded = order.filled if order.traded is None else order.traded
                    self._persist.seed(order.client_id, traded)

    @property
    def state(self) -> SymbolState:
        return self.lifecycle.state

    @property
    def market_mid(self) -> Decimal | None:
        """The mid of the latest quote, absorbed or handled (status, PnL, equity)."""
        if self.inbox.absorbed_at is not None and self.inbox.latest_quote is not None:
            return self.inbox.latest_quote.mid
        return self.mid

    @property
    def reason(self) -> str:
        return self.lifecycle.reason

    @property
    def withdrawn(self) -> int:
        """Placements withdrawn while queued for the limiter: never sent."""
        return self.orders.withdrawn

    # ------------------------------------------------------------------ demux side (sync)
    def deliver(self, event: Any) -> None:
        """Hand one routed event to this symbol. Never blocks (SPEC §8)."""
        self.inbox.deliver(event)

    def poke(self, marker: Marker) -> None:
        self.inbox.poke(marker)

    @property
    def quotes_skipped(self) -> int:
        return self.inbox.quotes_skipped

    @property
    def trades_dropped(self) -> int:
        return self.inbox.trades_dropped

    @property
    def overflows(self) -> int:
        return self.inbox.overflows

    def _overflow(self) -> None:
        """An order event could not be queued: halt this symbol and resync from REST, loudly."""
        if self.state is SymbolState.FAILED:
            return  # the task reads its channel no more: a resync would find it full again
        # no marker fits to bring the halt (or a lost STOP/GATES marker's work) to the
        # strategy: the next event does, even one that changes nothing
        self._regate = True
        if not self._resyncing:
            self._resyncing = True  # halts opening (see IntentGate.apply_gates) until resynced
            self.resyncs += 1
            log.error(
                "%s: order channel overflow; halting and resyncing from the venue", self.symbol
            )
            self._start(self._resync_after_overflow)

    # ------------------------------------------------------------------ lifecycle
    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The symbol's child nursery. Exceptions in its logic stay here (isolation)."""
        try:
            with self.cancel_scope:
                try:
                    async with trio.open_nursery() as nursery:
                        self._nursery = nursery
                        self.lifecycle.apply(LifecycleEvent.STARTED)
                        for cid in self.unfit:
                            intent = CancelOrder(self.symbol, cid)
                            self._host.journal("cancel", intent)
                            nursery.start_soon(self.orders.cancel, intent)
                        if self.taken_over:  # reports sent while we were recovering
                            self.poke(Marker.RESYNC)
                        self._note_state()
                        task_status.started()
                        await self._event_loop()
                except Exception as exc:
                    self._nursery = None  # closed: nothing may be started in it any more
                    await self._fail(exc)
        finally:
            self._nursery = None
            self.done.set()
        if self.state is SymbolState.FAILED and not self._stopping:
            self._host.on_symbol_failed(self)

    async def _fail(self, exc: BaseException) -> None:
        self.lifecycle.apply(LifecycleEvent.FAIL, _describe(exc))
        self._note_state()
        log.exception("%s FAILED: %s; cancelling its orders", self.symbol, self.reason)
        with (
            trio.CancelScope(shield=True),
            trio.move_on_after(self._run_config.shutdown_timeout),
            priority(Priority.SHUTDOWN),
        ):  # never queued behind ordinary requests
            try:
                await self._exchange.cancel_all(self.symbol, self.prefix)
            except Exception as cancel_exc:  # the venue may be down too; say so, keep going
                log.error("%s: cancel-all after failure failed: %s", self.symbol, cancel_exc)
        self.flat.set()

    def _start(self, fn: Any, *args: Any) -> bool:
        """Start a task in the symbol's nursery if it is still open."""
        nursery = self._nursery
        if nursery is None:
            return False
        try:
            nursery.start_soon(fn, *args)
        except RuntimeError:  # the nursery is closing (the symbol is failing or stopping)
            return False
        return True

    def tick(self) -> None:
        """Time passed (called once a second by the orchestrator's single ticker).

        The time-driven risk checks only read the position, so they run right here, without
        waking the symbol's task; it is woken only when a breaker trips or clears.
        """
        if self.state is SymbolState.FAILED or self._tick_error is not None:
            return
        try:
            self._hand_over()
            now = self._clock()
            changes = self.risk.tick(now)
            mid = self.market_mid
            if mid is not None:
                changes += self.risk.on_pnl(self.position.total_pnl(mid), now)
            if changes:
                self._log_breakers(changes)
                self.poke(Marker.GATES)
        except Exception as exc:  # this symbol's logic failed: it fails alone, in its task
            self._tick_error = exc
            self.poke(Marker.FAIL)

    def _hand_over(self) -> None:
        """The ticker's part of the fast path: what the inbox kept is due."""
        if self.inbox.trades:
            self._take_trades()
        absorbed = self.inbox.absorbed_at
        if absorbed is None:
            return
        if self.inbox.band is not None:
            # nothing reached the symbol since it set the band, so the quote decides
            # nothing (the band's invariant): handled right here, no task woken
            if self.risk.quiet_at(absorbed):
                self._note_quiet_quote()
            else:  # a breaker may change (staleness): the whole way
                self._handle(Marker.QUOTE)
            self._set_bands()
        else:  # it is no stale market; the symbol's task takes it
            self.risk.quote_seen(absorbed)
            self.poke(Marker.QUOTE)

    def begin_stop(self) -> None:
        """Stop opening and cancel our open orders (the acks arrive later: see ``flat``)."""
        if self._stopping:
            return
        self._stopping = True
        self.lifecycle.apply(LifecycleEvent.STOP)
        self._note_state()
        self.poke(Marker.STOP)

    def kill(self, reason: str) -> None:
        """The kill switch: cancel everything and stay stopped until resumed."""
        self.lifecycle.apply(LifecycleEvent.KILL, "kill switch: " + reason)
        self._note_state()
        self.poke(Marker.STOP)

    def removed(self) -> None:
        """Its scope has exited (see the orchestrator's retire)."""
        self.lifecycle.apply(LifecycleEvent.REMOVED)
        self._note_state()

    def resume(self) -> None:
        """An operator resumed after a kill: trade again (unless being removed)."""
        self.poke(Marker.RESUME)

    def refresh_gates(self) -> None:
        """The governor's state changed: recompute this symbol's gates."""
        self.poke(Marker.GATES)

    def pause(self) -> None:
        """An operator's pause: cancel opening orders and place none; take-profits stay
        (the same gate as a breaker's ``halt_opening``). State HALTED, reason says paused."""
        if not self.paused:
            self.paused = True
            self.poke(Marker.GATES)

    def unpause(self) -> None:
        """Lift an operator's pause (breakers and the governor still gate as before)."""
        if self.paused:
            self.paused = False
            self.poke(Marker.GATES)

    async def stop(self, timeout: float) -> bool:  # noqa: ASYNC109 - a bound, not a deadline
        """Stop opening, cancel our open orders and wait for the acks, then sweep whatever
        the venue still lists under our prefix. True if it ended flat."""
        self.begin_stop()
        with trio.move_on_after(timeout):
            await self.flat.wait()
        ok = self.flat.is_set()
        return await self.sweep(timeout) and ok

    async def sweep(self, timeout: float) -> bool:  # noqa: ASYNC109 - a bound, not a deadline
        """Belt and braces: cancel every open order of ours the venue still lists (bounded).
        Its requests go before every queued ordinary request and cancel in the limiter."""
        with (
            trio.CancelScope(shield=True),
            trio.move_on_after(timeout) as scope,
            priority(Priority.SHUTDOWN),
        ):
            try:
                left = await self._exchange.cancel_all(self.symbol, self.prefix)
                if left:
                    log.warning("%s: cancelled %d leftover orders at stop", self.symbol, len(left))
            except Exception as exc:
                log.error("%s: final cancel-all failed: %s", self.symbol, exc)
                return False
        if scope.cancelled_caught:
            log.error("%s: final cancel-all timed out after %.1fs", self.symbol, timeout)
            return False
        return True

    def close(self) -> None:
        """Exit the symbol's scope (after :meth:`stop`)."""
        self.cancel_scope.cancel()

    # ------------------------------------------------------------------ event loop
    async def _event_loop(self) -> None:
        """Handle events one at a time; whatever is already queued is handled without
        yielding to the scheduler in between (the pure core never waits)."""
        channel = self.inbox.receive
        receive, receive_nowait, handle = (channel.receive, channel.receive_nowait, self._handle)
        while True:
            try:
                item = await receive()
            except trio.EndOfChannel:
                return
            handle(item)
            while True:
                try:
                    item = receive_nowait()
                except (trio.WouldBlock, trio.EndOfChannel):
                    break
                handle(item)
            self._set_bands()

    def _set_bands(self) -> None:
        """Tell the inbox what it may keep without waking us, now that we have looked."""
        self.inbox.band = self.quiet_band()
        self.inbox.trade_band = self.trade_band()

    def _simply_running(self, absorb: bool) -> bool:
        """Nothing but the market can change our decisions (no resync, no other state)."""
        return absorb and self.lifecycle.state is SymbolState.RUNNING and not self._resyncing

    def trade_band(self) -> tuple[Decimal, Decimal, float] | None:
        """The trades this symbol may keep for later (see :mod:`.inbox`): the risk
        monitor's trade band, while the symbol simply runs."""
        if not self._simply_running(self._run_config.absorb_quiet_trades):
            return None
        return self.risk.trade_band()

    def _take_trades(self) -> None:
        """Hand the kept trades to the risk monitor, each at its arrival time."""
        counts = self.event_counts
        for trade, at in self.inbox.take_trades():
            self.events += 1
            counts["trade"] += 1
            changes = self.risk.on_trade(trade, at)
            if changes:  # the trade band says this cannot happen; act on it all the same
                self._log_breakers(changes)
                self.poke(Marker.GATES)

    def quiet_band(self) -> tuple[Decimal, Decimal] | None:
        """The mids a quote may have without waking this symbol (see :mod:`.inbox`): the
        strategy's and the risk monitor's quiet bands, while the symbol simply runs."""
        if not self._simply_running(self._run_config.absorb_quiet_quotes):
            return None
        grid = self.strategy.quiet_band()
        if grid is None:
            return None
        risk = self.risk.quiet_band()
        if risk is None:
            return None
        lo, hi = max(grid[0], risk[0]), min(grid[1], risk[1])
        return (lo, hi) if lo < hi else None

    def _handle(self, item: Any) -> None:
        if self._tick_error is not None:  # whatever wakes us (its FAIL marker may be lost)
            raise self._tick_error
        if self.inbox.trades:
            self._take_trades()  # they arrived before anything still queued
        if self.inbox.absorbed_at is not None and item is not Marker.QUOTE:
            self._handle(Marker.QUOTE)  # the absorbed quote comes first, as it arrived
        self.events += 1
        self._now = self._clock()
        kind = type(item)
        name = "quote" if item is Marker.QUOTE else _EVENT_KINDS.get(kind, "marker")
        self.event_counts[name] += 1
        if item is Marker.QUOTE:
            reaction = self._on_quote()
        elif kind is OrderUpdate:
            reaction = self._on_report(item)
        elif kind is Trade:
            reaction = [], self.risk.on_trade(item, self._now)
        elif kind is StreamStatus:
            if item.status in ("connected", "resynced"):
                self.resyncs += 1
                self._start(self.orders.resync)
            reaction = [], []
        else:
            reaction = self._on_marker(item), []
        if reaction is None:
            if not self._regate:
                return  # nothing the symbol trades on changed
            reaction = [], []
        self._act(item, *reaction)

    def _act(self, item: Any, intents: list[Intent], changes: list[BreakerChange]) -> None:
        """What one handled event changed: breakers, gates, then the intents sent."""
        if changes:
            self._log_breakers(changes)
        self._regate = False
        if self.lifecycle.state in _STOPPED_STATES and not self.strategy.stopped:
            # a stop or kill whose STOP marker did not fit in the channel (an overflow)
            intents += self.strategy.stop()
        intents += self.gate.apply_gates(self._resyncing, self.paused)
        if self.risk.stopped and not self.loss_latched:
            self.loss_latched = True  # latched in the store: a restart stays stopped
            self._host.on_symbol_changed(self)
        self.gate.dispatch(intents, self.mid, self._now)
        if intents and item is Marker.QUOTE:
            self.latency.observe(time.perf_counter() - self.inbox.quote_since)
        if self._stopping and not self.strategy.live_orders():
            self.flat.set()
        if (self.lifecycle.state, self.lifecycle.reason) != self._shown_state:
            self._note_state()

    def _on_quote(self) -> tuple[list[Intent], list[BreakerChange]] | None:
        quote = self.inbox.take_quote()
        if quote is None:
            return None
        if quote.bid <= 0 or quote.ask <= 0 or quote.bid >= quote.ask:
            self.bad_quotes += 1  # an empty or crossed book side is no price to trade on
            return None
        self.mid = quote.mid
        at = self.inbox.taken_at  # an absorbed quote counts from when it arrived
        changes = self.risk.on_quote(quote, self._now if at is None else at)
        intents = self.strategy.on_quote(quote)
        if self.strategy.anchor != self.anchor_saved:
            # the levels' anchor is durable before any order on them is sent
            self.anchor_saved = self.strategy.anchor
            self._host.on_symbol_changed(self)
        if self.quote_observer is not None:
            self.quote_observer(quote, intents)
        return intents, changes

    def _on_report(self, report: OrderUpdate) -> tuple[list[Intent], list[BreakerChange]] | None:
        if not self.strategy.knows(report.client_id):
            # not an order we placed (a hand-placed order, another program's, or an
            # earlier run's): its fills are not our position, its rejects not ours
            self._foreign(report)
            return None
        if self._persist is not None:
            self._persist.report(report)  # persist, then act
        self.exposure.orders_changed()
        was_live = self.strategy.live_order(report.client_id) is not None
        unchanged = self.strategy.unchanged_reports
        filled = self.position.on_order_update(report)
        if filled:
            self._publish_fill(report)
        intents = self.strategy.on_order_update(report)
        self.orders.on_report(report)
        if (
            self.strategy.unchanged_reports != unchanged
            and not filled
            and report.status != "REJECTED"
        ):
            # the same outcome again (both the stream and the request's answer report it):
            # nothing the symbol trades on changed, so no gate or governor work either
            return None
        if was_live and report.status in _TERMINAL:
            self.order_outcomes[(report.side, report.status)] += 1
        changes: list[BreakerChange] = []
        if report.status == "REJECTED":
            self.rejects += 1
            self.reject_classes[reject_class(report.reason)] += 1
            changes = self.risk.on_reject(report.reason or "rejected", self._now)
        return intents, changes

    def _publish_fill(self, report: OrderUpdate) -> None:
        fill = self.position.fill_from_update(report)
        self._host.publish(
            "fill",
            self.symbol,
            {
                "trade_id": fill.trade_id,
                "client_id": report.client_id,
                "side": fill.side,
                "price": str(fill.price),
                "qty": str(fill.qty),
                "fee": str(fill.fee),
                "fee_asset": fill.fee_asset,
                "level": fill.level,
                "maker": report.maker,
                "ts": fill.ts,
                "position": str(self.position.position),
                "realized_pnl": str(self.position.realized_pnl),
            },
        )

    def _note_state(self) -> None:
        """Publish the state (and its reason) when it changed since last shown."""
        shown = (self.lifecycle.state, self.lifecycle.reason)
        if shown == self._shown_state:
            return
        before = self._shown_state[0]
        self._shown_state = shown
        self._host.publish(
            "state",
            self.symbol,
            {"state": str(shown[0]), "reason": shown[1], "from": str(before)},
        )

    def _on_marker(self, marker: Marker) -> list[Intent]:
        if marker is Marker.FAIL and self._tick_error is not None:
            raise self._tick_error
        if marker is Marker.STOP:
            return self.strategy.stop()
        if marker is Marker.RESUME:
            if self._stopping or self._host.governor.killed:
                return []  # being removed / still killed: stopping is one-way
            intents = self.strategy.resume()
            self.lifecycle.apply(LifecycleEvent.RESUME)
            return intents
        if marker is Marker.RESYNC:
            self.resyncs += 1
            self._start(self.orders.resync)
        return []  # GATES: the gates are recomputed below

    def _foreign(self, report: OrderUpdate) -> None:
        self.foreign_reports += 1
        if report.client_id not in self._foreign_seen:
            if len(self._foreign_seen) >= FOREIGN_MEMORY:
                self._foreign_seen.clear()
            self._foreign_seen.add(report.client_id)
            log.info(
                "%s: ignoring reports of order %r: not one of ours", self.symbol, report.client_id
            )

    def _log_breakers(self, changes: list[BreakerChange]) -> None:
        for change in changes:
            verb = "TRIPPED" if change.tripped else "cleared"
            log.warning("%s breaker %s %s: %s", self.symbol, change.breaker, verb, change.reason)
            self._host.publish(
                "breaker",
                self.symbol,
                {"breaker": change.breaker, "tripped": change.tripped, "reason": change.reason},
            )

    # ------------------------------------------------------------------ venue requests
    def _send_intent(self, intent: PlaceOrder | CancelOrder) -> bool:
        """Start the request task of an admitted intent (``False`` once closing)."""
        nursery = self._nursery
        if nursery is None:
            return False
        if isinstance(intent, PlaceOrder):
            nursery.start_soon(self.orders.place, intent)
        else:
            nursery.start_soon(self.orders.cancel, intent)
        return True

    async def _feedback(self, update: OrderUpdate) -> None:
        """A venue outcome learnt by the shell (reject, query result) goes to the strategy."""
        self._host.journal("outcome", update)
        await self.inbox.put(update)

    async def _resync_after_overflow(self) -> None:
        try:
            await self.orders.resync()
        finally:
            self._resyncing = False
            # lift the halt: with the channel still full, the next event it holds recomputes
            # the gates (``_regate``), so this marker may be left out
            self._regate = True
            self.inbox.poke(Marker.GATES, must_arrive=False)

    # ------------------------------------------------------------------ views
    def snapshot(self) -> SymbolSnapshot:
        return symbol_snapshot(self)

    # ------------------------------------------------------------------ ticker fast path
    def _note_quiet_quote(self) -> None:
        """What ``_handle(Marker.QUOTE)`` does with a kept quote inside the band while no
        breaker can change (:meth:`RiskMonitor.quiet_at`), without the parts that cannot
        act: the strategy notes it (no reconcile: it would emit nothing), the gates stay as
        they are, and the only outcome left is the exposure report (the mark to market)."""
        inbox = self.inbox
        self.events += 1
        self._now = now = self._clock()
        self.event_counts["quote"] += 1
        quote = inbox.take_quote()
        at = inbox.taken_at
        assert quote is not None and at is not None  # kept quotes are uncrossed, timed
        self.mid = quote.mid
        changes = self.risk.on_quote(quote, at)
        self.strategy.note_quote(quote)
        if self.quote_observer is not None:
            self.quote_observer(quote, [])
        if changes:  # quiet_at says this cannot happen; act on it all the same
            self._log_breakers(changes)
            self.poke(Marker.GATES)
        self.exposure.report(self.mid, now)
