"""Pure matching engine of the simulated venue (SPEC §7).

No trio, no clock reads, no I/O: every call takes the time ``ts`` (integer ns) it happens at,
and the only randomness (the probabilistic queue model) comes from a ``random.Random`` passed
in, so the same calls give the same results.

What it models
--------------
* A registry of symbols (:class:`SymbolSpec` each), built-in majors with Binance-like rules
  plus ``SimVenueConfig.extra_symbols`` whose rules are derived from their start price.
* Balances per asset (free / locked). A BUY locks ``price * qty`` of the quote asset; a SELL
  locks ``qty`` of the base asset. Locks are released exactly on fill and cancel.
* Our resting limit orders, in price-time priority. Venue-like classified errors on place
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
from bisect import insort
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from decimal import ROUND_HALF_UP, Decimal

from mm_trio.domain.config import SimVenueConfig
from mm_trio.domain.model import (
    ZERO,
    Balance,
    BalanceUpdate,
    Event,
    OpenOrder,
    OrderRequest,
    OrderUpdate,
    Quote,
    Side,
    SymbolError,
    SymbolSpec,
    Trade,
    floor_to,
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

FEE_QUANTUM = Decimal("1e-8")
"""Fees are rounded to this many decimals (ROUND_HALF_UP)."""

STABLE_QUOTES: frozenset[str] = frozenset({"USDT", "USDC", "FDUSD", "BUSD", "TUSD", "DAI", "USD"})
"""Quote assets worth about one US dollar (used for default balances and min notional)."""

_MIN_NOTIONAL_BY_QUOTE: dict[str, Decimal] = {
    "BTC": Decimal("0.0001"),
    "ETH": Decimal("0.001"),
    "BNB": Decimal("0.01"),
    **{q: Decimal(5) for q in STABLE_QUOTES},
}

# symbol: (start price, tick size, step size) -- Binance-like rules, plausible start prices
BUILTIN_SYMBOLS: dict[str, tuple[str, str, str]] = {
    "BTC/USDT": ("60000", "0.01", "0.00001"),
    "ETH/USDT": ("3000", "0.01", "0.0001"),
    "BNB/USDT": ("550", "0.01", "0.001"),
    "SOL/USDT": ("150", "0.01", "0.001"),
    "XRP/USDT": ("0.55", "0.0001", "0.1"),
    "DOGE/USDT": ("0.15", "0.00001", "1"),
    "ADA/USDT": ("0.45", "0.0001", "0.1"),
    "LTC/USDT": ("80", "0.01", "0.001"),
    "AVAX/USDT": ("30", "0.01", "0.01"),
    "LINK/USDT": ("15", "0.01", "0.01"),
    "DOT/USDT": ("6", "0.001", "0.01"),
    "TRX/USDT": ("0.12", "0.0001", "0.1"),
    "BTC/USDC": ("60000", "0.01", "0.00001"),
    "ETH/USDC": ("3000", "0.01", "0.0001"),
    "ETH/BTC": ("0.05", "0.00001", "0.0001"),
    "BNB/BTC": ("0.009", "0.000001", "0.001"),
    "SOL/BTC": ("0.0025", "0.0000001", "0.001"),
}

# Binance error codes, for callers that log them
CODE_FILTER = -1013
CODE_REJECTED = -2010
CODE_UNKNOWN_ORDER_CANCEL = -2011
CODE_UNKNOWN_ORDER_QUERY = -2013
CODE_BAD_SYMBOL = -1121

_MAX_DONE_ORDERS = 100_000


def min_notional_for(quote: str) -> Decimal:
    """Binance-like minimum notional for a quote asset (0 if unknown)."""
    return _MIN_NOTIONAL_BY_QUOTE.get(quote, ZERO)


def derive_spec(symbol: str, price: Decimal, *, max_orders: int = 200) -> SymbolSpec:
    """Plausible trading rules for ``symbol`` trading around ``price``.

    The tick gives about six significant digits of price; the step makes one step worth
    between 0.1 and 1 quote unit (60000 → tick 0.1, step 0.00001; 0.15 → tick 0.000001, step 1).
    """
    base, quote = parse_symbol(symbol)
    if price <= 0:
        raise ValueError(f"start price of {symbol} must be > 0, got {price}")
    exp = price.adjusted()
    tick = Decimal(10) ** (exp - 5)
    step = Decimal(10) ** (-exp - 1)
    return _make_spec(symbol, base, quote, tick, step, min_notional_for(quote), max_orders)


def _make_spec(symbol: str, base: str, quote: str, tick: Decimal, step: Decimal,
               min_notional: Decimal, max_orders: int) -> SymbolSpec:
    return SymbolSpec(
        symbol=symbol, base=base, quote=quote, tick_size=tick, step_size=step,
        min_price=tick, max_price=max(Decimal(1000000), tick * 10**10),
        min_qty=step, max_qty=max(Decimal(9000000), step * 10**9),
        min_notional=min_notional, max_orders=max_orders,
    )


def build_registry(config: SimVenueConfig) -> tuple[dict[str, SymbolSpec], dict[str, Decimal]]:
    """Specs and start prices of every symbol the venue lists (built-ins, then extras).

    An extra symbol that is also built in only overrides the start price.
    """
    specs: dict[str, SymbolSpec] = {}
    prices: dict[str, Decimal] = {}
    for symbol, (price, tick, step) in BUILTIN_SYMBOLS.items():
        base, quote = parse_symbol(symbol)
        specs[symbol] = _make_spec(symbol, base, quote, Decimal(tick), Decimal(step),
                                   min_notional_for(quote), config.max_orders)
        prices[symbol] = Decimal(price)
    for symbol, price in config.extra_symbols.items():
        price = Decimal(price)
        if symbol not in specs:
            specs[symbol] = derive_spec(symbol, price, max_orders=config.max_orders)
        tick = specs[symbol].tick_size
        prices[symbol] = max(floor_to(price, tick), tick)
    return specs, prices


def _usd_price(asset: str, prices: Mapping[str, Decimal], depth: int = 0) -> Decimal | None:
    """Rough dollar value of one ``asset`` from start prices (None if not derivable)."""
    if asset in STABLE_QUOTES:
        return Decimal(1)
    if depth > 1:
        return None
    for symbol, price in prices.items():
        base, quote = symbol.split("/")
        if base == asset and quote in STABLE_QUOTES:
            return price
    for symbol, price in prices.items():
        base, quote = symbol.split("/")
        if base == asset:
            q = _usd_price(quote, prices, depth + 1)
            if q is not None:
                return price * q
    return None


def starting_balances(config: SimVenueConfig, specs: Mapping[str, SymbolSpec],
                      prices: Mapping[str, Decimal]) -> dict[str, Decimal]:
    """Starting balance of every asset the registry mentions.

    Assets in ``config.balances`` start with that amount. Any other base asset starts with
    ``default_base_balance_quote_value`` (taken as dollars) worth at its start price, rounded
    down to the step of its first symbol; another stablecoin quote starts with that many units;
    any other asset starts at zero.
    """
    out: dict[str, Decimal] = {a: Decimal(v) for a, v in config.balances.items()}
    value = Decimal(config.default_base_balance_quote_value)
    for symbol, spec in specs.items():
        for asset in (spec.base, spec.quote):
            if asset in out:
                continue
            if asset in STABLE_QUOTES:
                out[asset] = value
            elif asset == spec.base:
                usd = _usd_price(asset, prices)
                if usd is None:  # priced only in an unknown quote: value in that quote
                    usd = prices[symbol]
                out[asset] = floor_to(value / usd, spec.step_size) if usd > 0 else ZERO
            else:
                out[asset] = ZERO
    return out


class _Order:
    """A resting order (mutable, internal)."""

    __slots__ = ("symbol", "client_id", "order_id", "side", "is_buy", "price", "qty", "cum_qty",
                 "status", "ts", "seq")

    def __init__(self, symbol: str, client_id: str, order_id: str, side: Side, price: Decimal,
                 qty: Decimal, ts: int, seq: int) -> None:
        self.symbol = symbol
        self.client_id = client_id
        self.order_id = order_id
        self.side: Side = side
        self.is_buy = side == "BUY"
        self.price = price
        self.qty = qty
        self.cum_qty = ZERO
        self.status = "NEW"
        self.ts = ts
        self.seq = seq

    def snapshot(self) -> OpenOrder:
        return OpenOrder(symbol=self.symbol, client_id=self.client_id, order_id=self.order_id,
                         side=self.side, price=self.price, qty=self.qty, cum_qty=self.cum_qty,
                         status=self.status, ts=self.ts)  # type: ignore[arg-type]


def _bid_key(o: _Order) -> tuple[Decimal, int]:
    return (-o.price, o.seq)


def _ask_key(o: _Order) -> tuple[Decimal, int]:
    return (o.price, o.seq)


class _Book:
    """Per-symbol state: our resting orders in priority order and the latest market data."""

    __slots__ = ("spec", "base", "quote", "bids", "asks", "by_cid", "last_quote", "last_trade",
                 "bid_avail", "ask_avail")

    def __init__(self, spec: SymbolSpec) -> None:
        self.spec = spec
        self.base = spec.base
        self.quote = spec.quote
        self.bids: list[_Order] = []  # our BUYs, best (highest) price first, then time
        self.asks: list[_Order] = []  # our SELLs, best (lowest) price first, then time
        self.by_cid: dict[str, _Order] = {}
        self.last_quote: Quote | None = None
        self.last_trade: Trade | None = None
        self.bid_avail = ZERO  # displayed bid qty not yet used up by our fills
        self.ask_avail = ZERO


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
        self._books: dict[str, _Book] = {s: _Book(spec) for s, spec in specs.items()}
        # asset -> [free, locked]
        self._bal: dict[str, list[Decimal]] = {
            a: [v, ZERO] for a, v in starting_balances(config, specs, prices).items()
        }
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
    def add_symbol(self, spec: SymbolSpec, start_price: Decimal, *,
                   replace: bool = False) -> None:
        """List another symbol (e.g. one found in a recording). Idempotent per symbol unless
        ``replace`` (then a listed symbol without resting orders gets the new spec)."""
        book = self._books.get(spec.symbol)
        if book is not None and (not replace or book.by_cid):
            return
        self.specs[spec.symbol] = spec
        self.start_prices[spec.symbol] = start_price
        self._books[spec.symbol] = _Book(spec)
        for asset in (spec.base, spec.quote):
            self._bal.setdefault(asset, [ZERO, ZERO])

    def spec(self, symbol: str) -> SymbolSpec:
        """The spec of a listed symbol; :class:`UnknownSymbol` naming it otherwise."""
        return self._book(symbol).spec

    def _book(self, symbol: str) -> _Book:
        book = self._books.get(symbol)
        if book is None:
            try:
                parse_symbol(symbol)
            except SymbolError as exc:
                raise UnknownSymbol(str(exc), code=CODE_BAD_SYMBOL) from None
            raise UnknownSymbol(f"Invalid symbol: {symbol} is not listed",
                                code=CODE_BAD_SYMBOL)
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
            books: Iterable[_Book] = (self._book(symbol),)
        else:
            books = self._books.values()
        out = [o for b in books for o in b.by_cid.values()]
        out.sort(key=lambda o: o.seq)
        return [o.snapshot() for o in out]

    def open_count(self, symbol: str) -> int:
        return len(self._book(symbol).by_cid)

    def balances(self) -> dict[str, Balance]:
        return {a: Balance(asset=a, free=fl[0], locked=fl[1]) for a, fl in self._bal.items()}

    def balance(self, asset: str) -> Balance:
        fl = self._bal.get(asset, [ZERO, ZERO])
        return Balance(asset=asset, free=fl[0], locked=fl[1])

    def _bal_event(self, asset: str, ts: int) -> BalanceUpdate:
        fl = self._bal[asset]
        return BalanceUpdate(asset=asset, free=fl[0], locked=fl[1], ts=ts)

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
            raise TooManyOrders(f"Filter failure: MAX_NUM_ORDERS ({spec.max_orders} open on "
                                f"{request.symbol})", code=CODE_FILTER)
        q = book.last_quote
        is_buy = side == "BUY"
        crosses = q is not None and (price >= q.ask if is_buy else price <= q.bid)
        if crosses and request.post_only:
            raise WouldTake("Order would immediately match and take.", code=CODE_REJECTED)
        lock_asset = book.quote if is_buy else book.base
        lock_amount = price * qty if is_buy else qty
        fl = self._bal.get(lock_asset)
        if fl is None or fl[0] < lock_amount:
            raise InsufficientBalance("Account has insufficient balance for requested action.",
                                      code=CODE_REJECTED)
        fl[0] -= lock_amount
        fl[1] += lock_amount
        order_id = str(self._next_order_id)
        self._next_order_id += 1
        self._seq += 1
        order = _Order(request.symbol, request.client_id, order_id, side, price, qty, ts,
                       self._seq)
        events: list[Event] = [
            OrderUpdate(symbol=order.symbol, client_id=order.client_id, side=side, price=price,
                        qty=qty, status="NEW", order_id=order_id, ts=ts),
            self._bal_event(lock_asset, ts),
        ]
        if crosses and q is not None:
            # take liquidity at the book price, at most what is displayed and not used up
            if is_buy:
                take = min(qty, book.ask_avail)
                if take > 0:
                    book.ask_avail -= take
                    self._fill(book, order, take, q.ask, False, ts, events)
            else:
                take = min(qty, book.bid_avail)
                if take > 0:
                    book.bid_avail -= take
                    self._fill(book, order, take, q.bid, False, ts, events)
        if order.cum_qty < qty:
            book.by_cid[order.client_id] = order
            if is_buy:
                insort(book.bids, order, key=_bid_key)
            else:
                insort(book.asks, order, key=_ask_key)
        else:
            self._finish(order)
        return order.snapshot(), events

    def cancel(self, symbol: str, client_id: str, ts: int) -> tuple[OpenOrder, list[Event]]:
        """Cancel an open order: ``CANCELED`` (with cum_qty so far) and the released balance."""
        book = self._book(symbol)
        order = book.by_cid.pop(client_id, None)
        if order is None:
            raise UnknownOrder("Unknown order sent.", code=CODE_UNKNOWN_ORDER_CANCEL)
        leaves = order.qty - order.cum_qty
        if order.is_buy:
            book.bids.remove(order)
            asset, amount = book.quote, order.price * leaves
        else:
            book.asks.remove(order)
            asset, amount = book.base, leaves
        fl = self._bal[asset]
        fl[0] += amount
        fl[1] -= amount
        order.status = "CANCELED"
        order.ts = ts
        snap = self._finish(order)
        events: list[Event] = [
            OrderUpdate(symbol=symbol, client_id=client_id, side=order.side, price=order.price,
                        qty=order.qty, status="CANCELED", cum_qty=order.cum_qty,
                        order_id=order.order_id, ts=ts),
            self._bal_event(asset, ts),
        ]
        return snap, events

    def _finish(self, order: _Order) -> OpenOrder:
        snap = order.snapshot()
        key = (order.symbol, order.client_id)
        done = self._done
        done[key] = snap
        done.move_to_end(key)
        if len(done) > _MAX_DONE_ORDERS:
            done.popitem(last=False)
        return snap

    def _fill(self, book: _Book, order: _Order, qty: Decimal, price: Decimal, maker: bool,
              ts: int, events: list[Event]) -> None:
        """Apply one fill of ``qty`` at ``price`` to ``order`` and append its events."""
        notional = price * qty
        fee = (notional * (self.maker_fee if maker else self.taker_fee)).quantize(
            FEE_QUANTUM, rounding=ROUND_HALF_UP)
        base = self._bal[book.base]
        quote = self._bal[book.quote]
        if order.is_buy:
            base[0] += qty
            locked = order.price * qty
            quote[1] -= locked
            quote[0] += locked - notional - fee
        else:
            base[1] -= qty
            quote[0] += notional - fee
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
        events.append(OrderUpdate(
            symbol=order.symbol, client_id=order.client_id, side=order.side, price=order.price,
            qty=order.qty, status=order.status, cum_qty=order.cum_qty,  # type: ignore[arg-type]
            last_qty=qty, last_price=price, fee=fee, fee_asset=book.quote, trade_id=trade_id,
            order_id=order.order_id, maker=maker, ts=ts))
        events.append(BalanceUpdate(asset=book.base, free=base[0], locked=base[1], ts=ts))
        events.append(BalanceUpdate(asset=book.quote, free=quote[0], locked=quote[1], ts=ts))

    def _fill_side(self, book: _Book, orders: list[_Order], budget: Decimal, limit: Decimal,
                   touch: bool | None, ts: int, events: list[Event]) -> Decimal:
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
            book.ask_avail = self._fill_side(book, bids, quote.ask_qty, quote.ask, True,
                                             quote.ts, events)
        if asks and asks[0].price <= quote.bid:
            book.bid_avail = self._fill_side(book, asks, quote.bid_qty, quote.bid, True,
                                             quote.ts, events)
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
