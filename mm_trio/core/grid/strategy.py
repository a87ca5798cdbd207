"""The pure (sans-I/O) grid strategy of one symbol (SPEC §4).

:class:`GridStrategy` turns events (quotes, execution reports, risk gates, stop/resume)
into intents (:class:`~mm_trio.domain.intents.PlaceOrder` /
:class:`~mm_trio.domain.intents.CancelOrder`).
It reads no clock, does no I/O, draws no random numbers and uses ``Decimal`` for every price
and quantity: the same config and events always give the same intents, in the same order.

Model
-----
* **Levels** (:mod:`mm_trio.core.grid.levels`): level ``k`` has an anchored price snapped down to
  the tick grid. The anchor is ``config.anchor`` or the first mid, snapped to tick.
* **Slots** (:mod:`mm_trio.core.grid.slots`): slot ``k`` owns the signed ``lot`` traded at
  ``price(k)``. A long lot (``> 0``) is closed by a take-profit SELL at ``price(k+1)``, a
  short lot (``< 0``, neutral mode) by a buy-back BUY at ``price(k-1)``, each for the lot
  floored to the step size (the remainder is *dust*, kept in the slot and added to the next
  lot). A slot has at most one live order: an opening order (only while it is ``EMPTY``)
  or a closing order (only once its opening order is terminal). The ``level`` in a client
  id is the slot level, so a take-profit for slot ``k`` carries ``k`` (its price is level
  ``k+1``'s).
* **Modes**: long opens BUYs only (``levels_above`` is unused); neutral also opens SELLs.
* **Reference price**: ``ref = mid - inventory_skew * (held long slots - held short slots) *
  step_at(mid)``.
* **Window** (trailing): opening BUYs on the ``levels_below`` highest levels with
  ``price < x = min(ref, best ask)``, opening SELLs (neutral) on the ``levels_above`` lowest
  levels with ``price > y = max(ref, best bid)``; both only inside ``[lower, upper]`` and the
  symbol's price filter, only on levels whose closing level is a distinct price, and only
  with a placeable quantity. Opening orders are post-only; those that leave the window are
  cancelled.
* **Hysteresis** (``trail_hysteresis = h``, a fraction of one level): the window's edge level
  moves only once the price is ``h`` of a level gap past the boundary: the top BUY level
  ``t`` is kept while ``price(t) - h*gap(t-1) < x <= price(t+1) + h*gap(t+1)`` (``gap(k) =
  price(k+1) - price(k)``); outside that band it becomes the highest level below ``x`` again.
  The bottom SELL level ``b`` is kept while ``price(b-1) - h*gap(b-2) <= y < price(b) +
  h*gap(b)``. So a price wobbling around a level does not cancel and re-place an order on
  every tick. A kept edge level that is no longer strictly below ``x`` (above ``y``) keeps
  its live order but gets no new one (post-only safety). ``h = 0`` is the plain window.
* While the live opening orders of a side (cancel-requested ones included) number
  ``levels_below`` / ``levels_above``, no new one is placed on that side.
* **Closing orders** (take-profits, buy-backs) are not post-only and are never cancelled by
  trailing; only by :meth:`GridStrategy.stop` (and a BUY by a trim). Placed when the
  slot is ``HOLDING`` (see the slot table), for the lot floored to step.
* **No self-cross**, pending orders included: a new BUY is strictly below every live SELL and
  every deferred closing SELL; a new SELL strictly above every live BUY and every deferred
  closing BUY. A closing order blocked by live opening orders cancels them and is *deferred*
  until the cancels are confirmed; blocked by another closing order it simply waits.
* **Spot inventory**: no SELL is ever placed for more than ``position`` minus what live
  sells already commit; opening SELLs (neutral) additionally leave the uncovered long lots
  for their take-profits. So ``position >= 0`` holds when ``start_position >= 0``.
* **Venue max**: live orders never exceed ``spec.max_orders``; closing orders come first:
  when a due closing order has no room, the opening orders farthest from the price are
  cancelled and no new opening order is placed.
* **Fills** apply by cumulative quantity per order (``filled = max(filled, cum_qty)``); the
  increase goes to the slot lot (buy +, sell -) and ``position``. A fee charged in the base
  asset is subtracted from both, once per ``trade_id`` (a fill report without a trade id
  counts as its own trade). Terminal statuses are sticky (see the order table in
  :mod:`~mm_trio.core.grid.slots`); terminal orders are remembered (the most recent
  :data:`DONE_MEMORY`) so late fills on them still count. Reports for unknown client ids
  (or other symbols) are counted in ``ignored_updates``; crossed or non-positive quotes in
  ``ignored_quotes``.
* **Unconfirmed fills**: a cum-only increase (a status or query report, e.g. ``CANCELED``
  with ``cum_qty``, overtaking or replacing its trade report) counts for the position at
  once, but its fee (maybe in base) is not known yet: closing orders and opening SELLs keep
  :data:`FEE_RESERVE` (1 %) of such quantity back until the trade report (``last_qty > 0``)
  arrives; whatever is left after the real fee stays as dust for the next lot.
* **Rejects**: a ``REJECTED`` place is not retried on that (side, level) until the window
  moves (no reject loops). A ``REJECTED`` for an order the venue already acknowledged is a
  rejected *cancel*: counted in ``cancel_rejects``; the order stays live and
  cancel-requested until a report (e.g. from the shell's order query) ends it.
* **Gates**: ``halt_opening`` cancels opening orders and places none; ``reduce_only`` places
  no BUY (SELLs, which reduce inventory, continue) but keeps the resting ones (opening BUYs
  still trail out of the window): the governor trims only its excess, through
  :meth:`GridStrategy.trim_buys`, which cancels the BUYs farthest from the price first.
  :meth:`stop` cancels everything and places nothing until :meth:`resume`.
* **Fixpoint**: every public call leaves the strategy at a fixpoint: re-evaluating without a
  new event yields no intent. :meth:`GridStrategy.on_quote` therefore returns ``[]`` at once
  when the window's level indices did not move (two ``Decimal`` comparisons per side) and
  neither edge level changed between placeable and not (hysteresis).

Generations: one counter for the strategy; each new order uses ``generation + 1`` and the
counter is then advanced, so pass the last recorded value as ``generation_start`` after a
restart. :attr:`GridStrategy.generation` is the last generation used.
"""

from __future__ import annotations

from collections import OrderedDict
from decimal import Decimal

from mm_trio.core.grid.levels import LevelGrid, snap_down
from mm_trio.core.grid.slots import (
    LiveOrder,
    OrderState,
    Slot,
    SlotEvent,
    SlotState,
    next_order_status,
)
from mm_trio.domain.config import ConfigError, GridConfig, validate_grid
from mm_trio.domain.ids import make_client_id, symbol_tag
from mm_trio.domain.intents import CancelOrder, Intent, PlaceOrder
from mm_trio.domain.model import ZERO, OrderRequest, OrderUpdate, Quote, Side, SymbolSpec

DONE_MEMORY = 10_000
"""How many terminal orders are remembered for late reports."""

FEE_RESERVE = Decimal("0.01")
"""Share of an unconfirmed buy fill (no trade report yet) not sold: room for a base fee."""

_Key = tuple[int | None, int | None]


class GridStrategy:
    """Grid market making on one symbol: events in, intents out. See the module docstring."""

    def __init__(self, spec: SymbolSpec, config: GridConfig, *,
                 start_position: Decimal = ZERO, generation_start: int = 0) -> None:
        try:
            validate_grid(config)
        except ConfigError as exc:
            raise ValueError(str(exc)) from None
        if spec.tick_size <= 0:
            raise ValueError(f"tick_size = {spec.tick_size}: must be > 0")
        if spec.step_size <= 0:
            raise ValueError(f"step_size = {spec.step_size}: must be > 0")
        if config.spacing == "arithmetic" and config.step < spec.tick_size:
            raise ValueError(f"grid.step = {config.step}: smaller than one tick "
                             f"({spec.tick_size}); levels would collide")
        if generation_start < 0:
            raise ValueError(f"generation_start = {generation_start}: must be >= 0")
        self.spec = spec
        self.config = config
        self._symbol = spec.symbol
        self._prefix = config.client_id_prefix
        self._tag = symbol_tag(spec.symbol, config.client_id_prefix)
        self._neutral = config.mode == "neutral"
        self._lb = config.levels_below
        self._la = config.levels_above if self._neutral else 0
        self._grid: LevelGrid | None = None
        if config.anchor is not None:
            self._grid = self._make_grid(config.anchor)
        self._start = start_position
        self._position = start_position
        self._generation = generation_start
        self._orders: dict[str, OrderState] = {}  # live orders
        self._done: OrderedDict[str, OrderState] = OrderedDict()
        self._slots: dict[int, Slot] = {}
        self._held_long = 0
        self._held_short = 0
        self._halt = False
        self._reduce_only = False
        self._stopped = False
        self._bid: Decimal | None = None
        self._ask: Decimal | None = None
        self._mid: Decimal | None = None
        self._key: _Key = (None, None)
        # cached window edges: price(buy_top) < x <= price(buy_top + 1) keeps buy_top
        self._bt_lo: Decimal | None = None
        self._bt_hi: Decimal | None = None
        self._sb_lo: Decimal | None = None
        self._sb_hi: Decimal | None = None
        self._bt_k: int | None = None
        self._sb_k: int | None = None
        self._hyst = self.config.trail_hysteresis
        self._x: Decimal | None = None  # min(ref, ask): new opening BUYs strictly below
        self._y: Decimal | None = None  # max(ref, bid): new opening SELLs strictly above
        self._bt_p: Decimal | None = None  # price(buy_top)
        self._sb_p: Decimal | None = None  # price(sell_bottom)
        # (x > price(buy_top), y < price(sell_bottom)): the edge levels take new orders
        self._edge_now: tuple[bool, bool] = (True, True)
        self._edge: tuple[bool, bool] = (True, True)  # as of the last reconcile
        self._qty_cache: dict[tuple[int, Side], Decimal] = {}
        self._rejected: set[tuple[Side, int]] = set()  # until the window moves
        self.ignored_updates = 0
        self.ignored_quotes = 0
        self.cancel_rejects = 0

    def _make_grid(self, anchor: Decimal) -> LevelGrid:
        return LevelGrid(spacing=self.config.spacing, step=self.config.step, anchor=anchor,
                         tick=self.spec.tick_size)

    # ================================================================== read-only views
    @property
    def position(self) -> Decimal:
        return self._position

    @property
    def open_buy_notional(self) -> Decimal:
        return sum((o.price * o.remaining for o in self._orders.values() if o.side == "BUY"),
                   ZERO)

    @property
    def cancelling_buy_notional(self) -> Decimal:
        """The part of :attr:`open_buy_notional` whose cancel is under way."""
        return sum((o.price * o.remaining for o in self._orders.values()
                    if o.side == "BUY" and o.cancel_requested), ZERO)

    def live_order(self, client_id: str) -> LiveOrder | None:
        """One live order by client id (``None`` if it is not live)."""
        order = self._orders.get(client_id)
        return None if order is None else order.view()

    def live_orders(self) -> list[LiveOrder]:
        return [self._orders[cid].view() for cid in sorted(self._orders)]

    def knows(self, client_id: str) -> bool:
        """``client_id`` is an order this strategy emitted (live, or among the remembered
        terminal ones): only such orders' reports and fills are ours."""
        return client_id in self._orders or client_id in self._done

    def level_inventory(self) -> dict[int, Decimal]:
        return {k: s.lot for k, s in sorted(self._slots.items()) if s.lot != 0}

    def held_levels(self) -> int:
        """Slots holding inventory (a placeable lot or a live closing order)."""
        return sum(1 for s in self._slots.values() if s.holds)

    @property
    def stopped(self) -> bool:
        return self._stopped

    @property
    def anchor(self) -> Decimal | None:
        return None if self._grid is None else self._grid.anchor

    @property
    def grid(self) -> LevelGrid | None:
        return self._grid

    @property
    def generation(self) -> int:
        """The last generation used in a client id."""
        return self._generation

    @property
    def gates(self) -> tuple[bool, bool]:
        """``(halt_opening, reduce_only)``."""
        return self._halt, self._reduce_only

    # ================================================================== events
    def on_quote(self, quote: Quote) -> list[Intent]:
        bid, ask = quote.bid, quote.ask
        if quote.symbol != self._symbol or bid <= 0 or ask <= 0 or bid > ask:
            self.ignored_quotes += 1
            return []
        mid = (bid + ask) / 2
        if self._grid is None:
            self._grid = self._make_grid(mid)
        self._bid, self._ask, self._mid = bid, ask, mid
        if self._window_key() == self._key and self._edge_now == self._edge:
            return []
        return self._reconcile()

    def on_order_update(self, update: OrderUpdate) -> list[Intent]:
        cid = update.client_id
        order = self._orders.get(cid)
        if order is None:
            order = self._done.get(cid)
        if order is None or update.symbol != self._symbol:
            self.ignored_updates += 1
            return []
        if not self._apply(order, update):
            return []
        return self._reconcile()

    def set_gates(self, *, halt_opening: bool, reduce_only: bool) -> list[Intent]:
        if (halt_opening, reduce_only) == (self._halt, self._reduce_only):
            return []
        self._halt, self._reduce_only = halt_opening, reduce_only
        return self._reconcile()

    def trim_buys(self, keep: Decimal) -> list[Intent]:
        """Cancel live BUYs, farthest from the price (lowest) first, until the notional of
        those not being cancelled is at most ``keep``. Nothing is placed; the trimmed levels
        are bought again only once the gates allow new BUYs."""
        buys = sorted((o for o in self._orders.values()
                       if o.side == "BUY" and not o.cancel_requested),
                      key=lambda o: (o.price, o.client_id))
        kept = sum((o.price * o.remaining for o in buys), ZERO)
        out: list[Intent] = []
        for o in buys:
            if kept <= keep:
                break
            kept -= o.price * o.remaining
            out.append(self._cancel(o))
        return out

    def stop(self) -> list[Intent]:
        self._stopped = True
        return self._reconcile()

    def resume(self) -> list[Intent]:
        self._stopped = False
        return self._reconcile()

    # ================================================================== fills
    def _slot(self, level: int) -> Slot:
        slot = self._slots.get(level)
        if slot is None:
            slot = self._slots[level] = Slot(level)
        return slot

    def _apply(self, order: OrderState, u: OrderUpdate) -> bool:
        """Apply one report to ``order`` and its slot; ``True`` if anything changed."""
        slot = self._slot(order.level)
        was_live = order.live
        before = slot.state
        changed = False
        unconfirmed_before = order.unconfirmed
        delta = ZERO
        cum = min(u.cum_qty, order.qty)
        if cum > order.filled:
            delta = cum - order.filled
            order.filled = cum
            changed = True
        fee = ZERO
        if u.trade_id is not None and u.last_qty > 0:
            if u.trade_id not in order.trade_ids:
                order.trade_ids.add(u.trade_id)
                order.traded += u.last_qty
                changed = True
                if u.fee_asset == self.spec.base:
                    fee = u.fee
        elif delta > 0 and u.last_qty > 0:
            # a fill report without a trade id: it is the trade (and carries its fee)
            order.traded += delta
            if u.fee_asset == self.spec.base:
                fee = u.fee
        signed = delta if order.side == "BUY" else -delta
        amount = signed - fee
        self._position += amount
        slot.lot += amount
        if order.side == "BUY":
            slot.pending += order.unconfirmed - unconfirmed_before
        self._refresh(slot)
        status, cancel_rejected = next_order_status(order.status, u.status)
        if cancel_rejected:
            # our cancel was refused (the order filled meanwhile, or is unknown): keep it
            # cancel-requested and wait for the report the shell's order query brings
            self.cancel_rejects += 1
        if status != order.status:
            order.status = status
            changed = True
            if status == "REJECTED":
                # do not retry this (side, level) until the window moves: no reject loops
                self._rejected.add((order.side, order.level))
            if not order.live:
                del self._orders[order.client_id]
                self._done[order.client_id] = order
                if len(self._done) > DONE_MEMORY:
                    self._done.popitem(last=False)
                if slot.opening == order.client_id:
                    slot.opening = None
                if slot.closing == order.client_id:
                    slot.closing = None
        slot.check(before, SlotEvent.REPORT if was_live else SlotEvent.LATE_REPORT)
        self._maybe_prune(slot)
        return changed

    def _refresh(self, slot: Slot) -> None:
        """Recompute the slot's closing quantity and the held-levels counters."""
        if slot.closing_qty > 0:
            if slot.lot_sign > 0:
                self._held_long -= 1
            else:
                self._held_short -= 1
        slot.closing_qty = self._closing_qty(slot.level, slot.lot, slot.pending)
        slot.lot_sign = 1 if slot.lot > 0 else -1
        if slot.closing_qty > 0:
            if slot.lot_sign > 0:
                self._held_long += 1
            else:
                self._held_short += 1

    def _maybe_prune(self, slot: Slot) -> None:
        if (slot.lot == 0 and slot.pending == 0 and slot.opening is None
                and slot.closing is None):
            del self._slots[slot.level]

    def _closing_price(self, level: int, lot: Decimal) -> Decimal:
        assert self._grid is not None
        return self._grid.price(level + 1 if lot > 0 else level - 1)

    def _closing_qty(self, level: int, lot: Decimal, pending: Decimal) -> Decimal:
        """Placeable closing quantity of ``lot`` at ``level`` (``0`` for dust).

        Of a long lot's ``pending`` (unconfirmed) quantity, whose trade report and so its
        fee (maybe in the base asset) has not arrived yet, :data:`FEE_RESERVE` is kept back.
        """
        if lot == 0 or self._grid is None:
            return ZERO
        spec = self.spec
        size = lot - pending * FEE_RESERVE if lot > 0 else -lot
        if size <= 0:
            return ZERO
        qty = snap_down(min(size, spec.max_qty), spec.step_size)
        if qty <= 0:
            return ZERO
        if spec.filter_error(self._closing_price(level, lot), qty) is not None:
            return ZERO
        return qty

    # ================================================================== window
    def _window_key(self) -> _Key:
        grid, mid = self._grid, self._mid
        if grid is None or mid is None or self._ask is None or self._bid is None:
            return (None, None)
        net = self._held_long - self._held_short
        skew = self.config.inventory_skew
        ref = mid - skew * net * grid.step_at(mid) if (net and skew) else mid
        h = self._hyst
        buy_top: int | None = None
        if self._lb:
            x = self._x = min(ref, self._ask)
            lo, hi = self._bt_lo, self._bt_hi
            if lo is not None and hi is not None and lo < x <= hi:
                buy_top = self._bt_k
            elif x > 0 or grid.spacing == "arithmetic":
                t = buy_top = self._bt_k = grid.level_below(x)
                lo, hi = grid.price(t), grid.price(t + 1)
                self._bt_p = lo
                if h:
                    lo -= h * (lo - grid.price(t - 1))
                    hi += h * (grid.price(t + 2) - hi)
                self._bt_lo, self._bt_hi = lo, hi
        sell_bottom: int | None = None
        if self._la:
            y = self._y = max(ref, self._bid)
            lo, hi = self._sb_lo, self._sb_hi
            if lo is not None and hi is not None and lo <= y < hi:
                sell_bottom = self._sb_k
            else:
                b = sell_bottom = self._sb_k = grid.level_above(y)
                lo, hi = grid.price(b - 1), grid.price(b)
                self._sb_p = hi
                if h:
                    lo -= h * (lo - grid.price(b - 2))
                    hi += h * (grid.price(b + 1) - hi)
                self._sb_lo, self._sb_hi = lo, hi
        if h:
            bt_p, sb_p = self._bt_p, self._sb_p
            self._edge_now = (buy_top is None or bt_p is None or self._x is None
                              or self._x > bt_p,
                              sell_bottom is None or sb_p is None or self._y is None
                              or self._y < sb_p)
        return (buy_top, sell_bottom)

    def _in_window(self, order: OrderState) -> bool:
        top, bottom = self._key
        if order.side == "BUY":
            return top is not None and top - self._lb < order.level <= top
        return bottom is not None and bottom <= order.level < bottom + self._la

    def _opening_qty(self, level: int, side: Side) -> Decimal:
        """Placeable opening quantity at ``level`` (``0``: skip the level)."""
        qty = self._qty_cache.get((level, side))
        if qty is not None:
            return qty
        assert self._grid is not None
        spec, cfg, grid = self.spec, self.config, self._grid
        price = grid.price(level)
        qty = ZERO
        in_bounds = (cfg.lower is None or price >= cfg.lower) and (
            cfg.upper is None or price <= cfg.upper)
        if in_bounds and price > 0:
            size = cfg.order_size if cfg.order_size_in == "base" else cfg.order_size / price
            q = snap_down(min(size, spec.max_qty), spec.step_size)
            # the order, and the closing order of a full fill, must both be placeable, and
            # the closing level must be a distinct price
            if side == "BUY":
                close_ok = grid.distinct_above(level)
                close_price = grid.price(level + 1)
            else:
                close_ok = grid.distinct_below(level)
                close_price = grid.price(level - 1)
            if (q > 0 and close_ok and spec.filter_error(price, q) is None
                    and spec.filter_error(close_price, q) is None):
                qty = q
        if len(self._qty_cache) > 100_000:
            self._qty_cache.clear()
        self._qty_cache[(level, side)] = qty
        return qty

    # ================================================================== intents
    def _place(self, level: int, side: Side, price: Decimal, qty: Decimal,
               opening: bool) -> PlaceOrder:
        self._generation += 1
        cid = make_client_id(self._prefix, self._tag, side, level, self._generation)
        order = OrderState(cid, side, level, price, qty, opening)
        self._orders[cid] = order
        slot = self._slot(level)
        before = slot.state
        if opening:
            slot.opening = cid
            slot.check(before, SlotEvent.PLACE_OPEN)
        else:
            slot.closing = cid
            slot.check(before, SlotEvent.PLACE_CLOSE)
        return PlaceOrder(OrderRequest(symbol=self._symbol, client_id=cid, side=side,
                                       price=price, qty=qty, post_only=opening),
                          opening=opening)

    def _cancel(self, order: OrderState) -> CancelOrder:
        order.cancel_requested = True
        return CancelOrder(self._symbol, order.client_id)

    def _reconcile(self) -> list[Intent]:
        """Bring orders in line with state, gates and window; leaves a fixpoint."""
        out: list[Intent] = []
        key = self._window_key()
        if key != self._key:
            self._rejected.clear()
        self._key = key
        self._edge = self._edge_now
        live = sorted(self._orders.values(), key=lambda o: (o.level, o.side, o.client_id))

        # 1. cancels: stop, gates, trailing
        for o in live:
            if o.cancel_requested:
                continue
            if self._stopped:
                out.append(self._cancel(o))
            elif o.opening:
                if self._halt or not self._in_window(o):
                    out.append(self._cancel(o))
        if self._grid is None:
            return out

        max_buy: Decimal | None = None
        min_sell: Decimal | None = None
        sell_committed = ZERO
        for o in live:
            if o.side == "BUY":
                if max_buy is None or o.price > max_buy:
                    max_buy = o.price
            else:
                sell_committed += o.remaining
                if min_sell is None or o.price < min_sell:
                    min_sell = o.price

        # 2. closing orders (take-profits, buy-backs)
        deferred_buy: Decimal | None = None   # highest deferred closing BUY price
        deferred_sell: Decimal | None = None  # lowest deferred closing SELL price
        uncovered_long = ZERO
        reserve = ZERO  # for base fees still to come on unconfirmed buy fills
        for s in self._slots.values():
            reserve += s.pending * FEE_RESERVE
            if s.lot > 0 and s.closing is None:
                uncovered_long += s.lot
        room_needed = 0
        n_live = len(self._orders)
        max_orders = self.spec.max_orders
        for level in sorted(self._slots):
            slot = self._slots[level]
            if slot.state is not SlotState.HOLDING:
                continue
            lot = slot.lot
            price = self._closing_price(level, lot)
            qty = slot.closing_qty
            if lot > 0:
                side: Side = "SELL"
                avail = snap_down(self._position - sell_committed - reserve,
                                  self.spec.step_size)
                if avail < qty:
                    qty = avail
                placeable = qty > 0 and self.spec.filter_error(price, qty) is None
                if deferred_sell is None or price < deferred_sell:
                    deferred_sell = price
                if self._stopped or not placeable or (side, level) in self._rejected:
                    continue
                if max_buy is not None and price <= max_buy:
                    for o in live:
                        if (o.side == "BUY" and o.opening and o.price >= price
                                and not o.cancel_requested and o.live):
                            out.append(self._cancel(o))
                    continue
            else:
                side = "BUY"
                if deferred_buy is None or price > deferred_buy:
                    deferred_buy = price
                if (self._stopped or self._reduce_only or not qty
                        or (side, level) in self._rejected):
                    continue
                if min_sell is not None and price >= min_sell:
                    for o in live:
                        if (o.side == "SELL" and o.opening and o.price <= price
                                and not o.cancel_requested and o.live):
                            out.append(self._cancel(o))
                    continue
            if n_live >= max_orders:
                room_needed += 1
                continue
            out.append(self._place(level, side, price, qty, opening=False))
            n_live += 1
            if side == "SELL":
                uncovered_long -= lot
                sell_committed += qty
                if min_sell is None or price < min_sell:
                    min_sell = price
            elif max_buy is None or price > max_buy:
                max_buy = price

        if room_needed:
            pending = sum(1 for o in self._orders.values() if o.opening and o.cancel_requested)
            need = room_needed - pending
            if need > 0:
                top, bottom = key

                def distance(o: OrderState) -> tuple[int, str, int]:
                    if o.side == "BUY":
                        d = (top - o.level) if top is not None else 0
                    else:
                        d = (o.level - bottom) if bottom is not None else 0
                    return (-d, o.side, o.level)

                victims = sorted((o for o in self._orders.values()
                                  if o.opening and not o.cancel_requested), key=distance)
                for o in victims[:need]:
                    out.append(self._cancel(o))
            return out

        # 3. opening orders
        if self._stopped or self._halt:
            return out
        grid = self._grid
        top, bottom = key
        x, y = self._x, self._y
        if top is not None and not self._reduce_only:
            n_open = sum(1 for o in self._orders.values() if o.opening and o.side == "BUY")
            ceiling = min_sell
            if deferred_sell is not None and (ceiling is None or deferred_sell < ceiling):
                ceiling = deferred_sell
            for level in range(top, top - self._lb, -1):
                if n_open >= self._lb or n_live >= max_orders:
                    break
                price = grid.price(level)
                if ceiling is not None and price >= ceiling:
                    continue
                if x is None or price >= x:
                    continue  # a kept edge level the price has reached (hysteresis)
                slot = self._slots.get(level)
                if slot is not None and slot.state is not SlotState.EMPTY:
                    continue
                if ("BUY", level) in self._rejected:
                    continue
                qty = self._opening_qty(level, "BUY")
                if not qty:
                    continue
                out.append(self._place(level, "BUY", price, qty, opening=True))
                n_open += 1
                n_live += 1
                if max_buy is None or price > max_buy:
                    max_buy = price
        if bottom is not None:
            n_open = sum(1 for o in self._orders.values() if o.opening and o.side == "SELL")
            floor_ = max_buy
            if deferred_buy is not None and (floor_ is None or deferred_buy > floor_):
                floor_ = deferred_buy
            free = self._position - sell_committed - uncovered_long - reserve
            for level in range(bottom, bottom + self._la):
                if n_open >= self._la or n_live >= max_orders:
                    break
                price = grid.price(level)
                if floor_ is not None and price <= floor_:
                    continue
                if y is None or price <= y:
                    continue  # a kept edge level the price has reached (hysteresis)
                slot = self._slots.get(level)
                if slot is not None and slot.state is not SlotState.EMPTY:
                    continue
                if ("SELL", level) in self._rejected:
                    continue
                qty = self._opening_qty(level, "SELL")
                if not qty or qty > free:
                    continue
                out.append(self._place(level, "SELL", price, qty, opening=True))
                n_open += 1
                n_live += 1
                free -= qty
        return out
