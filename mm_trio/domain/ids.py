"""Deterministic client order ids (SPEC §3).

Format: ``<prefix>_<SYM>_<side><level>_<generation>``, e.g. ``mmt_BTCUSDT_B-3_92073600017``.
``SYM`` is the native symbol, or a hash of it (at most 8 hex digits) when the id could exceed
36 characters. Only ``[A-Za-z0-9_-]`` is used. The prefix marks an order as ours: orders
without it are never touched.

**No id is ever reused on an account.** A venue keeps the ids of an account's past orders
(a query by id finds them), so an id reused by a later process could make that process
adopt an earlier run's order and its fills as its own. Each symbol's generations therefore
start at :func:`run_generation` of the venue clock when the symbol starts -- the
milliseconds since :data:`GENERATION_EPOCH_NS` -- and count up by one per order: a later
run starts above every generation an earlier one used, as long as that run placed fewer
orders on the symbol than milliseconds passed (the venue's order-rate limits allow at most
a few per second). In a replay the venue clock is the recording's, so ids stay
deterministic.
"""

from __future__ import annotations

import hashlib
import re

import msgspec

from mm_trio.domain.model import Side, native_symbol

MAX_ID_LEN = 36
GENERATION_EPOCH_NS = 1_704_067_200_000_000_000
"""2024-01-01T00:00:00Z: generations count milliseconds of venue time since then."""
GENERATION_DIGITS = 13
"""Digits reserved for the generation (milliseconds since the epoch fit in 13 until 2340)."""
LEVEL_CHARS = 6
"""Characters reserved for the level (``-99999`` .. ``999999``)."""
MAX_TAG_HASH = 8
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
        raise ValueError(f"client id prefix {prefix!r} must be 1-8 characters of [A-Za-z0-9-]")
    return prefix


def run_generation(now_ns: int) -> int:
    """The first generation of a symbol starting at venue time ``now_ns`` (see the module
    docstring): milliseconds since :data:`GENERATION_EPOCH_NS`, never negative."""
    return max(0, (now_ns - GENERATION_EPOCH_NS) // 1_000_000)


def symbol_tag(symbol: str, prefix: str) -> str:
    """The ``SYM`` part used for ``symbol`` (native name, hashed if it could be too long)."""
    native = native_symbol(symbol)
    # the rest at its longest: "_" + "_" + side + level + "_" + generation
    room = MAX_ID_LEN - len(prefix) - (2 + 1 + LEVEL_CHARS + 1 + GENERATION_DIGITS)
    if len(native) <= room:
        return native
    # the tag only makes ids readable: routing is by symbol, so a short hash is enough
    return hashlib.blake2b(native.encode(), digest_size=4).hexdigest()[: min(MAX_TAG_HASH, room)]


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
