"""The state store: one SQLite file per trading account (SPEC §9).

It owns what must survive a restart: the symbol registry (what runs, with its effective
config and state), the order journal (every intent, written *before* its request is sent,
then every answer and report about it), the fill ledger keyed by the venue's trade id, and
the latches (kill switch, breakers). It owns no policy: callers decide what to write and
what a loaded state means.

Durability: the file is in WAL mode with ``synchronous=NORMAL``. Every write method commits
before it returns, so a transaction that returned survives a crash or ``kill -9`` of the
process (the committed WAL frames are in the OS's page cache). An OS crash or power loss
may lose the last transactions since the WAL was last synced, never the file's consistency.
Callers therefore *persist, then act*: a journalled intent is durable before its order is
sent.

Schema: ``PRAGMA user_version`` is the schema version; :data:`MIGRATIONS` takes a file from
version ``i`` to ``i + 1``. Opening an older file migrates it in one transaction; a file
newer than this code is refused with :class:`StoreVersionError` before anything is written.
Numbers are ``Decimal`` stored as their exact text; times are integer nanoseconds.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from decimal import Decimal, localcontext
from pathlib import Path
from types import TracebackType
from typing import Self

from mm_trio.domain.ids import parse_client_id
from mm_trio.domain.model import ZERO, Side
from mm_trio.store.schema import (
    DEFAULT_BUSY_TIMEOUT_S,
    MIGRATIONS,
    NO_GENERATION,
    SUM_PRECISION,
    Fill,
    Intent,
    JournalEvent,
    Latch,
    Migration,
    StoreError,
    StoreVersionError,
    SymbolRecord,
    _dec,
    _fill,
    _fill_row,
    _intent,
    _is_terminal,
    _json,
    _newer_message,
    _operational,
    _read_version,
    _side,
    _signed,
)

_INSERT_FILL = (
    "INSERT INTO fills VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (symbol, trade_id) DO NOTHING"
)
"""A fill into the ledger, once per ``(symbol, trade_id)`` (a repeat changes nothing)."""


class StateStore:
    """An open state store. Use :meth:`open`; close with :meth:`close` or ``with``."""

    def __init__(self, conn: sqlite3.Connection, path: Path, busy_timeout_s: float) -> None:
        self._conn = conn
        self.path = path
        self._busy_timeout_s = busy_timeout_s

    # ------------------------------------------------------------------ lifecycle

    @classmethod
    def open(
        cls,
        path: str | Path,
        *,
        busy_timeout_s: float = DEFAULT_BUSY_TIMEOUT_S,
        migrations: Sequence[Migration] = MIGRATIONS,
    ) -> StateStore:
        """Open (creating or migrating) the store at ``path``.

        Raises :class:`StoreVersionError` for a file newer than ``migrations`` know (the
        file is not written), :class:`StoreError` for a file that is not a usable SQLite
        database or that another writer holds locked for longer than ``busy_timeout_s``.
        """
        path = Path(path)
        known = len(migrations)
        found = _read_version(path, known, busy_timeout_s)
        if found is not None and found > known:
            raise StoreVersionError(_newer_message(path, found, known))
        try:
            conn = sqlite3.connect(path, timeout=busy_timeout_s, isolation_level=None)
        except sqlite3.Error as e:
            raise StoreError(f"state store {path} cannot be opened: {e}") from None
        store = cls(conn, path, busy_timeout_s)
        try:
            store._migrate(migrations)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
        except sqlite3.OperationalError as e:
            conn.close()
            raise _operational(path, e, busy_timeout_s) from None
        except sqlite3.DatabaseError as e:
            conn.close()
            raise StoreError(f"state store {path} is corrupt or not a database: {e}") from None
        except BaseException:
            conn.close()
            raise
        return store

    def _migrate(self, migrations: Sequence[Migration]) -> None:
        known = len(migrations)
        with self._tx() as conn:
            # read again under the write lock: another process may have migrated meanwhile
            (version,) = conn.execute("PRAGMA user_version").fetchone()
            if version > known:
                raise StoreVersionError(_newer_message(self.path, version, known))
            for target, statements in enumerate(migrations[version:], start=version + 1):
                for sql in statements:
                    try:
                        conn.execute(sql)
                    except sqlite3.DatabaseError as e:
                        raise StoreError(
                            f"state store {self.path}: migration to schema version {target} "
                            f"failed ({e}); the file is unchanged"
                        ) from None
            if version != known:
                conn.execute(f"PRAGMA user_version = {int(known)}")

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

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, committed on exit (rolled back on an exception)."""
        try:
            self._conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as e:
            raise _operational(self.path, e, self._busy_timeout_s) from None
        try:
            yield self._conn
            self._conn.execute("COMMIT")
        except sqlite3.IntegrityError:
            self._rollback()
            raise  # the caller knows which constraint it means
        except sqlite3.OperationalError as e:
            self._rollback()
            raise _operational(self.path, e, self._busy_timeout_s) from None
        except sqlite3.DatabaseError as e:
            self._rollback()
            raise StoreError(f"state store {self.path}: write failed: {e}") from None
        except BaseException:
            self._rollback()
            raise

    def _rollback(self) -> None:
        # a failed COMMIT or statement may already have ended the transaction
        if self._conn.in_transaction:
            self._conn.execute("ROLLBACK")

    # ------------------------------------------------------------------ symbol registry

    def put_symbol(self, symbol: str, config_json: str, state: str, ts_ns: int) -> None:
        """Insert or replace ``symbol``'s effective config (JSON text) and state."""
        _json(config_json, f"config of {symbol}")
        with self._tx() as conn:
            conn.execute(
                "INSERT INTO symbols (symbol, config, state, updated_ns) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (symbol) DO UPDATE SET config = excluded.config, "
                "state = excluded.state, updated_ns = excluded.updated_ns",
                (symbol, config_json, state, ts_ns),
            )

    def symbols(self) -> list[SymbolRecord]:
        rows = self._conn.execute(
            "SELECT symbol, config, state, updated_ns FROM symbols ORDER BY symbol"
        )
        return [SymbolRecord(*row) for row in rows]

    # ------------------------------------------------------------------ order journal

    def journal_intent(
        self,
        client_id: str,
        symbol: str,
        level: int,
        side: Side,
        price: Decimal,
        qty: Decimal,
        generation: int,
        ts_ns: int,
    ) -> None:
        """Record an order about to be sent. A client id is journalled once, ever."""
        row = (
            client_id,
            symbol,
            level,
            _side(side),
            _dec(price, "price"),
            _dec(qty, "qty"),
            generation,
            ts_ns,
        )
        try:
            with self._tx() as conn:
                conn.execute("INSERT INTO intents VALUES (?, ?, ?, ?, ?, ?, ?, ?)", row)
        except sqlite3.IntegrityError:
            raise StoreError(
                f"state store {self.path}: client id {client_id!r} is already journalled "
                "(an id is never reused)"
            ) from None

    def journal_event(self, client_id: str, kind: str, payload_json: str, ts_ns: int) -> None:
        """Record an answer or report about ``client_id``.

        The event ends the intent if ``kind`` is ``"ended"`` or the payload is an object
        whose ``status`` is terminal (FILLED, CANCELED, REJECTED, EXPIRED).
        """
        terminal = _is_terminal(kind, _json(payload_json, f"payload of {kind} event"))
        with self._tx() as conn:
            conn.execute(
                "INSERT INTO events (client_id, kind, payload, terminal, ts_ns) "
                "VALUES (?, ?, ?, ?, ?)",
                (client_id, kind, payload_json, int(terminal), ts_ns),
            )

    def intents(self, symbol: str | None = None) -> list[Intent]:
        """Journalled intents (of ``symbol``, or all), oldest generation first."""
        sql = "SELECT * FROM intents"
        if symbol is None:
            rows = self._conn.execute(sql + " ORDER BY symbol, generation, client_id")
        else:
            rows = self._conn.execute(
                sql + " WHERE symbol = ? ORDER BY generation, client_id", (symbol,)
            )
        return [_intent(row) for row in rows]

    def events(self, client_id: str) -> list[JournalEvent]:
        """Every event journalled about ``client_id``, in the order written."""
        rows = self._conn.execute(
            "SELECT seq, client_id, kind, payload, terminal, ts_ns FROM events "
            "WHERE client_id = ? ORDER BY seq",
            (client_id,),
        )
        return [JournalEvent(s, c, k, p, bool(t), ts) for s, c, k, p, t, ts in rows]

    def open_intents(self, symbol: str | None = None) -> list[Intent]:
        """Intents with no terminal event (of ``symbol``, or all): orders whose outcome a
        restart must resolve."""
        sql = (
            "SELECT * FROM intents i WHERE NOT EXISTS "
            "(SELECT 1 FROM events e WHERE e.client_id = i.client_id AND e.terminal)"
        )
        if symbol is None:
            rows = self._conn.execute(sql + " ORDER BY symbol, generation, client_id")
        else:
            rows = self._conn.execute(
                sql + " AND i.symbol = ? ORDER BY generation, client_id", (symbol,)
            )
        return [_intent(row) for row in rows]

    def intent_times(self, since_ns: int) -> list[int]:
        """When each order journalled since ``since_ns`` was journalled, oldest first."""
        rows = self._conn.execute(
            "SELECT ts_ns FROM intents WHERE ts_ns >= ? ORDER BY ts_ns", (since_ns,)
        )
        return [ts for (ts,) in rows]

    def intent(self, client_id: str) -> Intent | None:
        """The journalled intent of ``client_id`` (``None``: never journalled)."""
        row = self._conn.execute(
            "SELECT * FROM intents WHERE client_id = ?", (client_id,)
        ).fetchone()
        return None if row is None else _intent(row)

    def ended(self, client_id: str) -> bool:
        """``client_id`` has a terminal event."""
        row = self._conn.execute(
            "SELECT 1 FROM events WHERE client_id = ? AND terminal LIMIT 1", (client_id,)
        ).fetchone()
        return row is not None

    def last_generation(self, symbol: str) -> int:
        """The highest generation journalled for ``symbol`` (:data:`NO_GENERATION` if none):
        a restart numbers its orders above it."""
        (gen,) = self._conn.execute(
            "SELECT MAX(generation) FROM intents WHERE symbol = ?", (symbol,)
        ).fetchone()
        return NO_GENERATION if gen is None else int(gen)

    # ------------------------------------------------------------------ fill ledger

    def put_fill(self, fill: Fill) -> bool:
        """:meth:`add_fill` of a :class:`Fill` record."""
        with self._tx() as conn:
            cur = conn.execute(
                _INSERT_FILL,
                _fill_row(fill),
            )
            return cur.rowcount == 1

    def add_fill(
        self,
        symbol: str,
        trade_id: str,
        order_id: str,
        client_id: str,
        side: Side,
        price: Decimal,
        qty: Decimal,
        fee: Decimal,
        fee_asset: str,
        ts_ns: int,
    ) -> bool:
        """Record a fill; ``False`` (and no change) if ``(symbol, trade_id)`` is already in."""
        return self.put_fill(
            Fill(
                symbol, str(trade_id), order_id, client_id, side, price, qty, fee, fee_asset, ts_ns
            )
        )

    def record_report(
        self, client_id: str, payload_json: str, fill: Fill | None, ts_ns: int
    ) -> bool:
        """Journal a report about ``client_id`` and the fill it carries (if any) in ONE
        transaction; ``True`` if the fill was new to the ledger."""
        terminal = _is_terminal("report", _json(payload_json, "payload of report event"))
        row = None if fill is None else _fill_row(fill)
        with self._tx() as conn:
            conn.execute(
                "INSERT INTO events (client_id, kind, payload, terminal, ts_ns) "
                "VALUES (?, 'report', ?, ?, ?)",
                (client_id, payload_json, int(terminal), ts_ns),
            )
            if row is None:
                return False
            cur = conn.execute(
                _INSERT_FILL,
                row,
            )
            return cur.rowcount == 1

    def order_fills(self, client_id: str) -> list[Fill]:
        """The ledger's fills of one order, in the order they happened."""
        rows = self._conn.execute(
            "SELECT * FROM fills WHERE client_id = ? ORDER BY ts_ns, rowid", (client_id,)
        )
        return [_fill(row) for row in rows]

    def fills(self, symbol: str | None = None) -> list[Fill]:
        """Fills (of ``symbol``, or all), in the order they happened."""
        sql = "SELECT * FROM fills"
        if symbol is None:
            rows = self._conn.execute(sql + " ORDER BY ts_ns, rowid")
        else:
            rows = self._conn.execute(sql + " WHERE symbol = ? ORDER BY ts_ns, rowid", (symbol,))
        return [_fill(row) for row in rows]

    def position(self, symbol: str) -> Decimal:
        """Base held from the ledger: Σ bought − Σ sold (exact)."""
        rows = self._conn.execute("SELECT side, qty FROM fills WHERE symbol = ?", (symbol,))
        with localcontext() as ctx:
            ctx.prec = SUM_PRECISION
            return sum((_signed(side, Decimal(qty)) for side, qty in rows), ZERO)

    def level_inventory(self, symbol: str) -> dict[int, Decimal]:
        """Σ bought − Σ sold per grid level, the level read from each fill's client id.

        Fills whose client id is not in our format belong to no level (they still count
        in :meth:`position`).
        """
        out: dict[int, Decimal] = {}
        rows = self._conn.execute(
            "SELECT client_id, side, qty FROM fills WHERE symbol = ?", (symbol,)
        )
        with localcontext() as ctx:
            ctx.prec = SUM_PRECISION
            for client_id, side, qty in rows:
                parsed = parse_client_id(client_id)
                if parsed is not None:
                    out[parsed.level] = out.get(parsed.level, ZERO) + _signed(side, Decimal(qty))
        return out

    # ------------------------------------------------------------------ latches

    def set_latch(self, name: str, reason: str, ts_ns: int) -> None:
        """Set (or re-set with a new reason) the latch ``name``."""
        with self._tx() as conn:
            conn.execute(
                "INSERT INTO latches (name, reason, ts_ns) VALUES (?, ?, ?) "
                "ON CONFLICT (name) DO UPDATE SET reason = excluded.reason, "
                "ts_ns = excluded.ts_ns",
                (name, reason, ts_ns),
            )

    def clear_latch(self, name: str) -> bool:
        """Clear the latch ``name``; ``False`` if it was not set."""
        with self._tx() as conn:
            return conn.execute("DELETE FROM latches WHERE name = ?", (name,)).rowcount == 1

    def latches(self) -> dict[str, Latch]:
        rows = self._conn.execute("SELECT name, reason, ts_ns FROM latches ORDER BY name")
        return {name: Latch(reason, ts) for name, reason, ts in rows}
