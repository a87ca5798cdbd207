"""The order ledger of the paper venue: :class:`OrderRecord` per order, :class:`Account` per
API key.

Each account has its own :class:`~mm_trio.apps.paper.account_exchange.PaperAccountExchange`
(its own matching engine: resting orders and balances). The engine's events for an order
reach :meth:`Account.on_events` synchronously, in engine order, and become ledger updates and
user-data payloads (``executionReport`` / ``outboundAccountPosition``) before the call that
caused them returns, so a REST ``FULL`` response carries its fills and the user-data stream is
in engine order.

What the engine does not know and the ledger adds: Binance order ids (ints), order type and
time in force, creation/update times, cumulative quote quantity, trades (``myTrades``), and
``EXPIRED`` for MARKET/IOC remainders (the venue places them as limit orders at the touch and
cancels what did not fill at once).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from decimal import Decimal
from typing import Any

import attrs
import msgspec

from mm_trio.apps.paper.account_exchange import PaperAccountExchange
from mm_trio.apps.paper.auth import Credentials
from mm_trio.apps.paper.config import AccountConfig
from mm_trio.apps.paper.state import LedgerChanges, SavedAccount, VenueState, VenueStateError
from mm_trio.domain.config import SimVenueConfig
from mm_trio.domain.model import (
    ZERO,
    BalanceUpdate,
    Event,
    OpenOrder,
    OrderUpdate,
    SymbolSpec,
    native_symbol,
)
from mm_trio.exchange.base import UnknownSymbol
from mm_trio.exchange.binance.encode import encode_account_position, encode_execution_report
from mm_trio.exchange.binance.protocol import OPEN_STATUSES
from mm_trio.exchange.binance.protocol import fmt_fixed as fmt
from mm_trio.exchange.sim import MatchingEngine

__all__ = ["Account", "AccountJournal", "OrderRecord", "UserListener"]

_MS = 1_000_000  # ns -> ms

UserListener = Callable[[bytes], None]
"""Receives each user-data event payload (unwrapped ``executionReport`` etc. JSON)."""


@attrs.define(slots=True)
class OrderRecord:
    """Binance's view of one order (the engine keeps only price/qty/fills)."""

    symbol: str  # unified
    native: str
    order_id: int
    client_id: str
    side: str
    type: str
    tif: str
    price: Decimal  # 0 for MARKET
    orig_qty: Decimal
    time_ms: int
    orig_quote_qty: Decimal = ZERO
    executed: Decimal = ZERO
    cum_quote: Decimal = ZERO
    status: str = "NEW"
    update_ms: int = 0
    expire_on_cancel: bool = False  # MARKET / IOC remainder: report EXPIRED, not CANCELED
    cancel_client_id: str | None = None
    fills: list[dict[str, Any]] = attrs.field(factory=list)
    book_price: Decimal = ZERO  # where the engine rests it (a MARKET order: through the touch)

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES

    def ack(self) -> dict[str, Any]:
        return {
            "symbol": self.native,
            "orderId": self.order_id,
            "orderListId": -1,
            "clientOrderId": self.client_id,
            "transactTime": self.time_ms,
        }

    def result(self) -> dict[str, Any]:
        out = self.ack()
        out.update(
            {
                "price": fmt(self.price),
                "origQty": fmt(self.orig_qty),
                "executedQty": fmt(self.executed),
                "origQuoteOrderQty": fmt(self.orig_quote_qty),
                "cummulativeQuoteQty": fmt(self.cum_quote),
                "status": self.status,
                "timeInForce": self.tif,
                "type": self.type,
                "side": self.side,
                "workingTime": self.time_ms,
                "selfTradePreventionMode": "NONE",
            }
        )
        return out

    def full(self) -> dict[str, Any]:
        out = self.result()
        out["fills"] = list(self.fills)
        return out

    def reply(self, resp: str) -> dict[str, Any]:
        """The new-order response of type ``resp`` (``ACK``, ``RESULT`` or ``FULL``)."""
        if resp == "ACK":
            return self.ack()
        if resp == "RESULT":
            return self.result()
        return self.full()

    def query(self) -> dict[str, Any]:
        return {
            "symbol": self.native,
            "orderId": self.order_id,
            "orderListId": -1,
            "clientOrderId": self.client_id,
            "price": fmt(self.price),
            "origQty": fmt(self.orig_qty),
            "executedQty": fmt(self.executed),
            "cummulativeQuoteQty": fmt(self.cum_quote),
            "status": self.status,
            "timeInForce": self.tif,
            "type": self.type,
            "side": self.side,
            "stopPrice": fmt(ZERO),
            "icebergQty": fmt(ZERO),
            "time": self.time_ms,
            "updateTime": self.update_ms or self.time_ms,
            "isWorking": True,
            "workingTime": self.time_ms,
            "origQuoteOrderQty": fmt(self.orig_quote_qty),
            "selfTradePreventionMode": "NONE",
        }

    def cancel_reply(self) -> dict[str, Any]:
        return {
            "symbol": self.native,
            "origClientOrderId": self.client_id,
            "orderId": self.order_id,
            "orderListId": -1,
            "clientOrderId": self.cancel_client_id or self.client_id,
            "transactTime": self.update_ms or self.time_ms,
            "price": fmt(self.price),
            "origQty": fmt(self.orig_qty),
            "executedQty": fmt(self.executed),
            "origQuoteOrderQty": fmt(self.orig_quote_qty),
            "cummulativeQuoteQty": fmt(self.cum_quote),
            "status": self.status,
            "timeInForce": self.tif,
            "type": self.type,
            "side": self.side,
            "selfTradePreventionMode": "NONE",
        }


class AccountJournal:
    """Where one account's ledger changes are saved (its rows of the venue state file)."""

    def __init__(
        self,
        state: VenueState,
        api_key: str,
        on_failure: Callable[[VenueStateError], None] | None = None,
    ) -> None:
        self.state = state
        self.api_key = api_key
        self.on_failure = on_failure

    def commit(self, changes: LedgerChanges, acct: Account) -> None:
        """Save ``changes``; a failure is reported to ``on_failure`` and raised."""
        try:
            self.state.commit(
                self.api_key,
                changes,
                next_ids=acct.engine.next_ids(),
                update_ms=acct.last_update_ms,
                balances=acct.balance_amounts(changes.assets),
            )
        except VenueStateError as exc:
            if self.on_failure is not None:
                self.on_failure(exc)
            raise


class Account:
    """One API key: its simulated exchange, order ledger and user-data listeners.

    ``on_market`` is given to the primary account only: its exchange runs the venue clock and
    feed (``feed``), and every market event it produces is passed on through ``on_market``.
    ``max_orders_kept``: finished orders beyond this many are forgotten (oldest first).
    """

    def __init__(
        self,
        config: AccountConfig,
        sim_config: SimVenueConfig,
        *,
        epoch_ns: int,
        max_orders_kept: int,
        on_market: Callable[[Event], None] | None = None,
        feed: Any = None,
        extra_specs: dict[str, tuple[SymbolSpec, Decimal]] | None = None,
    ) -> None:
        self.api_key = config.api_key
        self.credentials = Credentials(config)
        self.max_orders_kept = max_orders_kept
        if config.balances is not None:
            sim_config = attrs.evolve(sim_config, balances=dict(config.balances))
        self.sim = PaperAccountExchange(
            sim_config, epoch_ns=epoch_ns, on_account=self.on_events, on_market=on_market, feed=feed
        )
        self.engine: MatchingEngine = self.sim.engine
        for spec, price in (extra_specs or {}).values():  # recorded symbols
            self.engine.add_symbol(spec, price, replace=True)
        self.orders: OrderedDict[int, OrderRecord] = OrderedDict()
        self.by_cid: dict[tuple[str, str], int] = {}
        self.trades: dict[str, list[dict[str, Any]]] = {}
        self.pending: dict[tuple[str, str], OrderRecord] = {}
        self.listeners: set[UserListener] = set()
        self.last_update_ms = 0
        self.journal: AccountJournal | None = None
        self._changes: LedgerChanges | None = None  # of the engine call being applied

    def __repr__(self) -> str:
        return f"Account(api_key={self.api_key!r})"

    # ------------------------------------------------------------------ events
    def on_events(self, events: Sequence[Event]) -> None:
        """Engine events (synchronously, in engine order) -> ledger and user-data stream.

        With a :attr:`journal`, the ledger's changes are saved (one transaction) before any
        user-data payload goes out: what a client heard of survives a crash.
        """
        payloads: list[bytes] = []
        balances: dict[str, BalanceUpdate] = {}
        changes = self._changes = LedgerChanges() if self.journal is not None else None
        try:
            for ev in events:
                if type(ev) is OrderUpdate:
                    if balances:
                        self._on_balances(balances, payloads)
                        balances = {}
                    self._on_order(ev, payloads)
                elif type(ev) is BalanceUpdate:
                    balances[ev.asset] = ev
            if balances:
                self._on_balances(balances, payloads)
        finally:
            self._changes = None
        if changes and self.journal is not None:
            self.journal.commit(changes, self)
        for payload in payloads:
            self._emit(payload)

    def _on_balances(self, balances: dict[str, BalanceUpdate], payloads: list[bytes]) -> None:
        items = list(balances.values())
        self.last_update_ms = items[-1].ts // _MS
        if self._changes is not None:
            self._changes.assets.update(balances)
        if self.listeners:
            payloads.append(encode_account_position(items))

    def _emit(self, payload: bytes) -> None:
        for listener in list(self.listeners):
            listener(payload)

    def _record_of(self, u: OrderUpdate, ms: int) -> OrderRecord:
        """The record of the order ``u`` is about; a new order's enters the ledger."""
        oid = int(u.order_id)
        rec = self.orders.get(oid)
        if rec is not None:
            return rec
        key = (u.symbol, u.client_id)
        rec = self.pending.pop(key, None)
        if rec is None:  # placed around the venue API (e.g. a test poking the engine)
            rec = OrderRecord(
                symbol=u.symbol,
                native=native_symbol(u.symbol),
                order_id=oid,
                client_id=u.client_id,
                side=u.side,
                type="LIMIT",
                tif="GTC",
                price=u.price,
                orig_qty=u.qty,
                time_ms=ms,
            )
        rec.order_id = oid
        rec.time_ms = ms
        rec.book_price = u.price
        self.orders[oid] = rec
        self.by_cid[key] = oid
        self._trim()
        return rec

    def _on_order(self, u: OrderUpdate, payloads: list[bytes]) -> None:
        ms = u.ts // _MS
        rec = self._record_of(u, ms)
        rec.executed = u.cum_qty
        rec.update_ms = ms
        status = u.status
        if status == "CANCELED" and rec.expire_on_cancel:
            status = "EXPIRED"
        rec.status = status
        if u.last_qty > 0:
            self._on_fill(rec, u, ms)
        if self._changes is not None:
            self._changes.orders[rec.order_id] = rec
        if self.listeners:
            payloads.append(self._execution_report(rec, u, status))

    def _on_fill(self, rec: OrderRecord, u: OrderUpdate, ms: int) -> None:
        quote_qty = u.last_qty * u.last_price
        rec.cum_quote += quote_qty
        trade_id = u.trade_id if u.trade_id is not None else 0
        rec.fills.append(
            {
                "price": fmt(u.last_price),
                "qty": fmt(u.last_qty),
                "commission": fmt(u.fee),
                "commissionAsset": u.fee_asset,
                "tradeId": trade_id,
            }
        )
        trade = {
            "symbol": rec.native,
            "id": trade_id,
            "orderId": rec.order_id,
            "orderListId": -1,
            "price": fmt(u.last_price),
            "qty": fmt(u.last_qty),
            "quoteQty": fmt(quote_qty),
            "commission": fmt(u.fee),
            "commissionAsset": u.fee_asset,
            "time": ms,
            "isBuyer": rec.side == "BUY",
            "isMaker": u.maker,
            "isBestMatch": True,
        }
        self.trades.setdefault(u.symbol, []).append(trade)
        if self._changes is not None:
            self._changes.trades.append((u.symbol, trade))

    @staticmethod
    def _execution_report(rec: OrderRecord, u: OrderUpdate, status: str) -> bytes:
        if status != u.status:
            u = msgspec.structs.replace(u, status=status)
        return encode_execution_report(
            u,
            native=rec.native,
            order_type=rec.type,
            cancel_client_id=rec.cancel_client_id,
            time_in_force=rec.tif,
            order_price=rec.price,
            order_qty=rec.orig_qty,
            cum_quote_qty=rec.cum_quote,
            order_time_ms=rec.time_ms,
            quote_order_qty=rec.orig_quote_qty,
            stp_mode="NONE",
        )

    def _trim(self) -> None:
        orders = self.orders
        while len(orders) > self.max_orders_kept:
            oid, rec = next(iter(orders.items()))
            if rec.is_open:
                orders.move_to_end(oid)
                break
            del orders[oid]
            if self.by_cid.get((rec.symbol, rec.client_id)) == oid:
                del self.by_cid[(rec.symbol, rec.client_id)]
            if self._changes is not None:
                self._changes.orders.pop(oid, None)
                self._changes.forgotten.append(oid)

    # ------------------------------------------------------------------ saved state
    def balance_amounts(
        self, assets: Iterable[str] | None = None
    ) -> dict[str, tuple[Decimal, Decimal]]:
        """Free and locked of ``assets`` (every asset if ``None``), as the engine has them."""
        engine = self.engine
        if assets is None:
            return {a: (b.free, b.locked) for a, b in engine.balances().items()}
        return {a: (b.free, b.locked) for a in assets for b in (engine.balance(a),)}

    def restore(self, saved: SavedAccount) -> None:
        """Continue from ``saved`` (before the venue serves anything): balances, id counters,
        orders (the open ones resting again in the engine, in their time priority), trades.

        Raises :class:`~mm_trio.apps.paper.state.VenueStateError` if an open order cannot go
        back into the engine (its symbol is not listed any more, e.g. after a config change).
        """
        resting = []
        for rec in saved.orders:
            self.orders[rec.order_id] = rec
            self.by_cid[(rec.symbol, rec.client_id)] = rec.order_id  # the latest id wins
            if rec.is_open:
                resting.append(
                    OpenOrder(
                        symbol=rec.symbol,
                        client_id=rec.client_id,
                        order_id=str(rec.order_id),
                        side="BUY" if rec.side == "BUY" else "SELL",
                        price=rec.book_price,
                        qty=rec.orig_qty,
                        cum_qty=rec.executed,
                        status="PARTIALLY_FILLED" if rec.executed > 0 else "NEW",
                        ts=(rec.update_ms or rec.time_ms) * _MS,
                    )
                )
        for symbol, trade in saved.trades:
            self.trades.setdefault(symbol, []).append(trade)
        self.last_update_ms = saved.update_ms
        try:
            self.engine.restore(
                balances=saved.balances,
                next_order_id=saved.next_order_id,
                next_trade_id=saved.next_trade_id,
                resting=resting,
            )
        except (UnknownSymbol, ValueError) as exc:
            raise VenueStateError(
                f"account {self.api_key!r}: a saved open order cannot rest again: {exc}"
            ) from None

    def settle_restored(self, ts: int) -> None:
        """After :meth:`restore`, with the journal attached: expire a MARKET / IOC order the
        venue was stopped between placing and expiring (it must not rest), and forget the
        finished orders beyond ``max_orders_kept``. Both are saved."""
        for rec in [r for r in self.orders.values() if r.is_open and r.expire_on_cancel]:
            _, events = self.engine.cancel(rec.symbol, rec.client_id, ts)
            self.on_events(events)
        changes = self._changes = LedgerChanges()
        try:
            self._trim()
        finally:
            self._changes = None
        if changes and self.journal is not None:
            self.journal.commit(changes, self)

    # ------------------------------------------------------------------ lookups
    def find(self, symbol: str, order_id: int | None, client_id: str | None) -> OrderRecord | None:
        if order_id is not None:
            rec = self.orders.get(order_id)
            if rec is None or rec.symbol != symbol:
                return None
            if client_id is not None and rec.client_id != client_id:
                return None
            return rec
        if client_id is not None:
            oid = self.by_cid.get((symbol, client_id))
            return None if oid is None else self.orders.get(oid)
        return None

    def open_records(self, symbol: str | None) -> list[OrderRecord]:
        out: list[OrderRecord] = []
        for o in self.engine.open_orders(symbol):
            oid = self.by_cid.get((o.symbol, o.client_id))
            rec = None if oid is None else self.orders.get(oid)
            if rec is not None and rec.is_open:
                out.append(rec)
        return out
