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
  :data:`DONE_MEMORY`) so late fills on them still count; a report of another status for a
  terminal order is counted in ``stale_reports``. Reports for unknown client ids (or other
  symbols) are counted in ``ignored_updates``; crossed or non-positive quotes in
  ``ignored_quotes``. A report of ours that changes nothing (no fill, no new status: the
  second report of one outcome, or a stale one) returns ``[]`` without reconciling and is
  counted in ``unchanged_reports``.
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

Code map: :class:`GridStrategy` takes the events and applies fills; the window is
:mod:`~mm_trio.core.grid.window`, order sizes :mod:`~mm_trio.core.grid.sizing`, the orders
:mod:`~mm_trio.core.grid.book`, the slots :mod:`~mm_trio.core.grid.inventory` (their state
machines :mod:`~mm_trio.core.grid.slots`), and the phases that turn all of it into intents
:mod:`~mm_trio.core.grid.reconcile`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal

from mm_trio.core.grid.book import DONE_MEMORY, OrderBook
from mm_trio.core.grid.inventory import Inventory
from mm_trio.core.grid.levels import LevelGrid
from mm_trio.core.grid.reconcile import Gates, Reconcile
from mm_trio.core.grid.restore import RestingOrder, plan_adoption
from mm_trio.core.grid.sizing import FEE_RESERVE, Sizing
from mm_trio.core.grid.slots import LiveOrder, OrderReaction, OrderState
from mm_trio.core.grid.window import TrailingWindow
from mm_trio.domain.config import ConfigError, GridConfig, validate_grid
from mm_trio.domain.ids import make_client_id, symbol_tag
from mm_trio.domain.intents import CancelOrder, Intent, PlaceOrder
from mm_trio.domain.model import ZERO, OrderRequest, OrderUpdate, Quote, Side, SymbolSpec

__all__ = ["DONE_MEMORY", "FEE_RESERVE", "GridStrategy"]


class GridStrategy:
    """Grid market making on one symbol: events in, intents out. See the module docstring."""

    def __init__(
        self,
        spec: SymbolSpec,
        config: GridConfig,
        *,
        start_position: Decimal = ZERO,
        generation_start: int = 0,
    ) -> None:
        _validate(spec, config, generation_start)
        self.spec = spec
        self.config = config
        self._symbol = spec.symbol
        self._prefix = config.client_id_prefix
        self._tag = symbol_tag(spec.symbol, config.client_id_prefix)
        self._grid: LevelGrid | None = None
        if config.anchor is not None:
            self._grid = self._make_grid(config.anchor)
        self._start = start_position
        self._position = start_position
        self._generation = generation_start
        self._book = OrderBook()
        self._orders = self._book.live  # live orders by client id
        self._done = self._book.done  # remembered terminal orders
        self._inventory = Inventory()
        self._sizing = Sizing(spec, config)
        self._window = TrailingWindow(
            levels_below=config.levels_below,
            levels_above=config.levels_above if config.mode == "neutral" else 0,
            inventory_skew=config.inventory_skew,
            hysteresis=config.trail_hysteresis,
        )
        self._gates = Gates()
        self._bid: Decimal | None = None
        self._ask: Decimal | None = None
        self._mid: Decimal | None = None
        self._rejected: set[tuple[Side, int]] = set()  # until the window moves
        self.ignored_updates = 0
        self.ignored_quotes = 0
        self.cancel_rejects = 0
        self.stale_reports = 0  # reports the order table ignores (terminal order, other status)
        # reports of our orders that changed nothing (most often the second of the two
        # reports of one outcome: the stream's and the request's own answer)
        self.unchanged_reports = 0

    def _make_grid(self, anchor: Decimal) -> LevelGrid:
        return LevelGrid(
            spacing=self.config.spacing,
            step=self.config.step,
            anchor=anchor,
            tick=self.spec.tick_size,
        )

    # ================================================================== read-only views
    @property
    def position(self) -> Decimal:
        return self._position

    @property
    def open_buy_notional(self) -> Decimal:
        return self._book.open_buy_notional()

    @property
    def cancelling_buy_notional(self) -> Decimal:
        """The part of :attr:`open_buy_notional` whose cancel is under way."""
        return sum(
            (
                o.price * o.remaining
                for o in self._orders.values()
                if o.side == "BUY" and o.cancel_requested
            ),
            ZERO,
        )

    def live_order(self, client_id: str) -> LiveOrder | None:
        """One live order by client id (``None`` if it is not live)."""
        order = self._orders.get(client_id)
        return None if order is None else order.view()

    def live_orders(self) -> list[LiveOrder]:
        return self._book.views()

    @property
    def live_count(self) -> int:
        """How many orders are live (``len(live_orders())``, without building the views)."""
        return len(self._book)

    def knows(self, client_id: str) -> bool:
        """``client_id`` is an order this strategy emitted (live, or among the remembered
        terminal ones): only such orders' reports and fills are ours."""
        return self._book.knows(client_id)

    def level_inventory(self) -> dict[int, Decimal]:
        return self._inventory.level_inventory()

    def held_levels(self) -> int:
        """Slots holding inventory (a placeable lot or a live closing order)."""
        return self._inventory.held_levels()

    @property
    def stopped(self) -> bool:
        return self._gates.stopped

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
        return self._gates.halt_opening, self._gates.reduce_only

    # ================================================================== take-over
    def restore(
        self, held: Mapping[int, Decimal], orders: Iterable[RestingOrder]
    ) -> list[RestingOrder]:
        """Take over an earlier run's grid before the first event: ``held`` is the lot of
        each level (signed, base fees taken off: the fill ledger's), ``orders`` our orders
        still resting on the venue. Returns the orders that do not fit the slot model (see
        :mod:`~mm_trio.core.grid.restore`): the caller cancels them.

        The grid must be anchored (``config.anchor``: the anchor the earlier run used), or
        level numbers would mean other prices.
        """
        if self._book.live or self._inventory.slots or self._mid is not None:
            raise ValueError(f"{self._symbol}: restore() must come before any event")
        grid = self._grid
        if grid is None:
            if held or orders:
                raise ValueError(f"{self._symbol}: restore() needs the earlier run's anchor")
            return []
        adopted, unfit = plan_adoption(
            orders, held, grid=grid, sizing=self._sizing, neutral=self.config.mode == "neutral"
        )
        for order, opening in adopted:
            if opening:  # an opening order's slot may hold its partial fills: order first
                self._adopt(order, opening=True)
        for level in sorted(held):
            self._hold(level, held[level])
        for order, opening in adopted:
            if not opening:  # a closing order closes a held lot: lot first
                self._adopt(order, opening=False)
        return unfit

    def _hold(self, level: int, lot: Decimal) -> None:
        slot = self._inventory.slot(level)
        self._position += lot
        slot.lot += lot
        self._inventory.set_closing_qty(
            slot, self._sizing.closing_qty(self._grid, level, slot.lot, slot.pending)
        )
        slot.reported("", was_live=False, live=False)  # like a late fill: the lot moved
        self._inventory.prune(slot)

    def _adopt(self, order: RestingOrder, *, opening: bool) -> None:
        state = OrderState(
            order.client_id, order.side, order.level, order.price, order.qty, opening
        )
        state.filled = state.traded = order.filled
        state.trade_ids = set(order.trade_ids)
        state.take_status(order.status)
        self._book.add(state)
        self._inventory.slot(order.level).place(order.client_id, opening=opening)

    def quiet_band(self) -> tuple[Decimal, Decimal] | None:
        """The open interval of mids inside which a quote changes nothing but the latest
        quote: :meth:`on_quote` returns ``[]`` and every order, slot, gate and the window
        stay as they are (the fast path's invariant). ``None``: every quote may matter
        (no grid or quote yet, or an inventory skew that moves the reference with the lots).

        Without a skew the window's bounds are ``x = min(mid, ask) = mid`` and ``y =
        max(mid, bid) = mid`` for every uncrossed quote, so one band on the mid covers both
        sides.
        """
        if self._grid is None or self._mid is None:
            return None
        if self.config.inventory_skew and self._inventory.net_held:
            return None
        return self._window.quiet_band()

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
        self._track_window()
        if self._window.settled:
            return []
        return self._reconcile()

    def note_quote(self, quote: Quote) -> None:
        """Take a quote whose mid is strictly inside :meth:`quiet_band` (and uncrossed): the
        same state :meth:`on_quote` would leave, which would return ``[]`` (the band's
        invariant), without tracking the window again: only the latest quote and the
        window's bounds move. The caller vouches for the band (the inbox checked it)."""
        bid, ask = quote.bid, quote.ask
        mid = (bid + ask) / 2
        self._bid, self._ask, self._mid = bid, ask, mid
        # inside the band there is no skew to apply (quiet_band is None otherwise)
        self._window.note(mid, bid, ask)

    def on_order_update(self, update: OrderUpdate) -> list[Intent]:
        order = self._book.find(update.client_id)
        if order is None or update.symbol != self._symbol:
            self.ignored_updates += 1
            return []
        if not self._apply(order, update):
            self.unchanged_reports += 1
            return []
        return self._reconcile()

    def set_gates(self, *, halt_opening: bool, reduce_only: bool) -> list[Intent]:
        if (halt_opening, reduce_only) == self.gates:
            return []
        self._gates = self._gates._replace(halt_opening=halt_opening, reduce_only=reduce_only)
        return self._reconcile()

    def trim_buys(self, keep: Decimal) -> list[Intent]:
        """Cancel live BUYs, farthest from the price (lowest) first, until the notional of
        those not being cancelled is at most ``keep``. Nothing is placed; the trimmed levels
        are bought again only once the gates allow new BUYs."""
        buys = sorted(
            (o for o in self._orders.values() if o.side == "BUY" and not o.cancel_requested),
            key=lambda o: (o.price, o.client_id),
        )
        kept = sum((o.price * o.remaining for o in buys), ZERO)
        out: list[Intent] = []
        for o in buys:
            if kept <= keep:
                break
            kept -= o.price * o.remaining
            out.append(self._cancel(o))
        return out

    def stop(self) -> list[Intent]:
        self._gates = self._gates._replace(stopped=True)
        return self._reconcile()

    def resume(self) -> list[Intent]:
        self._gates = self._gates._replace(stopped=False)
        return self._reconcile()

    # ================================================================== fills
    def _apply(self, order: OrderState, u: OrderUpdate) -> bool:
        """Apply one report to ``order`` and its slot; ``True`` if anything changed."""
        slot = self._inventory.slot(order.level)
        was_live = order.live
        unconfirmed_before = order.unconfirmed
        delta, fee, changed = order.count_fill(u, self.spec.base)
        signed = delta if order.side == "BUY" else -delta
        amount = signed - fee
        self._position += amount
        slot.lot += amount
        if order.side == "BUY":
            slot.pending += order.unconfirmed - unconfirmed_before
        self._inventory.set_closing_qty(
            slot, self._sizing.closing_qty(self._grid, slot.level, slot.lot, slot.pending)
        )
        before = order.status
        transition = order.take_status(u.status)
        if transition.reaction is OrderReaction.CANCEL_REJECTED:
            # our cancel was refused (the order filled meanwhile, or is unknown): keep it
            # cancel-requested and wait for the report the shell's order query brings
            self.cancel_rejects += 1
        elif transition.reaction is OrderReaction.IGNORED:
            self.stale_reports += 1
        if order.status != before:
            changed = True
            if order.status == "REJECTED":
                # do not retry this (side, level) until the window moves: no reject loops
                self._rejected.add((order.side, order.level))
            if not order.live:
                self._book.retire(order)
        slot.reported(order.client_id, was_live=was_live, live=order.live)
        self._inventory.prune(slot)
        return changed

    # ================================================================== intents
    def _track_window(self) -> None:
        self._window.track(self._grid, self._mid, self._bid, self._ask, self._inventory.net_held)

    def _place(
        self, level: int, side: Side, price: Decimal, qty: Decimal, opening: bool
    ) -> PlaceOrder:
        self._generation += 1
        cid = make_client_id(self._prefix, self._tag, side, level, self._generation)
        self._book.add(OrderState(cid, side, level, price, qty, opening))
        self._inventory.slot(level).place(cid, opening=opening)
        return PlaceOrder(
            OrderRequest(
                symbol=self._symbol,
                client_id=cid,
                side=side,
                price=price,
                qty=qty,
                post_only=opening,
            ),
            opening=opening,
        )

    def _cancel(self, order: OrderState) -> CancelOrder:
        order.cancel_requested = True
        return CancelOrder(self._symbol, order.client_id)

    def _reconcile(self) -> list[Intent]:
        """Bring orders in line with state, gates and window; leaves a fixpoint."""
        self._track_window()
        if self._window.commit():
            self._rejected.clear()  # a rejected place may be retried once the window moves
        return Reconcile(
            book=self._book,
            inventory=self._inventory,
            window=self._window,
            sizing=self._sizing,
            grid=self._grid,
            spec=self.spec,
            gates=self._gates,
            position=self._position,
            rejected=self._rejected,
            place=self._place,
            cancel=self._cancel,
        ).run()


def _validate(spec: SymbolSpec, config: GridConfig, generation_start: int) -> None:
    """Raise ``ValueError`` naming the first bad setting."""
    try:
        validate_grid(config)
    except ConfigError as exc:
        raise ValueError(str(exc)) from None
    if spec.tick_size <= 0:
        raise ValueError(f"tick_size = {spec.tick_size}: must be > 0")
    if spec.step_size <= 0:
        raise ValueError(f"step_size = {spec.step_size}: must be > 0")
    if config.spacing == "arithmetic" and config.step < spec.tick_size:
        raise ValueError(
            f"grid.step = {config.step}: smaller than one tick "
            f"({spec.tick_size}); levels would collide"
        )
    if generation_start < 0:
        raise ValueError(f"generation_start = {generation_start}: must be >= 0")
