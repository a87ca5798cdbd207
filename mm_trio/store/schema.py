"""The state store's schema, records and conversions: the SQL of each schema version, the
rows as typed records (exact ``Decimal``, integer ns), and the file checks made before a
store is opened for writing (see :mod:`mm_trio.store.state`)."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import NamedTuple

from mm_trio.domain.model import TERMINAL_STATUSES, Side

SQLITE_MAGIC = b"SQLite format 3\x00"
"""The first 16 bytes of every SQLite database file."""
HEADER_SIZE = 100
USER_VERSION_OFFSET = 60
"""Where ``PRAGMA user_version`` lives in the header (4 bytes, big-endian)."""
DEFAULT_BUSY_TIMEOUT_S = 5.0
"""How long a write waits for another writer's lock before :class:`StoreError`."""
ENDED_KIND = "ended"
"""An event ``kind`` that ends an intent whatever its payload (e.g. resolved on restart)."""
FILLS_PENDING_KEY = "fills_pending"
"""A report payload key: the order ended but its trades are not all in the ledger yet."""
SUM_PRECISION = 100
"""Significant digits for ledger sums: enough that adding quantities never rounds."""
NO_GENERATION = -1
""":meth:`StateStore.last_generation` of a symbol with no intent (``+ 1`` gives 0)."""
_SIDES: frozenset[str] = frozenset({"BUY", "SELL"})

Migration = tuple[str, ...]
"""The SQL statements that take the schema from one version to the next."""

_V1: Migration = (
    """CREATE TABLE symbols (
        symbol TEXT PRIMARY KEY,
        config TEXT NOT NULL,
        state TEXT NOT NULL,
        updated_ns INTEGER NOT NULL
    )""",
    """CREATE TABLE intents (
        client_id TEXT PRIMARY KEY,
        symbol TEXT NOT NULL,
        level INTEGER NOT NULL,
        side TEXT NOT NULL CHECK (side IN ('BUY', 'SELL')),
        price TEXT NOT NULL,
        qty TEXT NOT NULL,
        generation INTEGER NOT NULL,
        ts_ns INTEGER NOT NULL
    )""",
    "CREATE INDEX intents_by_symbol ON intents (symbol, generation)",
    """CREATE TABLE events (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        client_id TEXT NOT NULL,
        kind TEXT NOT NULL,
        payload TEXT NOT NULL,
        terminal INTEGER NOT NULL,
        ts_ns INTEGER NOT NULL
    )""",
    "CREATE INDEX events_by_client_id ON events (client_id, seq)",
    # trade ids are unique per symbol on a venue (Binance), not across symbols
    """CREATE TABLE fills (
        symbol TEXT NOT NULL,
        trade_id TEXT NOT NULL,
        order_id TEXT NOT NULL,
        client_id TEXT NOT NULL,
        side TEXT NOT NULL CHECK (side IN ('BUY', 'SELL')),
        price TEXT NOT NULL,
        qty TEXT NOT NULL,
        fee TEXT NOT NULL,
        fee_asset TEXT NOT NULL,
        ts_ns INTEGER NOT NULL,
        PRIMARY KEY (symbol, trade_id)
    )""",
    """CREATE TABLE latches (
        name TEXT PRIMARY KEY,
        reason TEXT NOT NULL,
        ts_ns INTEGER NOT NULL
    )""",
)

MIGRATIONS: tuple[Migration, ...] = (_V1,)
"""``MIGRATIONS[i]`` takes a file from schema version ``i`` to ``i + 1``."""
SCHEMA_VERSION = len(MIGRATIONS)


class StoreError(Exception):
    """The state store cannot be used: the message names the file and what is wrong."""


class StoreVersionError(StoreError):
    """The file was written by a newer mm-trio (a higher schema version than this code)."""


@dataclass(frozen=True, slots=True)
class SymbolRecord:
    symbol: str
    config_json: str
    state: str
    updated_ns: int


@dataclass(frozen=True, slots=True)
class Intent:
    """An order we decided to send, journalled before it was sent."""

    client_id: str
    symbol: str
    level: int
    side: Side
    price: Decimal
    qty: Decimal
    generation: int
    ts_ns: int


@dataclass(frozen=True, slots=True)
class JournalEvent:
    """An answer or report about one client id; ``terminal`` if it ended the order."""

    seq: int
    client_id: str
    kind: str
    payload_json: str
    terminal: bool
    ts_ns: int


@dataclass(frozen=True, slots=True)
class Fill:
    symbol: str
    trade_id: str
    order_id: str
    client_id: str
    side: Side
    price: Decimal
    qty: Decimal
    fee: Decimal
    fee_asset: str
    ts_ns: int


class Latch(NamedTuple):
    reason: str
    ts_ns: int


def _dec(value: Decimal, what: str) -> str:
    if not isinstance(value, Decimal) or not value.is_finite():
        raise ValueError(f"{what} must be a finite Decimal, got {value!r}")
    return str(value)


def _side(side: str) -> Side:
    if side not in _SIDES:
        raise ValueError(f"side must be BUY or SELL, got {side!r}")
    return "BUY" if side == "BUY" else "SELL"


def _json(text: str, what: str) -> object:
    try:
        return json.loads(text)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{what} is not valid JSON ({e}): {text!r}") from None


def _is_terminal(kind: str, payload: object) -> bool:
    if kind == ENDED_KIND:
        return True
    # an ended order whose trades are not all in the ledger yet stays open for a restart
    return (
        isinstance(payload, dict)
        and payload.get("status") in TERMINAL_STATUSES
        and not payload.get(FILLS_PENDING_KEY)
    )


def _signed(side: str, qty: Decimal) -> Decimal:
    return qty if side == "BUY" else -qty


def _read_version(path: Path, known: int, busy_timeout_s: float) -> int | None:
    """The schema version of an existing file, read without writing to it (None: no file).

    A version above ``known`` in the file header is returned without opening SQLite at
    all, so not even a WAL index is created next to a newer mm-trio's file.
    """
    if not path.exists():
        return None
    if not path.is_file():
        raise StoreError(f"state store {path} is not a file")
    with path.open("rb") as f:
        head = f.read(HEADER_SIZE)
    magic = head[: len(SQLITE_MAGIC)]
    if magic and magic != SQLITE_MAGIC:
        raise StoreError(f"state store {path} is not an SQLite database (bad header {magic!r})")
    if len(head) == HEADER_SIZE:
        in_header = int.from_bytes(head[USER_VERSION_OFFSET : USER_VERSION_OFFSET + 4], "big")
        if in_header > known:
            return in_header
    try:
        conn = sqlite3.connect(
            f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=busy_timeout_s
        )
    except sqlite3.Error as e:
        raise StoreError(f"state store {path} cannot be opened read-only: {e}") from None
    try:
        (version,) = conn.execute("PRAGMA user_version").fetchone()
        (check,) = conn.execute("PRAGMA quick_check").fetchone()
        if check != "ok":
            raise StoreError(f"state store {path} is corrupt: {check}")
        return int(version)
    except sqlite3.OperationalError as e:
        raise _operational(path, e, busy_timeout_s) from None
    except sqlite3.DatabaseError as e:
        raise StoreError(f"state store {path} is corrupt or not a database: {e}") from None
    finally:
        conn.close()


def _operational(path: Path, e: sqlite3.OperationalError, busy_timeout_s: float) -> StoreError:
    if "locked" in str(e) or "busy" in str(e):
        return StoreError(
            f"state store {path} is locked by another writer (waited {busy_timeout_s} s): "
            "is another mm-trio running on this account?"
        )
    return StoreError(f"state store {path}: {e}")


def _newer_message(path: Path, found: int, known: int) -> str:
    return (
        f"state store {path} has schema version {found}, newer than this mm-trio knows "
        f"(version {known}): upgrade mm-trio; the file was not changed"
    )


def _decimal(text: str) -> Decimal:
    try:
        return Decimal(text)
    except InvalidOperation:
        raise StoreError(f"state store holds a malformed number {text!r}") from None


def _intent(row: tuple[str, str, int, str, str, str, int, int]) -> Intent:
    cid, symbol, level, side, price, qty, generation, ts = row
    return Intent(cid, symbol, level, _side(side), _decimal(price), _decimal(qty), generation, ts)


def _fill(row: tuple[str, str, str, str, str, str, str, str, str, int]) -> Fill:
    symbol, trade_id, order_id, cid, side, price, qty, fee, fee_asset, ts = row
    return Fill(
        symbol,
        trade_id,
        order_id,
        cid,
        _side(side),
        _decimal(price),
        _decimal(qty),
        _decimal(fee),
        fee_asset,
        ts,
    )


def _fill_row(f: Fill) -> tuple[str, str, str, str, str, str, str, str, str, int]:
    return (
        f.symbol,
        str(f.trade_id),
        f.order_id,
        f.client_id,
        _side(f.side),
        _dec(f.price, "price"),
        _dec(f.qty, "qty"),
        _dec(f.fee, "fee"),
        f.fee_asset,
        f.ts_ns,
    )
