"""Binance spot adapter: sans-I/O stream decoding (and, later, REST/websocket shells)."""

from mm_trio.exchange.binance.decode import (
    DecodeStats,
    DepthUpdate,
    StreamDecoder,
    encode_account_position,
    encode_book_ticker,
    encode_depth_update,
    encode_execution_report,
    encode_trade,
)

__all__ = [
    "DecodeStats",
    "DepthUpdate",
    "StreamDecoder",
    "encode_account_position",
    "encode_book_ticker",
    "encode_depth_update",
    "encode_execution_report",
    "encode_trade",
]
