"""A scriptable in-memory :class:`Exchange` for tests and benchmarks (the test double shipped
with the package, as httpx ships ``MockTransport``).

:class:`FakeExchange` lists the symbols it is given (specs from :func:`spec`), acknowledges
every placement at once (the answer is returned and a ``NEW`` report goes on the event
stream), cancels on request (``CANCELED`` on the stream) and never matches: nothing fills
unless the test says so. There is no market data but what the test puts on the stream::

    fake = FakeExchange(["AAA/USDT"])
    async with open_orchestrator(fake, config, limiter=Limiter(config.limiter)) as orch:
        await orch.add_symbol("AAA/USDT")
        fake.inject(Quote(symbol="AAA/USDT", bid=D("10.00"), bid_qty=D(5),
                          ask=D("10.02"), ask_qty=D(5), ts=1))
        ...
        assert len(fake.orders) == 3

How to script it:

* **events**: :meth:`FakeExchange.inject` puts any event (quote, trade, order or balance
  update, stream status) on the one stream the orchestrator reads; it never blocks.
  :meth:`FakeExchange.fill` fills (part of) an open order and reports it, as the venue's
  matching would.
* **scripted answers**: ``fake.fail_next("place", OutcomeUnknown("timed out"))`` makes the
  next ``place`` raise that error without reaching the venue; with ``applied=True`` the
  request is carried out first and only its answer is lost. Answers are used in the order
  given, per method (``place``, ``cancel``, ``query``). A scripted :class:`RateLimited`
  also pauses the limiter (if one is given) for its ``retry_after``, as the adapter that
  sees a 429 does.
* **anything else** (a request that hangs, lands late, a venue whose query view lags):
  subclass and override the method, calling ``super()`` for the default behaviour.
* **what happened**: ``placed`` (every placement that reached the venue, in order),
  ``orders`` (the open orders by client id), ``subscribed``.

Without a limiter no method yields to the scheduler (none has a checkpoint), so a test sees
the effect of each call at once. With ``limiter=`` every ``place`` and ``cancel`` first waits
for it, as the real adapters do (a placement withdrawn while it waits raises
:class:`PlaceWithdrawn` and is never sent).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

import trio
from msgspec.structs import replace

from mm_trio.core.orders import from_open_order
from mm_trio.domain.model import (
    Balance,
    Event,
    OpenOrder,
    OrderRequest,
    OrderUpdate,
    SymbolSpec,
    parse_symbol,
)
from mm_trio.exchange.base import (
    Exchange,
    ExchangeError,
    RateLimited,
    StillWanted,
    UnknownOrder,
    check_wanted,
    withdrawn_while_queued,
)
from mm_trio.exchange.limiter import Limiter, Withdrawn

__all__ = ["DEFAULT_BALANCES", "EVENT_BUFFER", "UNBOUNDED", "FakeExchange", "Scripted", "spec"]

EVENT_BUFFER = 10_000
"""Events the stream holds before :meth:`FakeExchange.inject` raises ``trio.WouldBlock``."""

UNBOUNDED = math.inf
"""A ``buffer`` for a stream that never refuses an event (benchmarks offering a fixed rate)."""

DEFAULT_BALANCES = {"USDT": Balance(asset="USDT", free=Decimal(100000), locked=Decimal(0))}

Scripted = Literal["place", "cancel", "query"]
_SCRIPTED: tuple[Scripted, ...] = ("place", "cancel", "query")


def spec(symbol: str, tick: str = "0.01", step: str = "0.0001") -> SymbolSpec:
    """A plain spec for ``symbol``: price tick ``tick``, size step (and minimum) ``step``,
    minimum notional 1."""
    base, quote = parse_symbol(symbol)
    return SymbolSpec(
        symbol=symbol,
        base=base,
        quote=quote,
        tick_size=Decimal(tick),
        step_size=Decimal(step),
        min_qty=Decimal(step),
        min_notional=Decimal("1"),
    )


@dataclass(frozen=True)
class _Answer:
    error: ExchangeError
    applied: bool


class FakeExchange(Exchange):
    """Acks every order (NEW on the stream), cancels on request; tests inject market events.

    ``symbols``: the listed symbols. ``limiter``: waited for before every place and cancel
    (none by default). ``balances``: what :meth:`balances` returns (100,000 USDT by
    default). ``buffer``: how many events the stream holds (:data:`UNBOUNDED`: no limit).
    """

    name = "fake"

    def __init__(
        self,
        symbols: Sequence[str],
        *,
        limiter: Limiter | None = None,
        balances: dict[str, Balance] | None = None,
        buffer: float = EVENT_BUFFER,
    ) -> None:
        self._specs = {s: spec(s) for s in symbols}
        self._limiter = limiter
        self._balances = dict(DEFAULT_BALANCES if balances is None else balances)
        self._send, self._recv = trio.open_memory_channel[Event](buffer)
        self._answers: dict[str, deque[_Answer]] = {m: deque() for m in _SCRIPTED}
        self._trade_ids = 0
        self.orders: dict[str, OpenOrder] = {}
        # every order ever placed, in its latest state (a venue answers queries of ended
        # orders too), and every fill of each, by client id
        self.history: dict[str, OpenOrder] = {}
        self.trades: dict[str, list[OrderUpdate]] = {}
        self.subscribed: set[str] = set()
        self.placed: list[OrderRequest] = []

    # ------------------------------------------------------------------ scripting
    def inject(self, event: Event) -> None:
        """Put ``event`` on the stream (never blocks)."""
        self._send.send_nowait(event)

    def fail_next(self, method: Scripted, error: ExchangeError, *, applied: bool = False) -> None:
        """The next call of ``method`` raises ``error``; ``applied``: after carrying it out
        (the request landed, its answer was lost). Queued after earlier scripted answers."""
        if method not in self._answers:
            raise ValueError(f"fail_next: {method!r} is not one of {', '.join(_SCRIPTED)}")
        if applied and method == "query":
            raise ValueError("fail_next: a query changes nothing, so it cannot be 'applied'")
        self._answers[method].append(_Answer(error, applied))

    def fill(
        self,
        client_id: str,
        qty: Decimal,
        price: Decimal | None = None,
        *,
        fee: Decimal = Decimal(0),
        fee_asset: str = "",
    ) -> OrderUpdate:
        """Fill ``qty`` of open order ``client_id`` (at its price unless ``price``) and report
        it on the stream; a fully filled order leaves :attr:`orders`. Returns the report."""
        order = self.orders.get(client_id)
        if order is None:
            raise UnknownOrder(f"fill: {client_id!r} is not an open order")
        cum = order.cum_qty + qty
        if qty <= 0 or cum > order.qty:
            raise ValueError(
                f"fill: {qty} of {client_id!r} ({order.cum_qty} of {order.qty} "
                "filled) is not a possible fill"
            )
        status: Literal["PARTIALLY_FILLED", "FILLED"] = (
            "FILLED" if cum == order.qty else "PARTIALLY_FILLED"
        )
        after = replace(order, cum_qty=cum, status=status)
        self.history[client_id] = after
        if status == "FILLED":
            del self.orders[client_id]
        else:
            self.orders[client_id] = after
        self._trade_ids += 1
        report = OrderUpdate(
            symbol=order.symbol,
            client_id=client_id,
            side=order.side,
            price=order.price,
            qty=order.qty,
            status=status,
            cum_qty=cum,
            last_qty=qty,
            last_price=order.price if price is None else price,
            fee=fee,
            fee_asset=fee_asset,
            trade_id=self._trade_ids,
            order_id=order.order_id,
            ts=order.ts,
        )
        self.trades.setdefault(client_id, []).append(report)
        self.inject(report)
        return report

    def expire(self, client_id: str) -> OpenOrder:
        """The venue ends open order ``client_id`` by itself (``EXPIRED``), reporting it."""
        order = self.orders.pop(client_id, None)
        if order is None:
            raise UnknownOrder(f"expire: {client_id!r} is not an open order")
        ended = self.history[client_id] = replace(order, status="EXPIRED")
        self.inject(from_open_order(ended))
        return ended

    def _next_answer(self, method: Scripted) -> _Answer | None:
        answers = self._answers[method]
        if not answers:
            return None
        answer = answers.popleft()
        if isinstance(answer.error, RateLimited) and self._limiter is not None:
            self._limiter.pause(answer.error.retry_after, reason=str(answer.error))
        return answer

    # ------------------------------------------------------------------ the Exchange
    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        await trio.sleep_forever()

    @property
    def events(self) -> trio.MemoryReceiveChannel[Event]:
        return self._recv

    async def load_specs(self) -> dict[str, SymbolSpec]:
        return dict(self._specs)

    async def subscribe(self, symbols: Sequence[str]) -> None:
        self.subscribed.update(symbols)

    async def unsubscribe(self, symbols: Sequence[str]) -> None:
        self.subscribed.difference_update(symbols)

    async def place(
        self, request: OrderRequest, *, still_wanted: StillWanted | None = None
    ) -> OpenOrder:
        if self._limiter is not None:
            check_wanted(request, still_wanted)
            try:
                await self._limiter.acquire(1, 1, still_wanted=still_wanted)
            except Withdrawn:
                raise withdrawn_while_queued(request) from None
        check_wanted(request, still_wanted)
        answer = self._next_answer("place")
        if answer is not None and not answer.applied:
            raise answer.error
        order = OpenOrder(
            symbol=request.symbol,
            client_id=request.client_id,
            order_id=str(len(self.placed)),
            side=request.side,
            price=request.price,
            qty=request.qty,
            cum_qty=Decimal(0),
            status="NEW",
            ts=self.now_ns(),
        )
        self.placed.append(request)
        self.orders[request.client_id] = self.history[request.client_id] = order
        self.inject(
            OrderUpdate(
                symbol=request.symbol,
                client_id=request.client_id,
                side=request.side,
                price=request.price,
                qty=request.qty,
                status="NEW",
            )
        )
        if answer is not None:
            raise answer.error
        return order

    async def cancel(self, symbol: str, client_id: str) -> OpenOrder:
        if self._limiter is not None:
            await self._limiter.acquire(1, cancel=True)
        answer = self._next_answer("cancel")
        if answer is not None and not answer.applied:
            raise answer.error
        order = self.orders.pop(client_id, None)
        if order is None:
            raise UnknownOrder("Unknown order sent.")
        order = self.history[client_id] = replace(order, status="CANCELED")
        self.inject(
            OrderUpdate(
                symbol=symbol,
                client_id=client_id,
                side=order.side,
                price=order.price,
                qty=order.qty,
                status="CANCELED",
                cum_qty=order.cum_qty,
            )
        )
        if answer is not None:
            raise answer.error
        return order

    async def query(self, symbol: str, client_id: str) -> OpenOrder:
        answer = self._next_answer("query")
        if answer is not None:
            raise answer.error
        try:
            return self.history[client_id]
        except KeyError:
            raise UnknownOrder("Order does not exist.") from None

    async def order_fills(self, order: OpenOrder) -> list[OrderUpdate]:
        return list(self.trades.get(order.client_id, ()))

    async def open_orders(self, symbol: str | None = None) -> list[OpenOrder]:
        return [o for o in self.orders.values() if symbol is None or o.symbol == symbol]

    async def balances(self) -> dict[str, Balance]:
        return dict(self._balances)
