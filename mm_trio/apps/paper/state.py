"""The paper venue's own state file (``mm-trio venue --state PATH``): every account's
balances, orders (open and closed, as the REST API shows them), trades (``myTrades``) and id
counters, so that a venue killed with SIGKILL and restarted on the same file serves the same
accounts, the way a real exchange account survives a restart. Market data is not kept.

SQLite (stdlib), WAL, ``synchronous=NORMAL``: each change of an account's ledger (one
matching-engine call: a placement, a cancel, the fills of one market event) is one
transaction, committed before the API answers and before the user-data stream hears of it.
A committed transaction survives the process being killed (its WAL frames are in the OS page
cache); an OS crash may lose the last few, never the file's consistency.

The file is held with an exclusive lock (``locking_mode=EXCLUSIVE``) for as long as the venue
runs: a second venue on the same file is refused, as is a file that is not a venue state
(its ``application_id``), one written by a newer mm-trio (``user_version``) or a corrupt one.
A refused file is never written.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from decimal import Decimal, InvalidOperation
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

import attrs
import cattrs

if TYPE_CHECKING:
    from mm_trio.apps.paper.ledger import OrderRecord

__all__ = [
    "APPLICATION_ID",
    "LedgerChanges",
    "SavedAccount",
    "VenueState",
    "VenueStateError",
    "VenueStateWriteError",
]

APPLICATION_ID = 0x6D6D7076
"""``PRAGMA application_id`` of a venue state file ("mmpv"): a trader's state store, or any
other SQLite file, is never taken for one."""
LOCK_WAIT_S = 2.0
"""How long opening waits for another process's lock on the file before giving up."""

_V1: tuple[str, ...] = (
    """CREATE TABLE accounts (
        api_key TEXT PRIMARY KEY,
        next_order_id INTEGER NOT NULL,
        next_trade_id INTEGER NOT NULL,
        update_ms INTEGER NOT NULL
    )""",
    """CREATE TABLE balances (
        api_key TEXT NOT NULL,
        asset TEXT NOT NULL,
        free TEXT NOT NULL,
        locked TEXT NOT NULL,
        PRIMARY KEY (api_key, asset)
    )""",
    # record: every field of the ledger's OrderRecord as JSON (numbers as exact text)
    """CREATE TABLE orders (
        api_key TEXT NOT NULL,
        order_id INTEGER NOT NULL,
        record TEXT NOT NULL,
        PRIMARY KEY (api_key, order_id)
    )""",
    # payload: the trade exactly as myTrades serves it; seq keeps the order they happened in
    """CREATE TABLE trades (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        api_key TEXT NOT NULL,
        symbol TEXT NOT NULL,
        payload TEXT NOT NULL
    )""",
)
MIGRATIONS: tuple[tuple[str, ...], ...] = (_V1,)
"""``MIGRATIONS[i]`` takes a file from schema version ``i`` to ``i + 1``."""
SCHEMA_VERSION = len(MIGRATIONS)


class VenueStateError(Exception):
    """The state file cannot be used (the message names it and says why): exit 2."""


class VenueStateWriteError(VenueStateError):
    """A change could not be written: the venue stops rather than serve what it cannot keep."""


@attrs.define
class SavedAccount:
    """One account as the file holds it."""

    next_order_id: int
    next_trade_id: int
    update_ms: int
    balances: dict[str, tuple[Decimal, Decimal]]
    orders: list[OrderRecord]  # by order id
    trades: list[tuple[str, dict[str, Any]]]  # (unified symbol, myTrades payload), in order


@attrs.define
class LedgerChanges:
    """What one engine call changed in an account's ledger (committed as one transaction)."""

    orders: dict[int, OrderRecord] = attrs.field(factory=dict)
    forgotten: list[int] = attrs.field(factory=list)  # finished orders trimmed away
    trades: list[tuple[str, dict[str, Any]]] = attrs.field(factory=list)
    assets: set[str] = attrs.field(factory=set)  # assets whose balance moved

    def __bool__(self) -> bool:
        return bool(self.orders or self.forgotten or self.trades or self.assets)


def _records() -> cattrs.Converter:
    conv = cattrs.Converter()
    conv.register_unstructure_hook(Decimal, str)
    conv.register_structure_hook(Decimal, lambda v, _: _decimal(v))
    return conv


_CONVERTER = _records()


def _decimal(value: object) -> Decimal:
    if not isinstance(value, str):
        raise ValueError(f"a number must be saved as text, got {value!r}")
    try:
        number = Decimal(value)
    except InvalidOperation:
        raise ValueError(f"malformed number {value!r}") from None
    if not number.is_finite():
        raise ValueError(f"malformed number {value!r}")
    return number


class VenueState:
    """An open venue state file, locked for this process. Use :meth:`open`; :meth:`close`."""

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self._conn = conn
        self.path = path

    @classmethod
    def open(cls, path: str | Path, *, lock_wait_s: float | None = None) -> VenueState:
        """Open (creating or migrating) the file at ``path`` and lock it (waiting up to
        ``lock_wait_s``, default :data:`LOCK_WAIT_S`, for another process's lock).

        Raises :class:`VenueStateError` for a file that is not a venue state, a newer one, a
        corrupt one or one another process holds; such a file is left as it was.
        """
        path = Path(path)
        if lock_wait_s is None:
            lock_wait_s = LOCK_WAIT_S
        if path.exists() and not path.is_file():
            raise VenueStateError(f"venue state {path} is not a file")
        if path.exists() and path.stat().st_size > 0:  # an empty file has nothing to lose
            cls._peek(path)
        try:
            conn = sqlite3.connect(path, timeout=lock_wait_s, isolation_level=None)
        except sqlite3.Error as e:
            raise VenueStateError(f"venue state {path} cannot be opened: {e}") from None
        state = cls(conn, path)
        try:
            # held until close: no other process reads or writes the file meanwhile
            conn.execute("PRAGMA locking_mode = EXCLUSIVE")
            state._migrate(lock_wait_s)
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
        except sqlite3.OperationalError as e:
            conn.close()
            raise state._operational(e, lock_wait_s) from None
        except sqlite3.DatabaseError as e:
            conn.close()
            raise VenueStateError(f"venue state {path} is corrupt or not a database: {e}") from None
        except BaseException:
            conn.close()
            raise
        return state

    @staticmethod
    def _peek(path: Path) -> None:
        """Refuse a file that is not ours before it is opened for writing.

        Read through SQLite (``immutable``: no lock taken, no ``-wal`` / ``-shm`` created),
        never with a plain ``open``: closing that would drop the locks another connection of
        this process holds on the file. :meth:`_migrate` checks again under the lock.
        """
        try:
            peek = sqlite3.connect(f"{path.resolve().as_uri()}?immutable=1", uri=True)
        except sqlite3.Error as e:
            raise VenueStateError(f"venue state {path} cannot be opened: {e}") from None
        try:
            (app_id,) = peek.execute("PRAGMA application_id").fetchone()
            (version,) = peek.execute("PRAGMA user_version").fetchone()
        except sqlite3.DatabaseError as e:
            if e.sqlite_errorname == "SQLITE_NOTADB":
                raise VenueStateError(
                    f"venue state {path} is not an SQLite database ({e}); the file was not changed"
                ) from None
            raise VenueStateError(f"venue state {path} is corrupt: {e}") from None
        finally:
            peek.close()
        if app_id != APPLICATION_ID:
            raise VenueStateError(
                f"venue state {path} is an SQLite file of something else, not a paper venue "
                f"state (application id {app_id:#x}); the file was not changed"
            )
        if version > SCHEMA_VERSION:
            raise VenueStateError(_newer(path, version))

    def _migrate(self, lock_wait_s: float) -> None:
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            # read under the lock: the header was checked before another process could move
            (app_id,) = conn.execute("PRAGMA application_id").fetchone()
            (version,) = conn.execute("PRAGMA user_version").fetchone()
            if version > SCHEMA_VERSION:
                raise VenueStateError(_newer(self.path, version))
            if version > 0 and app_id != APPLICATION_ID:
                raise VenueStateError(
                    f"venue state {self.path} is not a paper venue state (application id "
                    f"{app_id:#x}); the file was not changed"
                )
            check = " ".join(row[0] for row in conn.execute("PRAGMA quick_check").fetchall())
            if check != "ok":  # before anything is written to it
                raise VenueStateError(f"venue state {self.path} is corrupt: {_one_line(check)}")
            if version == 0 and conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
                raise VenueStateError(
                    f"venue state {self.path} is an SQLite file of something else (it has "
                    "tables but no schema version); the file was not changed"
                )
            for statements in MIGRATIONS[version:]:
                for sql in statements:
                    conn.execute(sql)
            if version != SCHEMA_VERSION:
                conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def _operational(self, e: sqlite3.OperationalError, waited_s: float) -> VenueStateError:
        if "locked" in str(e) or "busy" in str(e):
            return VenueStateError(
                f"venue state {self.path} is locked by another process (waited {waited_s:g} s): "
                "is another mm-trio venue running on it?"
            )
        return VenueStateError(f"venue state {self.path}: {e}")

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def version(self) -> int:
        (version,) = self._conn.execute("PRAGMA user_version").fetchone()
        return int(version)

    # ------------------------------------------------------------------ reading

    def load(self) -> dict[str, SavedAccount]:
        """Every saved account by API key; :class:`VenueStateError` naming a malformed row."""
        from mm_trio.apps.paper.ledger import OrderRecord

        conn = self._conn
        out: dict[str, SavedAccount] = {}
        try:
            for key, next_oid, next_tid, update_ms in conn.execute(
                "SELECT api_key, next_order_id, next_trade_id, update_ms FROM accounts"
            ):
                out[key] = SavedAccount(next_oid, next_tid, update_ms, {}, [], [])
            for key, asset, free, locked in conn.execute(
                "SELECT api_key, asset, free, locked FROM balances ORDER BY api_key, asset"
            ):
                where = f"balance of {asset} (account {key!r})"
                self._account(out, key, where).balances[asset] = (
                    self._parse(where, _decimal, free),
                    self._parse(where, _decimal, locked),
                )
            for key, oid, record in conn.execute(
                "SELECT api_key, order_id, record FROM orders ORDER BY api_key, order_id"
            ):
                where = f"order {oid} (account {key!r})"
                rec = self._parse(
                    where, lambda t: _CONVERTER.structure(json.loads(t), OrderRecord), record
                )
                if rec.order_id != oid:
                    raise VenueStateError(
                        f"venue state {self.path}: {where} holds order {rec.order_id}"
                    )
                self._account(out, key, where).orders.append(rec)
            for seq, key, symbol, payload in conn.execute(
                "SELECT seq, api_key, symbol, payload FROM trades ORDER BY seq"
            ):
                where = f"trade #{seq} (account {key!r})"
                trade = self._parse(where, json.loads, payload)
                if not isinstance(trade, dict):
                    raise VenueStateError(f"venue state {self.path}: {where} is not an object")
                self._account(out, key, where).trades.append((symbol, trade))
        except sqlite3.DatabaseError as e:
            raise VenueStateError(f"venue state {self.path} cannot be read: {e}") from None
        return out

    def _account(self, out: dict[str, SavedAccount], key: str, where: str) -> SavedAccount:
        acct = out.get(key)
        if acct is None:
            raise VenueStateError(f"venue state {self.path}: {where} of an unknown account")
        return acct

    def _parse(self, where: str, parse: Any, text: Any) -> Any:
        try:
            return parse(text)
        except cattrs.BaseValidationError as e:
            detail = "; ".join(cattrs.transform_error(e))
        except (ValueError, TypeError) as e:
            detail = str(e)
        raise VenueStateError(f"venue state {self.path}: {where} is malformed ({detail})")

    # ------------------------------------------------------------------ writing

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        conn = self._conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            yield conn
            conn.execute("COMMIT")
        except sqlite3.Error as e:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise VenueStateWriteError(f"venue state {self.path}: write failed: {e}") from None
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def create_account(
        self,
        api_key: str,
        *,
        next_ids: tuple[int, int],
        update_ms: int,
        balances: Mapping[str, tuple[Decimal, Decimal]],
    ) -> None:
        """Save a new account as it starts (its balances from the config)."""
        with self._tx() as conn:
            conn.execute(
                "INSERT INTO accounts VALUES (?, ?, ?, ?)", (api_key, *next_ids, update_ms)
            )
            self._put_balances(conn, api_key, balances)

    def commit(
        self,
        api_key: str,
        changes: LedgerChanges,
        *,
        next_ids: tuple[int, int],
        update_ms: int,
        balances: Mapping[str, tuple[Decimal, Decimal]],
    ) -> None:
        """One engine call's changes to ``api_key``'s ledger, in one transaction."""
        with self._tx() as conn:
            conn.execute(
                "UPDATE accounts SET next_order_id = ?, next_trade_id = ?, update_ms = ? "
                "WHERE api_key = ?",
                (*next_ids, update_ms, api_key),
            )
            self._put_balances(conn, api_key, balances)
            if changes.orders:
                conn.executemany(
                    "INSERT INTO orders VALUES (?, ?, ?) ON CONFLICT (api_key, order_id) "
                    "DO UPDATE SET record = excluded.record",
                    [
                        (api_key, oid, json.dumps(_CONVERTER.unstructure(rec)))
                        for oid, rec in changes.orders.items()
                    ],
                )
            if changes.forgotten:
                conn.executemany(
                    "DELETE FROM orders WHERE api_key = ? AND order_id = ?",
                    [(api_key, oid) for oid in changes.forgotten],
                )
            if changes.trades:
                conn.executemany(
                    "INSERT INTO trades (api_key, symbol, payload) VALUES (?, ?, ?)",
                    [(api_key, symbol, json.dumps(t)) for symbol, t in changes.trades],
                )

    @staticmethod
    def _put_balances(
        conn: sqlite3.Connection, api_key: str, balances: Mapping[str, tuple[Decimal, Decimal]]
    ) -> None:
        conn.executemany(
            "INSERT INTO balances VALUES (?, ?, ?, ?) ON CONFLICT (api_key, asset) "
            "DO UPDATE SET free = excluded.free, locked = excluded.locked",
            [(api_key, a, str(free), str(locked)) for a, (free, locked) in balances.items()],
        )


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _newer(path: Path, found: int) -> str:
    return (
        f"venue state {path} has schema version {found}, newer than this mm-trio knows "
        f"(version {SCHEMA_VERSION}): upgrade mm-trio; the file was not changed"
    )
