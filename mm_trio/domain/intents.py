"""Intents: what the pure core asks the trio shell to do (place or cancel one order)."""

from __future__ import annotations

import msgspec

from mm_trio.domain.model import OrderRequest

# gc=False as for the model's structs: frozen, and nothing in them can refer back to them


class PlaceOrder(msgspec.Struct, frozen=True, gc=False, tag="place"):
    """Send this new order.

    ``opening`` is False for take-profits and buy-backs (they close held inventory).
    """

    request: OrderRequest
    opening: bool = True


class CancelOrder(msgspec.Struct, frozen=True, gc=False, tag="cancel"):
    symbol: str
    client_id: str


Intent = PlaceOrder | CancelOrder
