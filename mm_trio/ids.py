"""Deterministic client order ids (SPEC §3).

Format: ``<prefix>_<SYM>_<side><level>_<generation>``, e.g. ``mmt_BTCUSDT_B-3_17``.
``SYM`` is the native symbol, or an 8-hex-digit hash of it when the id would exceed 36
characters. Only ``[A-Za-z0-9_-]`` is used. The prefix marks an order as ours: orders
without it are never touched.
"""

from __future__ import annotations

import hashlib
import re

import msgspec

from mm_trio.model import Side, native_symbol

MAX_ID_LEN = 36
_PREFIX_RE = re.compile(r"^[A-Za-z0-9-]{1,8}$")
_ID_RE = re.compile(
    r"^(?P<prefix>[A-Za-z0-9-]{1,8})_(?P<sym>[A-Za-z0-9]+)_(?P<side>[BS])(?P<level>-?\d+)"
    r"_(?P<gen>\d+)$"
)


class ClientId(msgspec.Struct, frozen=True):
    prefix: str
    sym: str
    side: Side
    level: int
    generation: int


def validate_prefix(prefix: str) -> str:
    if not _PREFIX_RE.match(prefix):
        raise ValueError(
            f"client id prefix {prefix!r} must be 1-8 characters of [A-Za-z0-9-]"
        )
    return prefix


def symbol_tag(symbol: str, prefix: str) -> str:
    """The ``SYM`` part used for ``symbol`` (native name, hashed if it would be too long)."""
    native = native_symbol(symbol)
    # worst case for the rest: "_" + "_" + side + "-99999" + "_" + 9-digit generation
    if len(prefix) + len(native) + 2 + 1 + 6 + 1 + 9 <= MAX_ID_LEN:
        return native
    return hashlib.blake2b(native.encode(), digest_size=4).hexdigest()


def make_client_id(prefix: str, sym_tag: str, side: Side, level: int, generation: int) -> str:
    cid = f"{prefix}_{sym_tag}_{side[0]}{level}_{generation}"
    if len(cid) > MAX_ID_LEN:
        raise ValueError(f"client id {cid!r} longer than {MAX_ID_LEN} characters")
    return cid


def parse_client_id(client_id: str) -> ClientId | None:
    """Decode one of our ids; ``None`` if it is not in our format."""
    m = _ID_RE.match(client_id)
    if m is None:
        return None
    side: Side = "BUY" if m["side"] == "B" else "SELL"
    return ClientId(m["prefix"], m["sym"], side, int(m["level"]), int(m["gen"]))


def is_ours(client_id: str, prefix: str) -> bool:
    parsed = parse_client_id(client_id)
    return parsed is not None and parsed.prefix == prefix
