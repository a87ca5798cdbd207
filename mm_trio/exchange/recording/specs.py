"""Guessing each recorded symbol's trading rules from the decimals it shows: :func:`infer_specs`."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from itertools import islice
from typing import Any, Protocol

import msgspec

from mm_trio.domain.model import Quote, SymbolSpec, Trade, parse_symbol
from mm_trio.exchange.recording.merge import merge_recordings
from mm_trio.exchange.recording.reader import StrPath

#: min notional used by :func:`infer_specs` per quote asset (Binance spot's usual 5 USD).
DEFAULT_MIN_NOTIONAL: dict[str, Decimal] = {
    q: Decimal(5) for q in ("USDT", "USDC", "FDUSD", "BUSD", "TUSD", "DAI")
}


class _Decoder(Protocol):
    def decode(self, raw: bytes, recv_ts: int | None = None) -> list[Any]: ...


def _exponent(value: Decimal) -> int | None:
    """Exponent of the last significant digit (``61837.630`` -> -2); None for zero/non-finite."""
    if not value or not value.is_finite():
        return None
    exp = value.normalize().as_tuple().exponent
    return exp if isinstance(exp, int) else None


class SpecGuesser:
    """Accumulates the decimals seen per symbol; :meth:`specs` turns them into specs (the
    rules are :func:`infer_specs`'s). Fed decoded events, so one decode serves the replay
    and the guess."""

    def __init__(self) -> None:
        self._price_exp: dict[str, int] = {}
        self._qty_exp: dict[str, int] = {}

    @staticmethod
    def _see(table: dict[str, int], symbol: str, *values: Decimal) -> None:
        for v in values:
            e = _exponent(v)
            if e is None:
                continue
            cur = table.get(symbol)
            if cur is None or e < cur:
                table[symbol] = e

    def see(self, events: Iterable[Any]) -> None:
        """Take the prices and quantities of quotes, trades and depth diffs."""
        see, price_exp, qty_exp = self._see, self._price_exp, self._qty_exp
        for ev in events:
            if isinstance(ev, Quote):
                see(price_exp, ev.symbol, ev.bid, ev.ask)
                see(qty_exp, ev.symbol, ev.bid_qty, ev.ask_qty)
            elif isinstance(ev, Trade):
                see(price_exp, ev.symbol, ev.price)
                see(qty_exp, ev.symbol, ev.qty)
            else:
                bids = getattr(ev, "bids", None)
                asks = getattr(ev, "asks", None)
                sym = getattr(ev, "symbol", None)
                if sym is not None and bids is not None and asks is not None:
                    for p, q in (*bids, *asks):
                        see(price_exp, sym, p)
                        see(qty_exp, sym, q)

    def specs(
        self,
        *,
        overrides: Mapping[str, Mapping[str, Any]] | None = None,
        min_notional: Mapping[str, Decimal] | None = None,
    ) -> dict[str, SymbolSpec]:
        """A spec for every symbol seen (see :func:`infer_specs`)."""
        price_exp, qty_exp = self._price_exp, self._qty_exp
        notional = DEFAULT_MIN_NOTIONAL if min_notional is None else min_notional
        over = overrides or {}
        specs: dict[str, SymbolSpec] = {}
        for symbol in sorted(set(price_exp) | set(qty_exp)):
            base, quote = parse_symbol(symbol)
            tick = Decimal(1).scaleb(price_exp.get(symbol, 0))
            step = Decimal(1).scaleb(qty_exp.get(symbol, 0))
            spec = SymbolSpec(
                symbol=symbol,
                base=base,
                quote=quote,
                tick_size=tick,
                step_size=step,
                min_price=tick,
                min_qty=step,
                min_notional=notional.get(quote, Decimal(0)),
            )
            changes = {**over.get("*", {}), **over.get(symbol, {})}
            if changes:
                spec = msgspec.structs.replace(spec, **changes)
            specs[symbol] = spec
        return specs


def infer_specs(
    paths: Sequence[StrPath],
    decoder: _Decoder,
    *,
    max_lines: int = 20_000,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
    min_notional: Mapping[str, Decimal] | None = None,
) -> dict[str, SymbolSpec]:
    """Guess a :class:`SymbolSpec` for every symbol in the first ``max_lines`` merged lines.

    ``tick_size`` is the largest power of ten dividing every price seen (bid, ask, trade),
    ``step_size`` the same over quantities; ``min_qty`` = step; ``min_notional`` from
    ``min_notional`` (default :data:`DEFAULT_MIN_NOTIONAL`) by quote asset, else 0.
    ``overrides`` maps a unified symbol (or ``"*"`` for all) to SymbolSpec field values that
    replace the inferred ones. Symbols come from ``decoder`` (its symbol map decides).
    """
    guess = SpecGuesser()
    for ts, payload in islice(merge_recordings(paths), max_lines):
        guess.see(decoder.decode(payload, ts))
    return guess.specs(overrides=overrides, min_notional=min_notional)
