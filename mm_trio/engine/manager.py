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

import enum
import logging
from collections.abc import Callable
from decimal import Decimal
from typing import Any, Protocol

import msgspec
import trio

from mm_trio.core.grid.strategy import GridStrategy
from mm_trio.core.lifecycle import Lifecycle, LifecycleEvent, SymbolState
from mm_trio.core.orders import request_outcome
from mm_trio.core.position import PositionManager
from mm_trio.core.risk.governor import GovernorChange, RiskGovernor
from mm_trio.core.risk.monitor import BreakerChange, RiskMonitor
from mm_trio.domain.config import GridConfig, RiskConfig, RunConfig
from mm_trio.domain.intents import Intent, PlaceOrder
from mm_trio.domain.model import (
    ZERO,
    OrderUpdate,
    Quote,
    StreamStatus,
    SymbolSpec,
    Trade,
)
from mm_trio.engine.orderflow import OrderFlow, Recheck
from mm_trio.exchange.base import Exchange
from mm_trio.exchange.limiter import Priority, priority

__all__ = ["SymbolHost", "SymbolManager", "SymbolSnapshot", "SymbolState"]

log = logging.getLogger("mm_trio.engine.manager")


class SymbolSnapshot(msgspec.Struct, kw_only=True):
    """What the status line, the control plane and the summary show for one symbol."""

    symbol: str
    state: str
    reason: str
    mid: Decimal | None
    position: Decimal
    open_orders: int
    fills: int
    buys: int
    sells: int
    realized_pnl: Decimal
    unrealized_pnl: Decimal
    fees: dict[str, Decimal]
    fees_quote: Decimal
    total_pnl: Decimal
    max_inventory: Decimal
    breakers: list[str]
    breaker_trips: int
    events: int
    quotes_skipped: int
    trades_dropped: int
    rejects: int
    withdrawn: int = 0  # placements cancelled while queued for the limiter: never sent
    foreign_reports: int = 0  # execution reports of orders not ours: ignored


class _Marker(enum.Enum):
    QUOTE = "quote"  # the conflated latest quote is waiting in ``_latest_quote``
    GATES = "gates"  # governor state changed: recompute gates
    STOP = "stop"  # cancel everything and place nothing more
    RESUME = "resume"
    RESYNC = "resync"  # query the venue for every live order and apply what it says


def _describe(exc: BaseException) -> str:
    """``Type: message`` of the first leaf of a (possibly nested) exception group."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return f"{type(exc).__name__}: {exc}"


MARK_TO_MARKET_MOVE = Decimal("0.0002")
"""A holding symbol re-reports its exposure once the mid moved this fraction (2 bp) ..."""
MARK_TO_MARKET_INTERVAL = 0.5
"""... or this many seconds passed since its last report (the governor's view of held
inventory is at most this stale between reports)."""

FOREIGN_MEMORY = 1_000
"""How many client ids of orders not ours are remembered (each is logged once)."""


class SymbolHost(Protocol):
    """What a symbol needs of the orchestrator that runs it (the manager does not know the
    orchestrator itself): the venue, the limiter, the aggregate governor, the journal, and
    where to report governor changes and its own failure."""

    exchange: Exchange
    limiter: Recheck
    governor: RiskGovernor

    def journal(self, kind: str, payload: Any) -> None: ...

    def on_governor_changes(self, changes: list[GovernorChange]) -> None: ...

    def on_symbol_failed(self, manager: SymbolManager) -> None: ...


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
    ) -> None:
        self.symbol = spec.symbol
        self.spec = spec
        self.grid_config = grid
        self._host = host
        self._exchange: Exchange = host.exchange
        self._run_config = run
        self._clock = clock
        self.strategy = GridStrategy(spec, grid, start_position=start_position,
                                     generation_start=generation_start)
        # venue time when this symbol started: no order of ours was updated before it
        self.started_ns = started_ns
        self.position = PositionManager(spec.symbol, spec.base, spec.quote,
                                        start_position=start_position)
        self.risk = RiskMonitor(risk)
        self.lifecycle = Lifecycle()
        self.mid: Decimal | None = None
        self.prefix = grid.client_id_prefix
        self._send, self._recv = trio.open_memory_channel[Any](run.order_channel_size)
        self._latest_quote: Quote | None = None
        self._quote_pending = False
        self._gates: tuple[bool, bool] = (False, False)
        self._exposure_key: tuple[Decimal, Decimal, Decimal, int] | None = None
        self._open_buys: Decimal | None = None  # cached strategy.open_buy_notional
        self._cancelling_buys = ZERO  # cached strategy.cancelling_buy_notional
        self._orders_changed = True  # our order set may have changed since it was cached
        self._reported_mid: Decimal | None = None
        self._reported_at = 0.0
        self._now = 0.0
        self._stopping = False
        self._resyncing = False
        self.flat = trio.Event()  # set when stopping and no live orders remain
        self.done = trio.Event()  # set when the manager's scope has exited
        self.cancel_scope = trio.CancelScope()
        self._nursery: trio.Nursery | None = None
        # metrics
        self.events = 0
        self.quotes_skipped = 0
        self.trades_dropped = 0
        self.rejects = 0
        self.overflows = 0
        self.bad_quotes = 0
        self.foreign_reports = 0  # reports of orders that are not ours (ignored)
        self._foreign_seen: set[str] = set()
        self.orders = OrderFlow(
            self.symbol, host.exchange, self.strategy, host.limiter, started_ns=started_ns,
            feedback=self._feedback, journal=host.journal, start=self._start,
            resync=lambda: self.poke(_Marker.RESYNC))

    @property
    def state(self) -> SymbolState:
        return self.lifecycle.state

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
        if type(event) is Quote:
            self._latest_quote = event
            if self._quote_pending:
                self.quotes_skipped += 1
                return
            try:
                self._send.send_nowait(_Marker.QUOTE)
                self._quote_pending = True
            except trio.WouldBlock:
                self.quotes_skipped += 1
            except (trio.ClosedResourceError, trio.BrokenResourceError):
                pass
            return
        try:
            self._send.send_nowait(event)
        except trio.WouldBlock:
            if type(event) is Trade:
                self.trades_dropped += 1
            else:
                self._overflow()
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            pass

    def poke(self, marker: _Marker) -> None:
        try:
            self._send.send_nowait(marker)
        except trio.WouldBlock:
            if marker in (_Marker.STOP, _Marker.RESYNC, _Marker.GATES):
                self._overflow()
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            pass

    def _overflow(self) -> None:
        """An order event could not be queued: halt this symbol and resync from REST, loudly."""
        self.overflows += 1
        if not self._resyncing:
            self._resyncing = True  # halts opening (see _apply_gates) until resynced
            log.error("%s: order channel overflow; halting and resyncing from the venue",
                      self.symbol)
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
        log.exception("%s FAILED: %s; cancelling its orders", self.symbol, self.reason)
        with (trio.CancelScope(shield=True),
              trio.move_on_after(self._run_config.shutdown_timeout),
              priority(Priority.SHUTDOWN)):  # never queued behind ordinary requests
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
        if self.state is SymbolState.FAILED:
            return
        now = self._clock()
        changes = self.risk.tick(now)
        if self.mid is not None:
            changes += self.risk.on_pnl(self.position.total_pnl(self.mid), now)
        if changes:
            self._log_breakers(changes)
            self.poke(_Marker.GATES)

    def begin_stop(self) -> None:
        """Stop opening and cancel our open orders (the acks arrive later: see ``flat``)."""
        if self._stopping:
            return
        self._stopping = True
        self.lifecycle.apply(LifecycleEvent.STOP)
        self.poke(_Marker.STOP)

    def kill(self, reason: str) -> None:
        """The kill switch: cancel everything and stay stopped until resumed."""
        self.lifecycle.apply(LifecycleEvent.KILL, "kill switch: " + reason)
        self.poke(_Marker.STOP)

    def removed(self) -> None:
        """Its scope has exited (see the orchestrator's retire)."""
        self.lifecycle.apply(LifecycleEvent.REMOVED)

    def resume(self) -> None:
        """An operator resumed after a kill: trade again (unless being removed)."""
        self.poke(_Marker.RESUME)

    def refresh_gates(self) -> None:
        """The governor's state changed: recompute this symbol's gates."""
        self.poke(_Marker.GATES)

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
        with (trio.CancelScope(shield=True), trio.move_on_after(timeout) as scope,
              priority(Priority.SHUTDOWN)):
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
        receive, receive_nowait, handle = (self._recv.receive, self._recv.receive_nowait,
                                           self._handle)
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

    def _handle(self, item: Any) -> None:
        strategy, position, risk = self.strategy, self.position, self.risk
        self.events += 1
        self._now = now = self._clock()
        changes: list[BreakerChange] = []
        intents: list[Intent]
        if item is _Marker.QUOTE:
            self._quote_pending = False
            quote = self._latest_quote
            if quote is None:
                return
            if quote.bid <= 0 or quote.ask <= 0 or quote.bid >= quote.ask:
                self.bad_quotes += 1  # an empty or crossed book side is no price to trade on
                return
            self.mid = quote.mid
            changes = risk.on_quote(quote, now)
            intents = strategy.on_quote(quote)
        elif type(item) is OrderUpdate:
            if not strategy.knows(item.client_id):
                # not an order we placed (a hand-placed order, another program's, or an
                # earlier run's): its fills are not our position, its rejects not ours
                self._foreign(item)
                return
            self._orders_changed = True
            position.on_order_update(item)
            intents = strategy.on_order_update(item)
            self.orders.on_report(item)
            if item.status == "REJECTED":
                self.rejects += 1
                changes = risk.on_reject(item.reason or "rejected", now)
        elif type(item) is Trade:
            changes = risk.on_trade(item, now)
            intents = []
        elif item is _Marker.STOP:
            intents = strategy.stop()
        elif item is _Marker.RESUME:
            if self._stopping or self._host.governor.killed:
                intents = []  # being removed / still killed: stopping is one-way
            else:
                intents = strategy.resume()
                self.lifecycle.apply(LifecycleEvent.RESUME)
        elif item is _Marker.GATES:
            intents = []
        elif item is _Marker.RESYNC:
            intents = []
            self._start(self.orders.resync)
        elif type(item) is StreamStatus:
            intents = []
            if item.status in ("connected", "resynced"):
                self._start(self.orders.resync)
        else:
            intents = []
        if changes:
            self._log_breakers(changes)
        intents += self._apply_gates()
        self._dispatch(intents)
        if self._stopping and not strategy.live_orders():
            self.flat.set()

    def _foreign(self, report: OrderUpdate) -> None:
        self.foreign_reports += 1
        if report.client_id not in self._foreign_seen:
            if len(self._foreign_seen) >= FOREIGN_MEMORY:
                self._foreign_seen.clear()
            self._foreign_seen.add(report.client_id)
            log.info("%s: ignoring reports of order %r: not one of ours", self.symbol,
                     report.client_id)

    def _apply_gates(self) -> list[Intent]:
        """Push the current risk and governor state into the strategy when it changed."""
        if self.risk.stopped and not self.strategy.stopped:
            self.lifecycle.apply(LifecycleEvent.LOSS_LIMIT,
                                 "loss limit: " + self.risk.tripped()["loss_limit"].reason)
            return self.strategy.stop()
        halt = self.risk.halt_opening or self._resyncing
        governor = self._host.governor
        reduce_only = governor.reduce_only(self.symbol)
        gates = (halt, reduce_only)
        if gates == self._gates:
            return self._trim_buys(governor) if reduce_only else []
        self._gates = gates
        if halt or reduce_only:
            why = [b.reason for b in self.risk.tripped().values()]
            if reduce_only:
                why.append("governor: reduce-only")
            self.lifecycle.apply(LifecycleEvent.HALT, "; ".join(why))
        else:
            self.lifecycle.apply(LifecycleEvent.CLEAR)
        intents = self.strategy.set_gates(halt_opening=halt, reduce_only=reduce_only)
        return (intents + self._trim_buys(governor)) if reduce_only else intents

    def _trim_buys(self, governor: RiskGovernor) -> list[Intent]:
        """Reduce-only keeps the resting buys that fit the cap; cancel only the excess."""
        keep = governor.buy_allowance(self.symbol)
        return [] if keep is None else self.strategy.trim_buys(keep)

    def _log_breakers(self, changes: list[BreakerChange]) -> None:
        for change in changes:
            verb = "TRIPPED" if change.tripped else "cleared"
            log.warning("%s breaker %s %s: %s", self.symbol, change.breaker, verb, change.reason)

    def _dispatch(self, intents: list[Intent]) -> None:
        """Gate every intent through the governor, then send the admitted ones."""
        if intents:
            self._orders_changed = True
        if not intents:
            self._report_exposure()
            return
        governor = self._host.governor
        # the governor sees the exposure without this batch's new buys, then admits them one by one
        batch_buys = sum(
            (i.request.price * i.request.qty for i in intents
             if type(i) is PlaceOrder and i.request.side == "BUY"),
            ZERO,
        )
        self._report_exposure(exclude_buy_notional=batch_buys)
        refused: list[OrderUpdate] = []
        nursery = self._nursery
        for intent in intents:
            reason = governor.check(self.symbol, intent)
            if reason is not None:
                r = intent.request  # only places are ever refused
                refused.append(request_outcome(r, "REJECTED", "governor: " + reason))
                self._host.journal("refused", refused[-1])
                continue
            if type(intent) is PlaceOrder and intent.request.side == "BUY":
                self._exposure_key = None  # the next report replaces its reservation
            if nursery is not None:
                if type(intent) is PlaceOrder:
                    self._host.journal("place", intent.request)
                    nursery.start_soon(self.orders.place, intent)
                else:
                    self._host.journal("cancel", intent)
                    nursery.start_soon(self.orders.cancel, intent)
        if refused:
            # every refusal reaches the strategy before the next report: until then its open
            # buy notional still holds the refused buys, which the governor never admitted
            # (reported, they looked like exposure above the cap and tripped reduce-only)
            self._orders_changed = True
            follow: list[Intent] = []
            for update in refused:
                follow += self.strategy.on_order_update(update)
            self._dispatch(follow)

    def _report_exposure(self, exclude_buy_notional: Decimal = ZERO) -> None:
        """Tell the governor this symbol's exposure and PnL (skipped when nothing moved)."""
        mid = self.mid
        position = self.strategy.position
        if self._orders_changed or self._open_buys is None:
            self._open_buys = self.strategy.open_buy_notional
            self._cancelling_buys = self.strategy.cancelling_buy_notional
            self._orders_changed = False
        open_buys = self._open_buys - exclude_buy_notional
        cancelling = self._cancelling_buys
        key = (position, open_buys, cancelling, self.position.fills)
        if key == self._exposure_key:
            if not position:
                return  # flat and unchanged: exposure and PnL cannot have moved
            # holding: mark to market when the mid moved enough or enough time passed
            last_mid = self._reported_mid
            if (mid is not None and last_mid is not None
                    and abs(mid - last_mid) < last_mid * MARK_TO_MARKET_MOVE
                    and self._now - self._reported_at < MARK_TO_MARKET_INTERVAL):
                return
        self._exposure_key = key
        self._reported_mid = mid
        self._reported_at = self._now
        changes = self._host.governor.update(
            self.symbol,
            position=position,
            mid=mid,
            open_buy_notional=open_buys,
            cancelling_buy_notional=cancelling,
            pnl=self.position.total_pnl(mid) if mid is not None else ZERO,
            now=self._now,
        )
        if changes:
            self._host.on_governor_changes(changes)

    # ------------------------------------------------------------------ venue requests
    async def _feedback(self, update: OrderUpdate) -> None:
        """A venue outcome learnt by the shell (reject, query result) goes to the strategy."""
        self._host.journal("outcome", update)
        await self._send.send(update)

    async def _resync_after_overflow(self) -> None:
        try:
            await self.orders.resync()
        finally:
            self._resyncing = False
            self.poke(_Marker.GATES)  # lift the halt

    # ------------------------------------------------------------------ views
    def snapshot(self) -> SymbolSnapshot:
        mid = self.mid
        pos = self.position
        fees_quote = pos.fees_in_quote(mid) if mid is not None else pos.fees.get(self.spec.quote,
                                                                                   ZERO)
        return SymbolSnapshot(
            symbol=self.symbol,
            state=str(self.state),
            reason=self.reason,
            mid=mid,
            position=self.strategy.position,
            open_orders=len(self.strategy.live_orders()),
            fills=pos.fills,
            buys=pos.buys,
            sells=pos.sells,
            realized_pnl=pos.realized_pnl,
            unrealized_pnl=pos.unrealized_pnl(mid) if mid is not None else ZERO,
            fees=dict(pos.fees),
            fees_quote=fees_quote,
            total_pnl=pos.total_pnl(mid) if mid is not None else pos.realized_pnl - fees_quote,
            max_inventory=pos.max_inventory,
            breakers=sorted(self.risk.tripped()),
            breaker_trips=self.risk.trips,
            events=self.events,
            quotes_skipped=self.quotes_skipped,
            trades_dropped=self.trades_dropped,
            rejects=self.rejects,
            withdrawn=self.withdrawn,
            foreign_reports=self.foreign_reports,
        )

