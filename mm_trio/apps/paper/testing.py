"""Helpers for talking to the paper venue in tests: Binance request signing without a client lib."""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Iterable
from urllib.parse import urlencode

from mm_trio.apps.paper.config import DEFAULT_API_KEY, DEFAULT_API_SECRET
from mm_trio.exchange.binance import protocol

__all__ = ["hmac_sign", "now_ms", "signed_query"]


def now_ms() -> int:
    return int(time.time() * 1000)


def hmac_sign(payload: str, secret: str = DEFAULT_API_SECRET) -> str:
    return hmac.new(secret.encode(), payload.encode(), hashlib.sha256).hexdigest()


def signed_query(
    params: Iterable[tuple[str, str]],
    secret: str = DEFAULT_API_SECRET,
    *,
    timestamp: int | None = None,
) -> str:
    """``params`` in the given order plus ``timestamp``, then ``&signature=<hmac>``."""
    items = list(params)
    if not any(k == "timestamp" for k, _ in items):
        items.append(("timestamp", str(now_ms() if timestamp is None else timestamp)))
    query = urlencode(items)
    return f"{query}&signature={hmac_sign(query, secret)}"


API_KEY_HEADER = {protocol.API_KEY_HEADER: DEFAULT_API_KEY}
