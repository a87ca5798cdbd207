"""A scriptable in-memory Exchange for orchestrator tests (no matching, full control)."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

import trio

from mm_trio.domain.model import (
    Balance,
    Event,
    OpenOrder,
    OrderRequest,
    OrderUpdate,
    SymbolSpec,
    parse_symbol,
)
from mm_trio.exchange.base import Exchange, StillWanted, UnknownOrder, check_wanted


def spec(symbol: str, tick: str = "0.01", step: str = "0.0001") -> SymbolSpec:
    base, quote = parse_symbol(symbol)
    return SymbolSpec(symbol=symbol, base=base, quote=quote, tick_size=Decimal(tick),
                      step_size=Decimal(step), min_qty=Decimal(step), min_notional=Decimal("1"))


class FakeExchange(Exchange):
    """Acks every order (NEW on the stream), cancels on request; tests inject market events."""

    name = "fake"

    def __init__(self, symbols: Sequence[str]) -> None:
        self._specs = {s: spec(s) for s in symbols}
        self._send, self._recv = trio.open_memory_channel[Event](10_000)
        self.orders: dict[str, OpenOrder] = {}
        self.subscribed: set[str] = set()
        self.placed: list[OrderRequest] = []

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        await trio.sleep_forever()

    @property
    def events(self) -> trio.MemoryReceiveChannel[Event]:
        return self._recv

    def inject(self, event: Event) -> None:
        self._send.send_nowait(event)

    async def load_specs(self) -> dict[str, SymbolSpec]:
        return dict(self._specs)

    async def subscribe(self, symbols: Sequence[str]) -> None:
        self.subscribed.update(symbols)

    async def unsubscribe(self, symbols: Sequence[str]) -> None:
        self.subscribed.difference_update(symbols)

    async def place(self, request: OrderRequest, *,
                    still_wanted: StillWanted | None = None) -> OpenOrder:
        check_wanted(request, still_wanted)
        order = OpenOrder(symbol=request.symbol, client_id=request.client_id,
                          order_id=str(len(self.placed)), side=request.side,
                          price=request.price, qty=request.qty, cum_qty=Decimal(0),
                          status="NEW")
        self.placed.append(request)
        self.orders[request.client_id] = order
        self.inject(OrderUpdate(symbol=request.symbol, client_id=request.client_id,
                                side=request.side, price=request.price, qty=request.qty,
                                status="NEW"))
        return order

    async def cancel(self, symbol: str, client_id: str) -> OpenOrder:
        order = self.orders.pop(client_id, None)
        if order is None:
            raise UnknownOrder("Unknown order sent.")
        self.inject(OrderUpdate(symbol=symbol, client_id=client_id, side=order.side,
                                price=order.price, qty=order.qty, status="CANCELED",
                                cum_qty=order.cum_qty))
        return order

    async def query(self, symbol: str, client_id: str) -> OpenOrder:
        try:
            return self.orders[client_id]
        except KeyError:
            raise UnknownOrder("Order does not exist.") from None

    async def open_orders(self, symbol: str | None = None) -> list[OpenOrder]:
        return [o for o in self.orders.values() if symbol is None or o.symbol == symbol]

    async def balances(self) -> dict[str, Balance]:
        return {"USDT": Balance(asset="USDT", free=Decimal(100000), locked=Decimal(0))}
