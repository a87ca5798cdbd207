"""Binance spot adapter (:class:`~mm_trio.exchange.binance.adapter.BinanceExchange`) and the
protocol modules the paper venue shares with it.

``protocol`` (weights, error codes, status maps, decimal format), ``wire`` (JSON shapes),
``decode`` (stream payloads -> events), ``encode`` (events -> stream payloads), ``specs`` and
``trades`` (REST bodies), ``signing``, ``rest`` and ``streams`` (the I/O shells).
"""

from mm_trio.exchange.binance.decode import DecodeStats, DepthUpdate, StreamDecoder
from mm_trio.exchange.binance.encode import (
    encode_account_position,
    encode_agg_trade,
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
    "encode_agg_trade",
    "encode_book_ticker",
    "encode_depth_update",
    "encode_execution_report",
    "encode_trade",
]
