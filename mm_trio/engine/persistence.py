"""The running trader's writes to its state store (SPEC §9): persist, then act.

:class:`Persistence` is what the engine calls at the moments that change state:

* an order intent, journalled *before* its request is sent (``IntentGate.dispatch``);
* a cancel we decided on;
* every report of ours, with the fill it carries, journalled *before* the strategy, the
  position and the risk monitor see it (one transaction: the event and the fill);
* the symbol registry (config, anchor, state) and the latches (kill switch, loss limits).

Quotes and trades of the market are never written: only what changes our state is.

A report that ends an order whose cumulative quantity its journalled fills do not reach
yet (a status report that overtook a trade report, or fills a query could not fetch) is
journalled as *fills pending*, which the store does not count as terminal: a restart then
resolves the order and fetches its trades. Once the missing fills arrive the order is
ended in the journal.

A failing write raises :class:`~mm_trio.store.StoreError` into the caller: the symbol fails
(and cancels its orders) rather than trade on state it could not persist.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Decimal

from mm_trio.domain.config import GridConfig, grid_to_dict
from mm_trio.domain.ids import parse_client_id
from mm_trio.domain.model import TERMINAL_STATUSES, ZERO, OrderRequest, OrderUpdate
from mm_trio.store import Fill, StateStore
from mm_trio.store.schema import FILLS_PENDING_KEY

KILL_LATCH = "kill"
"""The latch of the operator's kill switch."""
LOSS_LIMIT_LATCH = "loss_limit:"
"""Prefix of a symbol's loss-limit latch (``loss_limit:BTC/USDT``)."""


def report_payload(update: OrderUpdate, *, fills_pending: bool = False) -> str:
    """The journal payload of a report (see the store's ``events`` table)."""
    payload: dict[str, object] = {
        "status": update.status,
        "cum_qty": str(update.cum_qty),
        "order_id": update.order_id,
        "reason": update.reason,
    }
    if fills_pending:
        payload[FILLS_PENDING_KEY] = True
    return json.dumps(payload, separators=(",", ":"))


def ledger_fill(update: OrderUpdate) -> Fill | None:
    """The ledger row of the fill a report carries (``None``: it carries no trade)."""
    if update.trade_id is None or update.last_qty <= 0:
        return None
    return Fill(
        update.symbol,
        str(update.trade_id),
        update.order_id,
        update.client_id,
        update.side,
        update.last_price,
        update.last_qty,
        update.fee,
        update.fee_asset,
        update.ts,  # venue time, ns
    )


def symbol_record(grid: GridConfig, anchor: Decimal | None, start_position: Decimal) -> str:
    """The registry's JSON of a symbol: its effective grid, the anchor its levels use, and
    the base it started with (a neutral grid's)."""
    data = grid_to_dict(grid)
    data["anchor"] = None if anchor is None else str(anchor)
    return json.dumps({"grid": data, "start_position": str(start_position)}, sort_keys=True)


class Persistence:
    """Writes one account's state as it changes (see the module docstring)."""

    def __init__(self, store: StateStore, now_ns: Callable[[], int]) -> None:
        self.store = store
        self._now_ns = now_ns
        # journalled trade quantity per live order (seeded for orders taken over)
        self._traded: dict[str, Decimal] = {}
        self._pending: dict[str, Decimal] = {}  # ended orders still missing fills: cum

    def seed(self, client_id: str, traded: Decimal) -> None:
        """An order taken over from an earlier run has ``traded`` in the ledger already."""
        self._traded[client_id] = traded

    # ------------------------------------------------------------------ orders
    def intent(self, request: OrderRequest) -> None:
        parsed = parse_client_id(request.client_id)
        level, generation = (0, 0) if parsed is None else (parsed.level, parsed.generation)
        self.store.journal_intent(
            request.client_id,
            request.symbol,
            level,
            request.side,
            request.price,
            request.qty,
            generation,
            self._now_ns(),
        )

    def cancel(self, client_id: str) -> None:
        self.store.journal_event(client_id, "cancel", "{}", self._now_ns())

    def report(self, update: OrderUpdate) -> None:
        cid = update.client_id
        fill = ledger_fill(update)
        traded = self._traded.get(cid, ZERO)
        ended_cum = self._pending.get(cid)
        terminal = update.status in TERMINAL_STATUSES
        after = traded + (fill.qty if fill is not None else ZERO)
        pending = ended_cum is None and terminal and update.cum_qty > after
        new = self.store.record_report(
            cid, report_payload(update, fills_pending=pending), fill, self._now_ns()
        )
        if new:
            traded = after
        if ended_cum is not None:  # ended earlier, waiting for its trades
            if traded >= ended_cum:
                del self._pending[cid], self._traded[cid]
                self.store.journal_event(
                    cid, "ended", '{"reason":"fills complete"}', self._now_ns()
                )
            else:
                self._traded[cid] = traded
        elif pending:
            self._pending[cid] = update.cum_qty
            self._traded[cid] = traded
        elif terminal:
            self._traded.pop(cid, None)
        else:
            self._traded[cid] = traded

    # ------------------------------------------------------------------ registry, latches
    def symbol(
        self,
        symbol: str,
        grid: GridConfig,
        anchor: Decimal | None,
        start_position: Decimal,
        state: str,
    ) -> None:
        self.store.put_symbol(
            symbol, symbol_record(grid, anchor, start_position), state, self._now_ns()
        )

    def latch(self, name: str, reason: str | None) -> None:
        """Set (``reason``) or clear (``None``) a latch that must survive a restart."""
        if reason is None:
            self.store.clear_latch(name)
        else:
            self.store.set_latch(name, reason, self._now_ns())
