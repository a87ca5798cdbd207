"""Pure matching engine of the simulated venue (SPEC §7).

No trio, no clock reads, no I/O: every call takes the time ``ts`` (integer ns) it happens at,
and the only randomness (the probabilistic queue model) comes from a ``random.Random`` passed
in, so the same calls give the same results.

What it models
--------------
* A registry of symbols (:class:`SymbolSpec` each), built-in majors with Binance-like rules
  plus ``SimVenueConfig.extra_symbols`` whose rules are derived from their start price
  (:mod:`~mm_trio.exchange.sim.registry`, whose names this module re-exports).
* Balances per asset (free / locked; :mod:`~mm_trio.exchange.sim.balances`). A BUY locks
  ``price * qty`` of the quote asset; a SELL locks ``qty`` of the base asset. Locks are
  released exactly on fill and cancel.
* Our resting limit orders, in price-time priority, one book per symbol
  (:mod:`~mm_trio.exchange.sim.book`). Venue-like classified errors on place
  (:mod:`mm_trio.exchange.base`).
* Market data in (:meth:`MatchingEngine.on_quote`, :meth:`MatchingEngine.on_trade`) fills
  resting orders:

  - a resting BUY fills when a trade prints *below* its price or the best ask drops to or
    below its price (trade-through); a SELL symmetrically;
  - a trade exactly *at* the order's price (touch) fills it according to the queue model:
    ``trade_through`` never, ``touch`` always, ``probabilistic`` with probability
    ``queue_fill_probability`` (one draw per trade and side);
  - a trade fills at most its own size of our orders, shared in price-time priority; a quote
    crossing our price fills at most the displayed quantity (which is then used up until the
    next quote);
  - resting fills happen at the order's limit price and pay the maker fee.

* A non-post-only limit order that crosses the current best bid/ask takes liquidity at the
  book price (at most the displayed, not yet used-up quantity) and pays the taker fee; the
  rest of it rests.

Fees
----
Fees are charged in the **quote** asset for both sides (Binance charges a buy's fee in the
base asset; we do not), so base balances move by exactly the filled quantities. A fee is
``price * qty * rate`` rounded to 8 decimal places with ``ROUND_HALF_UP``. A buy's fee is
taken from the free quote balance at fill time (only the notional is locked at placement, as
on Binance), so an account whose quote is fully locked can go slightly negative by fees.
"""

from __future__ import annotations

import random
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from decimal import ROUND_HALF_UP, Decimal

from mm_trio.domain.config import SimVenueConfig
from mm_trio.domain.model import (
    ZERO,
    Balance,
    Event,
    OpenOrder,
    OrderRequest,
    OrderUpdate,
    Quote,
    SymbolError,
    SymbolSpec,
    Trade,
    parse_symbol,
)
from mm_trio.exchange.base import (
    DuplicateOrder,
    FilterRejected,
    InsufficientBalance,
    TooManyOrders,
    UnknownOrder,
    UnknownSymbol,
    WouldTake,
)
from mm_trio.exchange.sim.balances import Balances
from mm_trio.exchange.sim.book import RestingOrder, SymbolBook
from mm_trio.exchange.sim.registry import (
    BUILTIN_SYMBOLS,
    STABLE_QUOTES,
    build_registry,
    derive_spec,
    min_notional_for,
    starting_balances,
)

__all__ = [
    "BUILTIN_SYMBOLS",
    "FEE_QUANTUM",
    "STABLE_QUOTES",
    "MatchingEngine",
    "build_registry",
    "derive_spec",
    "min_notional_for",
    "starting_balances",
]

FEE_QUANTUM = Decimal("1e-8")
"""Fees are rounded to this many decimals (ROUND_HALF_UP)."""

# Binance error codes, for callers that log them
CODE_FILTER = -1013
CODE_REJECTED = -2010
CODE_UNKNOWN_ORDER_CANCEL = -2011
CODE_UNKNOWN_ORDER_QUERY = -2013
CODE_BAD_SYMBOL = -1121

_MAX_DONE_ORDERS = 100_000


class MatchingEngine:
    """The simulated venue's books, balances and fill logic (pure, deterministic).

    ``rng`` drives only the probabilistic queue model; by default it is seeded from
    ``config.seed``.
    """

    def __init__(self, config: SimVenueConfig, *, rng: random.Random | None = None) -> None:
        self.config = config
        self.rng = rng if rng is not None else random.Random(f"queue/{config.seed}")
        self.maker_fee = Decimal(config.maker_fee)
        self.taker_fee = Decimal(config.taker_fee)
        self.queue_model = config.queue_model
        self.queue_p = float(config.queue_fill_probability)
        specs, prices = build_registry(config)
        self.specs: dict[str, SymbolSpec] = specs
        self.start_prices: dict[str, Decimal] = prices
        self._books: dict[str, SymbolBook] = {s: SymbolBook(spec) for s, spec in specs.items()}
        self._balances = Balances(starting_balances(config, specs, prices))
        self._done: OrderedDict[tuple[str, str], OpenOrder] = OrderedDict()
        self._next_order_id = 1
        self._next_trade_id = 1
        self._seq = 0
        # statistics
        self.fill_count = 0
        self.maker_fills = 0
        self.taker_fills = 0
        self.fees: dict[str, Decimal] = {}

    # ------------------------------------------------------------------ registry
    def add_symbol(self, spec: SymbolSpec, start_price: Decimal, *, replace: bool = False) -> None:
        """List another symbol (e.g. one found in a recording). Idempotent per symbol unless
        ``replace`` (then a listed symbol without resting orders gets the new spec)."""
        book = self._books.get(spec.symbol)
        if book is not None and (not replace or book.by_cid):
            return
        self.specs[spec.symbol] = spec
        self.start_prices[spec.symbol] = start_price
        self._books[spec.symbol] = SymbolBook(spec)
        for asset in (spec.base, spec.quote):
            self._balances.open(asset)

    def spec(self, symbol: str) -> SymbolSpec:
        """The spec of a listed symbol; :class:`UnknownSymbol` naming it otherwise."""
        return self._book(symbol).spec

    def _book(self, symbol: str) -> SymbolBook:
        book = self._books.get(symbol)
        if book is None:
            try:
                parse_symbol(symbol)
            except SymbolError as exc:
                raise UnknownSymbol(str(exc), code=CODE_BAD_SYMBOL) from None
            raise UnknownSymbol(f"Invalid symbol: {symbol} is not listed", code=CODE_BAD_SYMBOL)
        return book

    # ------------------------------------------------------------------ queries
    def last_quote(self, symbol: str) -> Quote | None:
        return self._book(symbol).last_quote

    def last_trade(self, symbol: str) -> Trade | None:
        return self._book(symbol).last_trade

    def query(self, symbol: str, client_id: str) -> OpenOrder:
        """State of an order (open or recently finished); :class:`UnknownOrder` if none."""
        book = self._book(symbol)
        order = book.by_cid.get(client_id)
        if order is not None:
            return order.snapshot()
        done = self._done.get((symbol, client_id))
        if done is None:
            raise UnknownOrder("Order does not exist.", code=CODE_UNKNOWN_ORDER_QUERY)
        return done

    def open_orders(self, symbol: str | None = None) -> list[OpenOrder]:
        """Open orders of one symbol or all, in placement order."""
        if symbol is not None:
            books: Iterable[SymbolBook] = (self._book(symbol),)
        else:
            books = self._books.values()
        out = [o for b in books for o in b.by_cid.values()]
        out.sort(key=lambda o: o.seq)
        return [o.snapshot() for o in out]

    def open_count(self, symbol: str) -> int:
        return len(self._book(symbol).by_cid)

    def balances(self) -> dict[str, Balance]:
        return self._balances.all()

    def balance(self, asset: str) -> Balance:
        return self._balances.get(asset)

    # ------------------------------------------------------------------ orders
    def place(self, request: OrderRequest, ts: int) -> tuple[OpenOrder, list[Event]]:
        """Accept a limit order or raise a classified error (nothing changes on error).

        Returns the order as acknowledged (after any immediate taker fill) and the events:
        ``NEW`` with the lock's balance update, then any taker fills.
        """
        book = self._book(request.symbol)
        spec = book.spec
        price, qty, side = request.price, request.qty, request.side
        if side not in ("BUY", "SELL"):
            raise FilterRejected(f"Invalid side {side!r}.", code=CODE_FILTER)
        err = spec.filter_error(price, qty)
        if err is not None:
            raise FilterRejected(f"Filter failure: {err}", code=CODE_FILTER)
        if request.client_id in book.by_cid:
            raise DuplicateOrder("Duplicate order sent.", code=CODE_REJECTED)
        if len(book.by_cid) >= spec.max_orders:
            raise TooManyOrders(
                f"Filter failure: MAX_NUM_ORDERS ({spec.max_orders} open on {request.symbol})",
                code=CODE_FILTER,
            )
        q = book.last_quote
        is_buy = side == "BUY"
        crosses = q is not None and (price >= q.ask if is_buy else price <= q.bid)
        if crosses and request.post_only:
            raise WouldTake("Order would immediately match and take.", code=CODE_REJECTED)
        lock_asset = book.quote if is_buy else book.base
        lock_amount = price * qty if is_buy else qty
        if not self._balances.lock(lock_asset, lock_amount):
            raise InsufficientBalance(
                "Account has insufficient balance for requested action.", code=CODE_REJECTED
            )
        order_id = str(self._next_order_id)
        self._next_order_id += 1
        self._seq += 1
        order = RestingOrder(
            request.symbol, request.client_id, order_id, side, price, qty, ts, self._seq
        )
        events: list[Event] = [
            OrderUpdate(
                symbol=order.symbol,
                client_id=order.client_id,
                side=side,
                price=price,
                qty=qty,
                status="NEW",
                order_id=order_id,
                ts=ts,
            ),
            self._balances.event(lock_asset, ts),
        ]
        if crosses and q is not None:
            # take liquidity at the book price, at most what is displayed and not used up
            take = book.take_displayed(is_buy, qty)
            if take > 0:
                self._fill(book, order, take, q.ask if is_buy else q.bid, False, ts, events)
        if order.cum_qty < qty:
            book.rest(order)
        else:
            self._finish(order)
        return order.snapshot(), events

    def cancel(self, symbol: str, client_id: str, ts: int) -> tuple[OpenOrder, list[Event]]:
        """Cancel an open order: ``CANCELED`` (with cum_qty so far) and the released balance."""
        book = self._book(symbol)
        order = book.remove(client_id)
        if order is None:
            raise UnknownOrder("Unknown order sent.", code=CODE_UNKNOWN_ORDER_CANCEL)
        leaves = order.qty - order.cum_qty
        if order.is_buy:
            asset, amount = book.quote, order.price * leaves
        else:
            asset, amount = book.base, leaves
        self._balances.release(asset, amount)
        order.status = "CANCELED"
        order.ts = ts
        snap = self._finish(order)
        events: list[Event] = [
            OrderUpdate(
                symbol=symbol,
                client_id=client_id,
                side=order.side,
                price=order.price,
                qty=order.qty,
                status="CANCELED",
                cum_qty=order.cum_qty,
                order_id=order.order_id,
                ts=ts,
            ),
            self._balances.event(asset, ts),
        ]
        return snap, events

    def _finish(self, order: RestingOrder) -> OpenOrder:
        snap = order.snapshot()
        key = (order.symbol, order.client_id)
        done = self._done
        done[key] = snap
        done.move_to_end(key)
        if len(done) > _MAX_DONE_ORDERS:
            done.popitem(last=False)
        return snap

    def _fill(
        self,
        book: SymbolBook,
        order: RestingOrder,
        qty: Decimal,
        price: Decimal,
        maker: bool,
        ts: int,
        events: list[Event],
    ) -> None:
        """Apply one fill of ``qty`` at ``price`` to ``order`` and append its events."""
        notional = price * qty
        fee = (notional * (self.maker_fee if maker else self.taker_fee)).quantize(
            FEE_QUANTUM, rounding=ROUND_HALF_UP
        )
        if order.is_buy:
            self._balances.settle_buy(book.base, book.quote, qty, order.price * qty, notional, fee)
        else:
            self._balances.settle_sell(book.base, book.quote, qty, notional, fee)
        order.cum_qty += qty
        order.status = "FILLED" if order.cum_qty == order.qty else "PARTIALLY_FILLED"
        order.ts = ts
        trade_id = self._next_trade_id
        self._next_trade_id += 1
        self.fill_count += 1
        if maker:
            self.maker_fills += 1
        else:
            self.taker_fills += 1
        self.fees[book.quote] = self.fees.get(book.quote, ZERO) + fee
        events.append(
            OrderUpdate(
                symbol=order.symbol,
                client_id=order.client_id,
                side=order.side,
                price=order.price,
                qty=order.qty,
                status=order.status,  # type: ignore[arg-type]
                cum_qty=order.cum_qty,
                last_qty=qty,
                last_price=price,
                fee=fee,
                fee_asset=book.quote,
                trade_id=trade_id,
                order_id=order.order_id,
                maker=maker,
                ts=ts,
            )
        )
        events.append(self._balances.event(book.base, ts))
        events.append(self._balances.event(book.quote, ts))

    def _fill_side(
        self,
        book: SymbolBook,
        orders: list[RestingOrder],
        budget: Decimal,
        limit: Decimal,
        touch: bool | None,
        ts: int,
        events: list[Event],
    ) -> Decimal:
        """Fill the eligible prefix of ``orders`` (priority order) with up to ``budget``.

        An order is eligible if the market went through its price (``limit`` strictly better
        for it), or reached it exactly and ``touch`` allows (``None`` = decide lazily by the
        queue model, once). Returns the budget left.
        """
        n_done = 0
        for order in orders:
            if budget <= 0:
                break
            if order.price == limit:
                if touch is None:
                    touch = self._touch_fills()
                if not touch:
                    break
            elif (order.price < limit) if order.is_buy else (order.price > limit):
                break
            leaves = order.qty - order.cum_qty
            take = leaves if leaves <= budget else budget
            budget -= take
            self._fill(book, order, take, order.price, True, ts, events)
            if take == leaves:
                n_done += 1
                del book.by_cid[order.client_id]
                self._finish(order)
        if n_done:
            del orders[:n_done]
        return budget

    def _touch_fills(self) -> bool:
        model = self.queue_model
        if model == "touch":
            return True
        if model == "probabilistic":
            return self.rng.random() < self.queue_p
        return False

    # ------------------------------------------------------------------ saved state
    def next_ids(self) -> tuple[int, int]:
        """The next order id and the next trade id: what a restored engine continues from."""
        return self._next_order_id, self._next_trade_id

    def restore(
        self,
        *,
        balances: Mapping[str, tuple[Decimal, Decimal]],
        next_order_id: int,
        next_trade_id: int,
        resting: Iterable[OpenOrder],
    ) -> None:
        """Continue from a saved state (the paper venue restarted on its state file).

        ``balances``: free and locked per asset, as saved (the locks of the ``resting``
        orders included: nothing is locked again). ``resting``: the orders that were open,
        in their time priority; they go back into their books with what they had filled.
        Ids continue from the counters, and never below an id already used. Raises
        :class:`UnknownSymbol` for an order on a symbol this engine does not list and
        ``ValueError`` for one that is not open or is resting already (nothing changes).
        """
        orders = list(resting)
        seen: set[tuple[str, str]] = set()
        for o in orders:
            book = self._book(o.symbol)
            key = (o.symbol, o.client_id)
            if o.client_id in book.by_cid or key in seen:
                raise ValueError(f"order {o.client_id!r} on {o.symbol} is resting twice")
            if not o.cum_qty < o.qty or o.status not in ("NEW", "PARTIALLY_FILLED"):
                raise ValueError(f"order {o.client_id!r} on {o.symbol} is not open ({o.status})")
            seen.add(key)
        for asset, (free, locked) in balances.items():
            self._balances.set(asset, free, locked)
        top_id = max((int(o.order_id) for o in orders if o.order_id.isdigit()), default=0)
        self._next_order_id = max(self._next_order_id, next_order_id, top_id + 1)
        self._next_trade_id = max(self._next_trade_id, next_trade_id)
        for o in orders:
            self._seq += 1
            order = RestingOrder(
                o.symbol, o.client_id, o.order_id, o.side, o.price, o.qty, o.ts, self._seq
            )
            order.cum_qty = o.cum_qty
            order.status = o.status
            self._books[o.symbol].rest(order)

    # ------------------------------------------------------------------ market data
    def on_quote(self, quote: Quote) -> list[Event]:
        """Record the best bid/ask; fill resting orders it crosses (at most the shown qty)."""
        book = self._books.get(quote.symbol)
        if book is None:
            return []
        book.last_quote = quote
        book.bid_avail = quote.bid_qty
        book.ask_avail = quote.ask_qty
        bids, asks = book.bids, book.asks
        if not bids and not asks:
            return []
        events: list[Event] = []
        if bids and bids[0].price >= quote.ask:
            # the ask reached our buy: it would match at our price (touch counts here)
            book.ask_avail = self._fill_side(
                book, bids, quote.ask_qty, quote.ask, True, quote.ts, events
            )
        if asks and asks[0].price <= quote.bid:
            book.bid_avail = self._fill_side(
                book, asks, quote.bid_qty, quote.bid, True, quote.ts, events
            )
        return events

    def on_trade(self, trade: Trade) -> list[Event]:
        """Record a public trade; fill resting orders it trades through (or touches)."""
        book = self._books.get(trade.symbol)
        if book is None:
            return []
        book.last_trade = trade
        bids, asks = book.bids, book.asks
        if not bids and not asks:
            return []
        events: list[Event] = []
        price = trade.price
        model = self.queue_model
        touch: bool | None = None if model == "probabilistic" else model == "touch"
        if bids and bids[0].price >= price:
            if bids[0].price > price or touch is not False:
                self._fill_side(book, bids, trade.qty, price, touch, trade.ts, events)
        if asks and asks[0].price <= price:
            if asks[0].price < price or touch is not False:
                self._fill_side(book, asks, trade.qty, price, touch, trade.ts, events)
        return events

    def on_event(self, event: Event) -> list[Event]:
        """Dispatch a market event (Quote or Trade); other events give nothing."""
        if type(event) is Quote:
            return self.on_quote(event)
        if type(event) is Trade:
            return self.on_trade(event)
        return []
