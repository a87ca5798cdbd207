"""Orchestrator: owns the nursery, the shared venue connection, the limiter, the demux task,
the registry of SymbolManagers (one child nursery each) and the aggregate RiskGovernor.

Use it as an async context manager::

    async with open_orchestrator(exchange, config, limiter=limiter) as orch:
        await orch.add_symbol("BTC/USDT")
        ...
    # leaving the block cancels our open orders on every symbol, then closes everything
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any

import msgspec
import trio

from mm_trio.core.risk.governor import ExposureSnapshot, GovernorChange, RiskGovernor
from mm_trio.domain.config import (
    Config,
    ConfigError,
    GridConfig,
    grid_with_overrides,
    validate_grid,
)
from mm_trio.domain.ids import run_generation
from mm_trio.domain.model import (
    ZERO,
    Balance,
    SymbolError,
    SymbolSpec,
    parse_symbol,
)
from mm_trio.engine.demux import Demux
from mm_trio.engine.events import ControlEvent, EventHub
from mm_trio.engine.manager import SymbolManager, SymbolSnapshot
from mm_trio.engine.persistence import KILL_LATCH, LOSS_LIMIT_LATCH, Persistence
from mm_trio.engine.recovery import Recoverer, RecoveryError, Takeover
from mm_trio.exchange.base import Exchange
from mm_trio.exchange.limiter import Limiter

log = logging.getLogger("mm_trio.engine.orchestrator")
TICK_SECONDS = 1.0
TICK_PHASE = 0.000271828  # seconds; never a whole number of milliseconds
TICK_SLICE = 10
"""Symbols ticked together (~0.5 ms of work); more are ticked in slices of this size spread
evenly over the second."""
RECENT_FILLS = 1_000
"""Fills kept for the control plane's ``/fills`` (the store's ledger keeps them all)."""


class Snapshot(msgspec.Struct, kw_only=True):
    symbols: dict[str, SymbolSnapshot]
    exposure: ExposureSnapshot
    unrouted_events: int
    killed: bool
    kill_reason: str


class Orchestrator:
    """Runs many SymbolManagers over one shared exchange connection (SPEC §2)."""

    def __init__(
        self,
        exchange: Exchange,
        config: Config,
        *,
        limiter: Limiter,
        clock: Callable[[], float] = trio.current_time,
        journal: Callable[[str, Any], None] | None = None,
        persistence: Persistence | None = None,
    ) -> None:
        self.exchange = exchange
        self.persistence = persistence
        # what recovery found per symbol, taken over when the symbol is added
        self.takeovers: dict[str, Takeover] = {}
        self.stopped_by_latch: dict[str, str] = {}  # symbol -> latched loss-limit reason
        self.paused_by_registry: set[str] = set()  # paused by an operator before a restart
        self.config = config
        self.limiter = limiter
        self.governor = RiskGovernor(config.governor)
        self.specs: dict[str, SymbolSpec] = {}
        self._clock = clock
        self._journal = journal
        self._managers: dict[str, SymbolManager] = {}
        self.demux = Demux(self._managers, journal)
        self._retired: dict[str, SymbolSnapshot] = {}
        self._nursery: trio.Nursery | None = None
        self._lock = trio.Lock()  # serialises add/remove so the registry never races
        self._failures: dict[str, int] = {}  # consecutive failures per symbol (restart back-off)
        # the last client-id generation each symbol used in this process: a symbol added
        # again starts above it even if the venue clock has not moved on (no id reuse)
        self._generations: dict[str, int] = {}
        self.tick_hooks: list[Callable[[], None]] = []  # run once a second after the ticks
        self.events = EventHub()  # fills, state changes, breakers: the control plane's stream
        self.recent_fills: deque[ControlEvent] = deque(maxlen=RECENT_FILLS)
        self.started_at = clock()
        self.closing = False  # shutdown began: no symbol may be added any more

    # ------------------------------------------------------------------ lifecycle
    async def _start(self, nursery: trio.Nursery) -> None:
        self._nursery = nursery
        # an in-process venue hands its events straight to the demux (one task hop less)
        direct = self.exchange.attach(self.demux.route)
        await nursery.start(self.exchange.run)
        self.specs = await self.exchange.load_specs()
        self.demux.balances.update(await self.exchange.balances())
        if not direct:
            nursery.start_soon(self.demux.run, self.exchange.events)
        nursery.start_soon(self._ticker)

    async def shutdown(self) -> None:
        """Stop every symbol (cancelling our open orders), bounded by ``run.shutdown_timeout``.

        Every symbol is told to stop at once (one synchronous pass, so the cancels go out in
        registry order), then they are removed one by one once flat: nothing here depends on
        the order in which trio wakes cancelled tasks, which keeps replays byte-identical.
        """
        timeout = self.config.run.shutdown_timeout
        self.closing = True
        with trio.CancelScope(shield=True):
            managers = list(self._managers.values())
            for manager in managers:
                manager.begin_stop()
            with trio.move_on_after(timeout):
                for manager in managers:
                    await manager.flat.wait()
            # every symbol's final sweep runs, whatever the others do; all bounded together
            swept: dict[str, bool] = {}

            async def sweep(m: SymbolManager) -> None:
                swept[m.symbol] = await m.sweep(timeout)

            async with trio.open_nursery() as nursery:
                for manager in managers:
                    nursery.start_soon(sweep, manager)
            with trio.move_on_after(timeout):  # one request for all, bounded
                try:
                    await self.exchange.unsubscribe([m.symbol for m in managers])
                except Exception as exc:
                    log.warning("unsubscribe at shutdown failed: %s", exc)
            for manager in managers:
                if not (manager.flat.is_set() and swept.get(manager.symbol)):
                    log.error(
                        "%s: shutdown could not confirm every cancel; open orders may "
                        "remain on the venue",
                        manager.symbol,
                    )
                # a clean stop: the registry keeps it as stopped, not removed
                await self._retire(manager, timeout, unsubscribe=False, state="stopped")

    # ------------------------------------------------------------------ public API
    @property
    def balances(self) -> dict[str, Balance]:
        """The latest balance of every asset (as the venue last reported it)."""
        return self.demux.balances

    @property
    def unrouted_events(self) -> int:
        """Events of symbols nobody runs (counted, not errors)."""
        return self.demux.unrouted_events

    def symbols(self) -> list[str]:
        return sorted(self._managers)

    def manager(self, symbol: str) -> SymbolManager:
        try:
            return self._managers[symbol]
        except KeyError:
            raise SymbolError(f"symbol {symbol!r} is not running") from None

    def check_symbol(self, symbol: str) -> SymbolSpec:
        """The venue's spec for ``symbol``; :class:`SymbolError` naming it if malformed/unlisted."""
        parse_symbol(symbol)
        spec = self.specs.get(symbol)
        if spec is None:
            raise SymbolError(f"symbol {symbol!r} is not listed by venue {self.exchange.name!r}")
        return spec

    async def add_symbols(
        self, symbols: list[str], *, configs: Mapping[str, GridConfig] | None = None
    ) -> list[SymbolManager]:
        """Start several symbols with ONE market-data subscription (a venue paces its
        subscribe messages, so this is much faster than adding them one by one). Every symbol
        is checked first: a bad one is rejected by name and nothing is started."""
        for symbol in symbols:
            self.check_symbol(symbol)
            if symbol in self._managers:
                raise SymbolError(f"symbol {symbol!r} is already running")
        if len(set(symbols)) != len(symbols):
            raise SymbolError("a symbol is given twice: " + ", ".join(symbols))
        configs = configs or {}
        managers = [await self.add_symbol(s, configs.get(s), subscribe=False) for s in symbols]
        try:
            await self.exchange.subscribe(list(symbols))
        except BaseException:
            with trio.CancelScope(shield=True):
                for symbol in symbols:
                    await self._remove(symbol, self.config.run.shutdown_timeout)
            raise
        return managers

    async def add_symbol(
        self,
        symbol: str,
        config: GridConfig | None = None,
        *,
        subscribe: bool = True,
        takeover: Takeover | None = None,
    ) -> SymbolManager:
        """Start trading ``symbol`` in its own child nursery. Rejects bad symbols by name."""
        async with self._lock:
            if self.closing:  # it would be missed by the shutdown's final sweep
                raise SymbolError(f"cannot add {symbol!r}: shutting down")
            spec = self.check_symbol(symbol)
            if symbol in self._managers:
                raise SymbolError(f"symbol {symbol!r} is already running")
            grid = config if config is not None else self.config.grid_for(symbol)
            try:
                validate_grid(grid, f"symbols.{symbol!r}")
            except ConfigError as exc:
                raise SymbolError(str(exc)) from None
            assert self._nursery is not None, "orchestrator is not running"
            if takeover is None:
                takeover = await self._takeover_for(symbol, grid)
            start_position = ZERO  # a take-over brings the earlier run's own
            if takeover is None and grid.mode == "neutral":
                start_position = unclaimed_base(spec.base, self.balances, self._managers.values())
                if start_position <= 0:
                    log.warning(
                        "%s: neutral grid starts with no %s to sell (none free, or "
                        "all of it held by the other symbols on %s)",
                        symbol,
                        spec.base,
                        spec.base,
                    )
            started_ns = self.exchange.now_ns()
            generation = self._first_generation(symbol, started_ns, takeover)
            manager = SymbolManager(
                self,
                spec,
                grid,
                self.config.risk,
                self.config.run,
                start_position=start_position,
                clock=self._clock,
                generation_start=generation,
                started_ns=started_ns,
                takeover=takeover,
            )
            latched = self.stopped_by_latch.get(symbol)
            paused = symbol in self.paused_by_registry
            self.paused_by_registry.discard(symbol)
            if latched is not None:
                manager.loss_latched = True
            if paused:  # paused when the last run (or the failed symbol) ended
                manager.pause()
            state = "stopped" if latched is not None else "paused" if paused else "running"
            self._persist_symbol(manager, state)  # before any of its orders is sent
            self._retired.pop(symbol, None)
            self.governor.add(symbol)  # its fair share is kept for it from now on
            try:
                await self._nursery.start(manager.run)
                # stopped before it can see any event: it is routed to only from now on
                if self.governor.killed:  # stays stopped until an operator resumes
                    manager.kill(self.governor.kill_reason)
                elif latched is not None:
                    manager.kill(latched)
                self._managers[symbol] = manager
                if subscribe:
                    await self.exchange.subscribe([symbol])
            except BaseException:
                self._managers.pop(symbol, None)
                self._on_changes(self.governor.remove(symbol, now=self._clock()))
                manager.close()
                raise
            self.publish("symbol", symbol, {"action": "added"})
            log.info(
                "%s added (%s grid, step %s, %d below / %d above)",
                symbol,
                grid.spacing,
                grid.step,
                grid.levels_below,
                grid.levels_above,
            )
            return manager

    async def remove_symbol(self, symbol: str) -> SymbolSnapshot:
        """Stop opening, cancel the symbol's open orders, wait for the acks, exit its scope."""
        async with self._lock:
            if symbol not in self._managers:
                parse_symbol(symbol)
                raise SymbolError(f"symbol {symbol!r} is not running")
            return await self._remove(symbol, self.config.run.shutdown_timeout)

    async def _remove(self, symbol: str, timeout: float) -> SymbolSnapshot:  # noqa: ASYNC109
        manager = self._managers[symbol]
        flat = await manager.stop(timeout)
        if not flat:
            log.warning("%s: not every cancel was acknowledged within %.1fs", symbol, timeout)
        return await self._retire(manager, timeout)

    async def _retire(
        self,
        manager: SymbolManager,
        timeout: float,  # noqa: ASYNC109
        *,
        unsubscribe: bool = True,
        state: str = "removed",
    ) -> SymbolSnapshot:
        """Unsubscribe, exit the symbol's scope and move it to the retired registry."""
        symbol = manager.symbol
        if unsubscribe:
            with trio.CancelScope(shield=True), trio.move_on_after(timeout):
                try:
                    await self.exchange.unsubscribe([symbol])
                except Exception as exc:
                    log.warning("%s: unsubscribe failed: %s", symbol, exc)
        manager.close()
        with trio.move_on_after(1.0):  # its scope is cancelled: it ends at once
            await manager.done.wait()
        manager.removed()
        if manager.loss_latched:
            state = "stopped"
        elif manager.paused and state == "stopped":
            state = "paused"  # an operator's pause outlives a clean stop too
        self._persist_symbol(manager, state)
        self._note_generation(manager)
        snap = manager.snapshot()
        self._retired[symbol] = snap
        del self._managers[symbol]
        self._on_changes(self.governor.remove(symbol, now=self._clock()))
        self.publish("symbol", symbol, {"action": "removed", "open_orders": snap.open_orders})
        log.info("%s removed (%d open orders left)", symbol, snap.open_orders)
        return snap

    def snapshot(self) -> Snapshot:
        symbols = {s: m.snapshot() for s, m in sorted(self._managers.items())}
        for s, snap in self._retired.items():
            symbols.setdefault(s, snap)
        return Snapshot(
            symbols=dict(sorted(symbols.items())),
            exposure=self.governor.exposure(),
            unrouted_events=self.demux.unrouted_events,
            killed=self.governor.killed,
            kill_reason=self.governor.kill_reason,
        )

    async def kill(self, reason: str) -> None:
        """Operator kill: cancel every order on every symbol and stop until resumed
        (latched in the governor, so symbols added meanwhile stay stopped too)."""
        log.critical("KILL: %s", reason)
        if self.persistence is not None:
            self.persistence.latch(KILL_LATCH, reason)  # a restart stays killed
        self.publish("control", "", {"action": "kill", "reason": reason})
        self._on_changes(self.governor.kill(reason))

    async def resume(self, symbol: str | None = None) -> list[str]:
        """``None``: lift the kill switch (if latched), every pause and every latched loss
        limit, trade again. A symbol: lift its pause (:class:`SymbolError` if it is not
        running; the kill switch stays as it is). Returns the symbols concerned."""
        if symbol is not None:
            manager = self._running(symbol)
            self._persist_symbol(manager, "running")  # persist, then act
            manager.unpause()
            self.publish("control", symbol, {"action": "resume"})
            return [symbol]
        if self.persistence is not None:
            self.persistence.latch(KILL_LATCH, None)
            for latched in list(self.stopped_by_latch):
                self.persistence.latch(LOSS_LIMIT_LATCH + latched, None)
            for manager in self._managers.values():
                self._persist_symbol(manager, "running")
        self.stopped_by_latch.clear()
        was_killed = self.governor.killed
        self.publish("control", "", {"action": "resume", "kill_lifted": was_killed})
        self._on_changes(self.governor.resume())
        for manager in self._managers.values():
            manager.unpause()
            manager.resume()
        return self.symbols()

    def pause(self, symbol: str | None = None) -> list[str]:
        """Stop opening on ``symbol`` (``None``: every running symbol); take-profits stay.
        :class:`SymbolError` naming it if it is not running. Returns the symbols paused."""
        managers = [self._running(symbol)] if symbol is not None else list(self._managers.values())
        for manager in managers:
            self._persist_symbol(manager, "paused")  # a restart stays paused
            manager.pause()
        self.publish("control", symbol or "", {"action": "pause"})
        return [m.symbol for m in managers]

    def grid_with_overrides(self, symbol: str, overrides: dict[str, Any]) -> GridConfig:
        """``symbol``'s grid with per-symbol ``overrides`` (any ``[grid]`` key), validated
        exactly like the config file (:class:`ConfigError` naming the key)."""
        return grid_with_overrides(self.config, symbol, overrides)

    def _running(self, symbol: str) -> SymbolManager:
        manager = self._managers.get(symbol)
        if manager is None:
            parse_symbol(symbol)  # a malformed one is named as such
            raise SymbolError(f"symbol {symbol!r} is not running")
        return manager

    # ------------------------------------------------------------------ internals
    def on_symbol_failed(self, manager: SymbolManager) -> None:
        """A symbol FAILED (its orders are already cancelled): restart it if configured."""
        run = self.config.run
        if not run.restart_failed or self._nursery is None:
            return
        n = self._failures.get(manager.symbol, 0) + 1
        self._failures[manager.symbol] = n
        delay = run.restart_backoff * 2 ** (n - 1)
        log.warning("%s: restarting in %.1fs (failure #%d)", manager.symbol, delay, n)
        self._nursery.start_soon(self._restart, manager, delay)

    async def _restart(self, failed: SymbolManager, delay: float) -> None:
        await trio.sleep(delay)
        async with self._lock:
            if self._managers.get(failed.symbol) is not failed:
                return  # removed (or replaced) meanwhile
            del self._managers[failed.symbol]
            self._note_generation(failed)
            self._on_changes(self.governor.remove(failed.symbol, now=self._clock()))
        try:
            takeover = await self._takeover_of(failed)
            # it comes back as it was: a latched loss limit or an operator's pause holds
            if failed.loss_latched:
                self.stopped_by_latch[failed.symbol] = "loss limit (latched before it failed)"
            if failed.paused:
                self.paused_by_registry.add(failed.symbol)
            await self.add_symbol(failed.symbol, failed.grid_config, takeover=takeover)
        except Exception as exc:
            log.error("%s: restart failed: %s", failed.symbol, exc)

    async def _takeover_of(self, failed: SymbolManager) -> Takeover:
        """What a restarted FAILED symbol takes over: with a store, exactly what the venue
        and the ledger say (as at start); without one, the failed symbol's own position."""
        symbol = failed.symbol
        if self.persistence is not None:
            return await self._recover_one(symbol, failed.grid_config)
        return Takeover(
            position=failed.position,
            held=failed.position.level_inventory(),
            anchor=failed.strategy.anchor,
            generation=failed.strategy.generation,
            start_position=failed.start_position,
        )

    async def _takeover_for(self, symbol: str, grid: GridConfig) -> Takeover | None:
        """What ``symbol`` takes over when added: recovery's (at start), or, for a symbol
        added again with a store, whatever the ledger says it holds (on the levels of its
        stored anchor), exactly as a restart would."""
        takeover = self.takeovers.pop(symbol, None)
        if takeover is None and self.persistence is not None:
            if self.persistence.store.fills(symbol):
                try:
                    takeover = await self._recover_one(symbol, grid)
                except RecoveryError as exc:
                    raise SymbolError(f"{symbol}: cannot take over its inventory: {exc}") from None
        return takeover

    def _first_generation(self, symbol: str, started_ns: int, takeover: Takeover | None) -> int:
        """Above every client-id generation the symbol ever used: the venue clock's, this
        process's, and the store's (no id is ever reused on an account)."""
        stored = self.persistence.store.last_generation(symbol) if self.persistence else 0
        return max(
            run_generation(started_ns),
            self._generations.get(symbol, 0),
            0 if takeover is None else takeover.generation,
            stored,
        )

    async def _recover_one(self, symbol: str, grid: GridConfig) -> Takeover:
        """Recovery of one symbol while the others trade (a restart of it, or its re-add)."""
        assert self.persistence is not None
        recoverer = Recoverer(self.exchange, self.persistence.store, override=False)
        balances = await self.exchange.balances()
        result = await recoverer.run({symbol: grid}, self.specs, balances, account_wide=False)
        return result.takeovers[symbol]

    def _note_generation(self, manager: SymbolManager) -> None:
        symbol = manager.symbol
        self._generations[symbol] = max(
            self._generations.get(symbol, 0), manager.strategy.generation
        )

    def journal(self, kind: str, payload: Any) -> None:
        """An order about to be sent (``place``) or cancelled, a refusal, an outcome: the
        store journals places and cancels before they are sent (persist, then act)."""
        if self.persistence is not None:
            if kind == "place":
                self.persistence.intent(payload)
            elif kind == "cancel":
                self.persistence.cancel(payload.client_id)
        if self._journal is not None:
            self._journal(kind, payload)

    def on_symbol_changed(self, manager: SymbolManager) -> None:
        """A symbol's anchor was set, or its loss limit latched: persist it."""
        state = "stopped" if manager.loss_latched else "paused" if manager.paused else "running"
        self._persist_symbol(manager, state)
        if manager.loss_latched and self.persistence is not None:
            self.persistence.latch(LOSS_LIMIT_LATCH + manager.symbol, manager.reason)

    def _persist_symbol(self, manager: SymbolManager, state: str) -> None:
        if self.persistence is not None:
            self.persistence.symbol(
                manager.symbol,
                manager.grid_config,
                manager.strategy.anchor,
                manager.start_position,
                state,
            )

    def publish(self, kind: str, symbol: str, data: dict[str, Any]) -> None:
        """Put an event on the operator's stream (never blocks; see :class:`EventHub`)."""
        event = self.events.publish(kind, symbol, self.exchange.now_ns(), data)
        if kind == "fill":
            self.recent_fills.append(event)

    def on_governor_changes(self, changes: list[GovernorChange]) -> None:
        self._on_changes(changes)

    def _on_changes(self, changes: list[GovernorChange]) -> None:
        """Tell exactly the symbols a governor change concerns to re-read their gates."""
        if not changes:
            return
        touched: set[str] = set()
        everyone = False
        for change in changes:
            log.warning("governor %s -> %s: %s", change.scope, change.state, change.reason)
            self.publish(
                "governor",
                change.scope if change.scope in self._managers else "",
                {"scope": change.scope, "state": change.state, "reason": change.reason},
            )
            if change.state == "killed":
                self._stop_all(change.reason)
            if change.scope in self._managers:
                touched.add(change.scope)
            else:  # "total", "kill": every symbol
                everyone = True
        for symbol, manager in self._managers.items():
            if everyone or symbol in touched:
                manager.refresh_gates()

    def _stop_all(self, reason: str) -> None:
        for manager in self._managers.values():
            manager.kill(reason)

    async def _ticker(self) -> None:
        """One ticker for every symbol: time-driven risk checks, in registry order.

        A single task (rather than one per symbol) means no two timers expire at the same
        instant, whose wake-up order trio does not define; its odd phase keeps it off the
        venue's millisecond grid too. Replays stay byte-identical.

        Every symbol is ticked once a second. Up to :data:`TICK_SLICE` symbols are ticked
        together at the second's start, with the governor's tick and the tick hooks; more
        symbols are ticked in slices of that size spread evenly over the second, so a
        thousand symbols' deferred work (the trades and quotes their inboxes kept) is no
        stall of tens of milliseconds once a second but a slice every 10 ms.
        """
        wake = trio.current_time() + TICK_SECONDS + TICK_PHASE
        while True:
            await trio.sleep_until(wake)
            managers = self._managers
            visiting = list(managers.values())
            slices = max(1, math.ceil(len(visiting) / TICK_SLICE))
            for j in range(slices):
                if j:
                    await trio.sleep_until(wake + j * TICK_SECONDS / slices)
                for manager in visiting[j * TICK_SLICE : (j + 1) * TICK_SLICE]:
                    if managers.get(manager.symbol) is manager:  # not removed meanwhile
                        manager.tick()
                if j == 0:
                    # a reduce-only hold that ended is released even if no symbol reports
                    self._on_changes(self.governor.tick(self._clock()))
                    for hook in self.tick_hooks:
                        hook()
            wake += TICK_SECONDS


def unclaimed_base(
    base: str, balances: Mapping[str, Balance], managers: Iterable[SymbolManager]
) -> Decimal:
    """Free ``base`` balance that no running symbol already holds (a neutral grid's start).

    Every running symbol on the same base asset holds its position; the part of it not
    locked by sells the venue has acknowledged (sells still queued or on the wire lock
    nothing yet) is still in the free balance, so it is taken off, and two symbols on
    one base never both count the same coins as theirs to sell.
    """
    bal = balances.get(base)
    free = bal.free if bal is not None else ZERO
    for manager in managers:
        if manager.spec.base != base:
            continue
        strategy = manager.strategy
        locked = sum(
            (
                o.qty - o.filled
                for o in strategy.live_orders()
                if o.side == "SELL" and o.status != "PENDING_NEW"
            ),
            ZERO,
        )
        free -= max(ZERO, strategy.position - locked)
    return max(ZERO, free)


@asynccontextmanager
async def open_orchestrator(
    exchange: Exchange,
    config: Config,
    *,
    limiter: Limiter,
    clock: Callable[[], float] = trio.current_time,
    journal: Callable[[str, Any], None] | None = None,
    persistence: Persistence | None = None,
) -> AsyncIterator[Orchestrator]:
    """Run an :class:`Orchestrator`; on exit cancel our orders everywhere, then close."""
    orch = Orchestrator(
        exchange, config, limiter=limiter, clock=clock, journal=journal, persistence=persistence
    )
    async with trio.open_nursery() as nursery:
        await orch._start(nursery)
        try:
            yield orch
        finally:
            if config.run.cancel_on_exit:
                await orch.shutdown()
            nursery.cancel_scope.cancel()
