"""Request parameters as Binance reads them, and the paper venue's error replies.

:class:`ApiError` is one Binance error reply (HTTP status and ``{"code", "msg"}``);
:func:`mandatory`, :func:`illegal` and :func:`not_required` build the standard parameter
errors. The ``param_*`` readers parse decimal, integer, client-id and symbol parameters with
Binance's patterns and messages. Pure.
"""

from __future__ import annotations

import re
import secrets
import string
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

import msgspec

from mm_trio.exchange.binance.protocol import ErrorCode, ErrorMsg

__all__ = [
    "ApiError",
    "illegal",
    "json_bytes",
    "mandatory",
    "not_required",
    "param_client_id",
    "param_decimal",
    "param_int",
    "param_symbol",
    "param_symbols",
    "random_client_id",
]

_JSON = msgspec.json.Encoder(decimal_format="string")
_DECODE = msgspec.json.Decoder()
_DEC_RE_TEXT = r"^([0-9]{1,20})(\.[0-9]{1,20})?$"
_MAX_DIGITS = 20  # of an integer, and of each side of a decimal's point
_INT_RE_TEXT = "^[0-9]{1,20}$"
_SYMBOL_RE_TEXT = "^[A-Z0-9-_.]{1,20}$"
_SYMBOL_RE = re.compile(r"[A-Z0-9\-_.]{1,20}")
_SYMBOLS_RE_TEXT = '^\\[("[A-Z0-9-_.]{1,20}"(,"[A-Z0-9-_.]{1,20}"){0,}){0,1}\\]$'
_CID_RE_TEXT = r"^[\.A-Z\:/a-z0-9_-]{1,36}$"
_CID_MAX_CHARS = 36
_CID_CHARS = frozenset(string.ascii_letters + string.digits + "._:/-")
_ID_ALPHABET = string.ascii_letters + string.digits
_GENERATED_ID_CHARS = 22  # what Binance generates when no client id is sent


def json_bytes(obj: Any) -> bytes:
    return _JSON.encode(obj)


def random_client_id() -> str:
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(_GENERATED_ID_CHARS))


class ApiError(Exception):
    """A Binance error reply: HTTP ``status`` and body ``{"code": code, "msg": msg}``."""

    def __init__(
        self, code: int, msg: str, status: int = 400, retry_after: int | None = None
    ) -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg
        self.status = status
        self.retry_after = retry_after

    def body(self) -> dict[str, Any]:
        return {"code": self.code, "msg": self.msg}


def mandatory(name: str) -> ApiError:
    return ApiError(
        ErrorCode.MANDATORY_PARAM_EMPTY_OR_MALFORMED,
        f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.",
    )


def illegal(name: str, legal: str) -> ApiError:
    return ApiError(
        ErrorCode.ILLEGAL_CHARS,
        f"Illegal characters found in parameter '{name}'; legal range is '{legal}'.",
    )


def not_required(name: str) -> ApiError:
    return ApiError(ErrorCode.PARAM_NOT_REQUIRED, f"Parameter '{name}' sent when not required.")


def param_decimal(
    params: Mapping[str, str], name: str, *, required: bool = False
) -> Decimal | None:
    raw = params.get(name)
    if raw is None or raw == "":
        if required:
            raise mandatory(name)
        return None
    head, _, tail = raw.partition(".")
    if (
        not head.isdigit()
        or len(head) > _MAX_DIGITS
        or not head.isascii()
        or ("." in raw and (not tail.isdigit() or len(tail) > _MAX_DIGITS or not tail.isascii()))
    ):
        raise illegal(name, _DEC_RE_TEXT)
    try:
        return Decimal(raw)
    except InvalidOperation:
        raise illegal(name, _DEC_RE_TEXT) from None


def param_int(params: Mapping[str, str], name: str, *, required: bool = False) -> int | None:
    raw = params.get(name)
    if raw is None or raw == "":
        if required:
            raise mandatory(name)
        return None
    if not (raw.isascii() and raw.isdigit()) or len(raw) > _MAX_DIGITS:
        raise illegal(name, _INT_RE_TEXT)
    return int(raw)


def param_client_id(params: Mapping[str, str], name: str) -> str | None:
    raw = params.get(name)
    if raw is None or raw == "":
        return None
    if len(raw) > _CID_MAX_CHARS or not set(raw) <= _CID_CHARS:
        raise illegal(name, _CID_RE_TEXT)
    return raw


def param_symbol(
    params: Mapping[str, str], natives: Mapping[str, str], *, required: bool = True
) -> str | None:
    """Unified symbol of the ``symbol`` parameter, which must be a native name exactly as
    Binance takes it (``BTCUSDT``: a ``BTC/USDT`` is refused, as Binance does)."""
    raw = params.get("symbol")
    if raw is None or raw == "":
        if required:
            raise mandatory("symbol")
        return None
    if not _SYMBOL_RE.fullmatch(raw):
        raise illegal("symbol", _SYMBOL_RE_TEXT)
    unified = natives.get(raw)
    if unified is None:
        raise ApiError(ErrorCode.BAD_SYMBOL, ErrorMsg.INVALID_SYMBOL)
    return unified


def param_symbols(params: Mapping[str, str], natives: Mapping[str, str]) -> list[str] | None:
    """Unified symbols of the ``symbols`` parameter (a JSON list of native names), or None."""
    raw = params.get("symbols")
    if raw is None or raw == "":
        return None
    try:
        names = _DECODE.decode(raw)
    except msgspec.DecodeError:
        raise illegal("symbols", _SYMBOLS_RE_TEXT) from None
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise mandatory("symbols")
    if len(set(names)) != len(names):
        raise ApiError(ErrorCode.DUPLICATE_SYMBOLS, "Symbol is present multiple times in the list.")
    return [param_symbol({"symbol": n}, natives) or "" for n in names]
