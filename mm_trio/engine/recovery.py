"""Recovery on start (SPEC §9): before the first new order, make the store and the venue
agree, and hand each symbol what it must take over.

For every symbol to trade, in this order:

1. **Resolve** every journalled intent whose outcome the store does not know (no terminal
   event): it is open on the venue, or the venue knows its end (query by client id), or the
   venue does not know it. "Not known" is trusted only once the request could no longer be
   executed (:attr:`~mm_trio.exchange.base.Exchange.request_lifetime_ns` after it was
   journalled: Binance refuses a signed request older than its ``recvWindow``); the
   intent is then ended as "never reached the venue".
2. **Explain** every open order of ours (our client-id prefix) on the venue: it is adopted
   only if its intent is journalled, open, and the venue's order is that intent (same side,
   price, quantity; not older than the journal entry). Anything else is an **orphan** and is
   cancelled.
3. **Complete the ledger**: for every order recovery learnt about, the venue's trades of the
   order (by order id) that the ledger lacks are added (idempotent by trade id). If the
   ledger still falls short of the venue's cumulative quantity, the disagreement is reported.
4. **Rebuild the grid**: the held lot of each level is the ledger's (base fees taken off);
   the anchor is the registry's (the levels the lots were bought on). Resting orders the slot
   model cannot take (:mod:`~mm_trio.core.grid.restore`) are cancelled, their final fills
   applied, and the plan made again.
5. **Check** that the account holds the base the ledger says we hold.

Disagreements (fills the venue cannot produce, more base in the ledger than on the venue, a
changed grid geometry under held lots) stop recovery with :class:`RecoveryError` naming
each, unless the operator overrides; a venue that cannot be reached stops it always.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TypeVar

import trio

from mm_trio.core.grid.levels import LevelGrid
from mm_trio.core.grid.restore import RestingOrder, plan_adoption
from mm_trio.core.grid.sizing import Sizing
from mm_trio.core.orders import from_open_order
from mm_trio.core.position import Fill as PositionFill
from mm_trio.core.position import PositionManager
from mm_trio.domain.config import (
    GEOMETRY_KEYS,
    ConfigError,
    GridConfig,
    grid_from_dict,
    with_geometry,
)
from mm_trio.domain.ids import parse_client_id
from mm_trio.domain.model import (
    CLOCK_TOLERANCE_NS,
    TERMINAL_STATUSES,
    ZERO,
    Balance,
    OpenOrder,
    SymbolSpec,
    order_mismatch,
)
from mm_trio.engine.persistence import (
    KILL_LATCH,
    LOSS_LIMIT_LATCH,
    ledger_fill,
    report_payload,
)
from mm_trio.exchange.base import Exchange, ExchangeError, UnknownOrder
from mm_trio.store import Fill, Intent, StateStore, SymbolRecord

log = logging.getLogger("mm_trio.engine.recovery")

ATTEMPTS = 3
"""Tries of each venue request before recovery gives up (the venue is unreachable)."""
RETRY_DELAY_S = 1.0
PLAN_ROUNDS = 3
"""Cancelling unfit orders may bring fills that change the plan: at most this many plans."""
NS = 1_000_000_000

T = TypeVar("T")


class RecoveryError(Exception):
    """Recovery cannot complete: the message says exactly why; nothing was traded."""


@dataclass(frozen=True)
class Takeover:
    """What a restarted symbol takes over: the ledger's fills (its position and lots), the
    orders it adopts, the anchor its levels use, the last generation used and its start."""

    fills: tuple[PositionFill, ...] = ()
    position: PositionManager | None = None  # instead of ``fills`` (an in-process restart)
    held: Mapping[int, Decimal] = field(default_factory=dict)
    orders: tuple[RestingOrder, ...] = ()
    anchor: Decimal | None = None
    generation: int = 0
    start_position: Decimal = ZERO
    geometry: GridConfig | None = None  # the stored grid geometry, kept by an override


@dataclass
class SymbolRecovery:
    """What recovery did for one symbol (the recovery summary)."""

    symbol: str
    adopted: int = 0
    orphans_cancelled: int = 0
    unfit_cancelled: int = 0
    resolved: int = 0
    never_reached: int = 0
    missed_fills: int = 0
    position: Decimal = ZERO
    levels_held: int = 0
    stopped: str = ""  # a loss-limit latch that keeps the symbol stopped

    def as_dict(self) -> dict[str, object]:
        return {
            "adopted": self.adopted,
            "orphans_cancelled": self.orphans_cancelled,
            "unfit_cancelled": self.unfit_cancelled,
            "intents_resolved": self.resolved,
            "never_reached_venue": self.never_reached,
            "missed_fills_applied": self.missed_fills,
            "position": _plain(self.position),
            "levels_held": self.levels_held,
            "stopped": self.stopped,
        }


@dataclass
class Recovery:
    symbols: dict[str, SymbolRecovery] = field(default_factory=dict)
    takeovers: dict[str, Takeover] = field(default_factory=dict)
    kill_reason: str | None = None
    problems: list[str] = field(default_factory=list)
    overridden: bool = False
    unmanaged_cancelled: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def as_dict(self) -> dict[str, object]:
        return {
            "symbols": {s: r.as_dict() for s, r in sorted(self.symbols.items())},
            "killed": self.kill_reason,
            "problems": list(self.problems),
            "overridden": self.overridden,
            "unmanaged_orders_cancelled": dict(sorted(self.unmanaged_cancelled.items())),
            "seconds": round(self.seconds, 3),
        }

    def lines(self) -> list[str]:
        """The recovery summary, one line per symbol."""
        out = []
        for s, r in sorted(self.symbols.items()):
            out.append(
                f"{s}: adopted {r.adopted}, orphans cancelled {r.orphans_cancelled}"
                f" (+{r.unfit_cancelled} unfit), intents resolved {r.resolved}"
                f" ({r.never_reached} never reached the venue), missed fills applied"
                f" {r.missed_fills}, inventory {_plain(r.position)} on {r.levels_held} levels"
                + (f", STOPPED ({r.stopped})" if r.stopped else "")
            )
        for s, n in sorted(self.unmanaged_cancelled.items()):
            out.append(f"{s}: not traded this run: {n} open orders of ours cancelled")
        if self.kill_reason is not None:
            out.append(f"kill switch is latched ({self.kill_reason}): trading stays stopped")
        return out


def _plain(value: Decimal) -> str:
    """``0E-8`` -> ``0``, ``0.00417000`` -> ``0.00417``: a quantity as a trader writes it."""
    return f"{value.normalize():f}" if value else "0"


def _trade_id(f: Fill) -> int:
    try:
        return int(f.trade_id)
    except ValueError:
        raise RecoveryError(
            f"{f.symbol}: the ledger holds a fill with trade id {f.trade_id!r}, not a number"
        ) from None


def position_fill(f: Fill) -> PositionFill:
    parsed = parse_client_id(f.client_id)
    return PositionFill(
        trade_id=_trade_id(f),
        symbol=f.symbol,
        side=f.side,
        price=f.price,
        qty=f.qty,
        fee=f.fee,
        fee_asset=f.fee_asset,
        level=None if parsed is None else parsed.level,
        ts=f.ts_ns,
    )


def replay_ledger(
    symbol: str, spec: SymbolSpec, fills: Iterable[PositionFill], start: Decimal
) -> PositionManager:
    """The position the ledger's fills give (lots per level, base fees taken off)."""
    pm = PositionManager(symbol, spec.base, spec.quote, start_position=start)
    for f in fills:
        pm.on_fill(f)
    return pm


def registry_grid(rec: SymbolRecord | None) -> tuple[GridConfig | None, Decimal]:
    """The stored grid of a registry entry (anchor included) and its start position."""
    if rec is None:
        return None, ZERO
    try:
        data = json.loads(rec.config_json)
        grid = grid_from_dict(dict(data["grid"]), f"state store: symbol {rec.symbol!r}")
        return grid, Decimal(data.get("start_position", "0"))
    except (ValueError, KeyError, TypeError, ConfigError) as exc:
        raise RecoveryError(
            f"{rec.symbol}: the store's registry entry is unreadable: {exc}"
        ) from None


class Recoverer:
    """Performs recovery against one venue and one store (see the module docstring)."""

    def __init__(self, exchange: Exchange, store: StateStore, *, override: bool) -> None:
        self.exchange = exchange
        self.store = store
        self.override = override
        self.result = Recovery(overridden=override)

    async def _venue(self, what: str, call: Callable[[], Awaitable[T]]) -> T:
        """One venue request, retried; :class:`RecoveryError` once it keeps failing."""
        for attempt in range(1, ATTEMPTS + 1):
            try:
                return await call()
            except UnknownOrder:
                raise
            except (ValueError, TypeError, AttributeError, KeyError) as exc:
                # msgspec.ValidationError is a ValueError: an answer of a shape we cannot read
                raise RecoveryError(f"unexpected venue answer to {what}: {exc}") from None
            except ExchangeError as exc:
                if attempt == ATTEMPTS:
                    raise RecoveryError(
                        f"the venue cannot be reached: {what} failed {ATTEMPTS} times (last: {exc})"
                    ) from None
                log.warning("recovery: %s failed (%s); trying again", what, exc)
                await trio.sleep(RETRY_DELAY_S * attempt)
        raise AssertionError("unreachable")

    async def _query(self, symbol: str, client_id: str) -> OpenOrder | None:
        try:
            return await self._venue(
                f"query of order {client_id}", lambda: self.exchange.query(symbol, client_id)
            )
        except UnknownOrder:
            return None

    async def _cancel(self, order: OpenOrder) -> OpenOrder | None:
        """Cancel ``order``; its final state (``None``: the venue no longer knows it)."""
        try:
            return await self._venue(
                f"cancel of order {order.client_id}",
                lambda: self.exchange.cancel(order.symbol, order.client_id),
            )
        except UnknownOrder:
            return await self._query(order.symbol, order.client_id)

    # ------------------------------------------------------------------ the whole account
    async def run(
        self,
        grids: Mapping[str, GridConfig],
        specs: Mapping[str, SymbolSpec],
        balances: Mapping[str, Balance],
        *,
        account_wide: bool = True,
    ) -> Recovery:
        """Recover ``grids``' symbols. ``account_wide``: also cancel our orders of symbols
        the registry has but this run does not trade, and check the balances (a start);
        not for one symbol restarted while the others trade."""
        start = trio.current_time()
        store = self.store
        latches = store.latches()
        kill = latches.get(KILL_LATCH)
        self.result.kill_reason = None if kill is None else kill.reason
        prefixes = {g.client_id_prefix for g in grids.values()}
        registry = {r.symbol: r for r in store.symbols()}
        venue_open = await self._venue("listing open orders", self.exchange.open_orders)
        for symbol in sorted(grids):
            latch = latches.get(LOSS_LIMIT_LATCH + symbol)
            await self._symbol(
                symbol,
                grids[symbol],
                specs[symbol],
                registry.get(symbol),
                [o for o in venue_open if o.symbol == symbol and _ours(o.client_id, prefixes)],
                "" if latch is None else latch.reason,
            )
        for symbol, rec in sorted(registry.items()):
            if not account_wide or symbol in grids or rec.state == "removed":
                continue
            stored, _ = registry_grid(rec)
            theirs = {stored.client_id_prefix} if stored is not None else prefixes
            left = [o for o in venue_open if o.symbol == symbol and _ours(o.client_id, theirs)]
            for order in left:
                await self._cancel(order)
            if left:
                self.result.unmanaged_cancelled[symbol] = len(left)
        if account_wide:
            self._check_balances(specs, balances)
        self.result.seconds = trio.current_time() - start
        if self.result.problems and not self.override:
            raise RecoveryError(
                "the store and the venue disagree:\n  "
                + "\n  ".join(self.result.problems)
                + "\n(nothing was traded; fix the cause, or pass --override-recovery to "
                "trade anyway: the store's inventory is kept and each disagreement logged)"
            )
        return self.result

    def _check_balances(
        self, specs: Mapping[str, SymbolSpec], balances: Mapping[str, Balance]
    ) -> None:
        held: dict[str, Decimal] = {}
        for symbol, r in self.result.symbols.items():
            base = specs[symbol].base
            held[base] = held.get(base, ZERO) + r.position
        for base, qty in sorted(held.items()):
            bal = balances.get(base)
            total = ZERO if bal is None else bal.free + bal.locked
            if qty > total:
                self.result.problems.append(
                    f"the ledger says we hold {qty} {base}, but the account holds only "
                    f"{total} {base} (sold or withdrawn outside mm-trio?)"
                )

    # ------------------------------------------------------------------ one symbol
    async def _symbol(
        self,
        symbol: str,
        grid: GridConfig,
        spec: SymbolSpec,
        rec: SymbolRecord | None,
        ours_open: list[OpenOrder],
        stopped: str,
    ) -> None:
        sr = self.result.symbols[symbol] = SymbolRecovery(symbol, stopped=stopped)
        store = self.store
        open_by_cid = {o.client_id: o for o in ours_open}
        known: dict[str, OpenOrder] = {}  # journalled orders the venue confirmed
        unresolved: list[Intent] = []
        for intent in store.open_intents(symbol):
            found = open_by_cid.get(intent.client_id)
            if found is None:
                found = await self._query(symbol, intent.client_id)
            if found is None:
                unresolved.append(intent)
            else:
                self._confirm(intent, found, known, sr)
        if unresolved:
            lifetime = self.exchange.request_lifetime_ns
            wait_ns = max(i.ts_ns for i in unresolved) + lifetime
            # bounded: an intent stamped in the future (a clock step) must not stall us
            delay = min((wait_ns - self.exchange.now_ns()) / NS, lifetime / NS)
            if delay > 0:
                log.info(
                    "%s: %d journalled orders unknown to the venue; waiting %.1fs until "
                    "their requests can no longer be executed",
                    symbol,
                    len(unresolved),
                    delay,
                )
                await trio.sleep(delay)
            for intent in unresolved:
                found = await self._query(symbol, intent.client_id)
                if found is None:
                    store.journal_event(
                        intent.client_id,
                        "ended",
                        '{"reason":"never reached the venue"}',
                        self.exchange.now_ns(),
                    )
                    sr.never_reached += 1
                else:
                    if found.status not in TERMINAL_STATUSES:
                        open_by_cid[found.client_id] = found
                    self._confirm(intent, found, known, sr)
        for found in list(known.values()):
            await self._complete_fills(found, sr)
        resting: dict[str, OpenOrder] = {}
        for cid, order in sorted(open_by_cid.items()):
            confirmed = known.get(cid)
            if confirmed is not None and confirmed.status not in TERMINAL_STATUSES:
                resting[cid] = confirmed
                continue
            log.warning("%s: order %s on the venue is not explained by the journal", symbol, cid)
            await self._cancel(order)
            sr.orphans_cancelled += 1
        await self._takeover(symbol, grid, spec, rec, resting, sr)

    def _confirm(
        self, intent: Intent, found: OpenOrder, known: dict[str, OpenOrder], sr: SymbolRecovery
    ) -> None:
        why = order_mismatch(
            found,
            side=intent.side,
            price=intent.price,
            qty=intent.qty,
            not_before_ns=intent.ts_ns - CLOCK_TOLERANCE_NS,
        )
        if why is not None:
            log.error(
                "%s: the venue's order %s is not the one journalled (%s): never adopted",
                intent.symbol,
                intent.client_id,
                why,
            )
            payload = json.dumps({"reason": f"another order under this id: {why}"})
            self.store.journal_event(intent.client_id, "ended", payload, self.exchange.now_ns())
            return
        known[intent.client_id] = found
        if found.status in TERMINAL_STATUSES:
            sr.resolved += 1

    async def _complete_fills(self, found: OpenOrder, sr: SymbolRecovery) -> None:
        """Add the venue's trades of ``found`` the ledger lacks; journal its state."""
        cid = found.client_id
        have = _traded(self.store.order_fills(cid))
        if found.cum_qty > have:
            updates = await self._venue(
                f"fills of order {cid}", lambda: self.exchange.order_fills(found)
            )
            for update in updates:
                f = ledger_fill(update)
                if f is not None and self.store.put_fill(f):
                    sr.missed_fills += 1
            have = _traded(self.store.order_fills(cid))
        pending = found.cum_qty > have
        if pending:
            self.result.problems.append(
                f"{found.symbol}: order {cid} filled {found.cum_qty} on the venue, but its "
                f"trades the venue lists add up to {have}"
            )
        elif have > found.cum_qty:
            self.result.problems.append(
                f"{found.symbol}: the ledger has {have} filled on order {cid}, the venue only "
                f"{found.cum_qty}"
            )
        payload = report_payload(from_open_order(found), fills_pending=pending)
        self.store.journal_event(cid, "report", payload, self.exchange.now_ns())

    async def _takeover(
        self,
        symbol: str,
        grid: GridConfig,
        spec: SymbolSpec,
        rec: SymbolRecord | None,
        resting: dict[str, OpenOrder],
        sr: SymbolRecovery,
    ) -> None:
        stored, start = registry_grid(rec)
        anchor = None if stored is None else stored.anchor
        fills, pm, held = self._ledger(symbol, spec, start)
        geometry = grid
        adopted: list[RestingOrder] = []
        if not held and not resting:
            anchor = None  # flat: the grid anchors afresh at the market
        elif anchor is None:
            self.result.problems.append(
                f"{symbol}: the store has inventory or orders but no grid anchor for them"
            )
            await self._drop(list(resting), resting, sr)
            fills, pm, _ = self._ledger(symbol, spec, start)
            held = {}
        else:
            geometry = self._geometry(symbol, grid, stored)
            levels = LevelGrid(
                spacing=geometry.spacing, step=geometry.step, anchor=anchor, tick=spec.tick_size
            )
            for round_ in range(1, PLAN_ROUNDS + 1):
                plan, misfits = plan_adoption(
                    [self._resting(o) for o in resting.values()],
                    held,
                    grid=levels,
                    sizing=Sizing(spec, geometry),
                    neutral=geometry.mode == "neutral",
                )
                adopted = [o for o, _ in plan]
                if not misfits:
                    break
                await self._drop([o.client_id for o in misfits], resting, sr)
                if round_ == PLAN_ROUNDS:
                    # the fills keep moving the plan: take over nothing, cancel what is left,
                    # and start from the ledger as it is once every order has ended
                    await self._drop(list(resting), resting, sr)
                    adopted = []
                fills, pm, held = self._ledger(symbol, spec, start)
        sr.adopted = len(adopted)
        sr.position = pm.position
        sr.levels_held = len(held)
        self.result.takeovers[symbol] = Takeover(
            fills=fills,
            held=held,
            orders=tuple(adopted),
            anchor=anchor,
            generation=max(0, self.store.last_generation(symbol)),
            start_position=start,
            geometry=None if geometry is grid else geometry,
        )

    def _ledger(
        self, symbol: str, spec: SymbolSpec, start: Decimal
    ) -> tuple[tuple[PositionFill, ...], PositionManager, dict[int, Decimal]]:
        """The ledger's fills of ``symbol``, the position they give, and its held lots."""
        fills = tuple(position_fill(f) for f in self.store.fills(symbol))
        pm = replay_ledger(symbol, spec, fills, start)
        return fills, pm, {k: v for k, v in pm.level_inventory().items() if v != 0}

    async def _drop(
        self, client_ids: list[str], resting: dict[str, OpenOrder], sr: SymbolRecovery
    ) -> None:
        """Cancel resting orders the grid will not take over; their last fills go to the
        ledger."""
        for cid in client_ids:
            log.info("%s: order %s does not fit the grid; cancelling it", sr.symbol, cid)
            final = await self._cancel(resting.pop(cid))
            if final is not None:
                await self._complete_fills(final, sr)
            sr.unfit_cancelled += 1

    def _resting(self, order: OpenOrder) -> RestingOrder:
        parsed = parse_client_id(order.client_id)
        assert parsed is not None  # only our ids get here
        intent = self.store.intent(order.client_id)
        ledger = self.store.order_fills(order.client_id)
        return RestingOrder(
            client_id=order.client_id,
            side=order.side,
            level=parsed.level,
            price=order.price,
            qty=order.qty,
            filled=order.cum_qty,
            status=order.status,
            trade_ids=frozenset(_trade_id(f) for f in ledger),
            traded=_traded(ledger),
            not_before_ns=0 if intent is None else intent.ts_ns - CLOCK_TOLERANCE_NS,
        )

    def _geometry(self, symbol: str, grid: GridConfig, stored: GridConfig | None) -> GridConfig:
        """The grid whose levels the held lots were bought on."""
        if stored is None:
            return grid
        changed = [k for k in GEOMETRY_KEYS if getattr(stored, k) != getattr(grid, k)]
        if not changed:
            return grid
        was = ", ".join(f"{k} = {getattr(stored, k)}" for k in changed)
        now = ", ".join(f"{k} = {getattr(grid, k)}" for k in changed)
        self.result.problems.append(
            f"{symbol}: holds inventory or orders on a grid with {was}, but the config now "
            f"has {now} (the override keeps the stored grid for it)"
        )
        return with_geometry(grid, stored)


def _ours(client_id: str, prefixes: set[str]) -> bool:
    parsed = parse_client_id(client_id)
    return parsed is not None and parsed.prefix in prefixes


def _traded(fills: Iterable[Fill]) -> Decimal:
    return sum((f.qty for f in fills), ZERO)
