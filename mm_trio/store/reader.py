"""A read-only view of a state store file, for audits (``mm-trio trades`` / ``mm-trio orders``).

:class:`StoreReader` never creates, migrates or writes the file, and may read it while a
trader holds it open in WAL mode (a reader never waits for a writer there, and sees the last
committed transaction). How it opens the file:

* a file with a ``-wal`` or ``-journal`` next to it (a trader has it open, or was killed
  with transactions not yet checkpointed) is opened with ``mode=ro``: SQLite reads the WAL
  and shares its index (``-shm``) with the writer;
* a file with neither (closed cleanly: everything is in the main file) is opened
  ``immutable``: no lock and no ``-wal`` / ``-shm`` are created next to it. A writer that
  opens the file meanwhile writes to its own WAL; only a checkpoint changes the main file,
  so a read is kept only if the file's identity, size and mtime are the same after it, and
  is otherwise done again through ``mode=ro``.

Every read is one read transaction: what it returns is one consistent state of the file.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from mm_trio.domain.model import TERMINAL_STATUSES
from mm_trio.store.schema import (
    DEFAULT_BUSY_TIMEOUT_S,
    ENDED_KIND,
    SCHEMA_VERSION,
    Fill,
    Intent,
    JournalEvent,
    StoreError,
    StoreVersionError,
    _fill,
    _intent,
    _newer_message,
)

__all__ = ["OrderView", "StoreReader"]

SENT_STATUS = "SENT"
"""Status of a journalled intent with no answer or report about it yet."""
ENDED_STATUS = "ENDED"
"""Status of an intent whose outcome recovery concluded (an ``"ended"`` event)."""
REPORT_KIND = "report"
FIRST_READABLE_VERSION = 1
"""The oldest schema version this reader knows the tables of (0: not a state store)."""
_SIDE_FILES = ("-wal", "-journal")
"""Next to a database with uncheckpointed or unfinished transactions."""

_Query = tuple[str, tuple[Any, ...]]
_FileId = tuple[int, int, int, int]


@dataclass(frozen=True, slots=True)
class OrderView:
    """The journal's view of one of our orders: its intent and what was heard about it.

    ``status``: the last report's status, :data:`SENT_STATUS` if none yet,
    :data:`ENDED_STATUS` after an ``"ended"`` event (``reason`` says why). ``filled`` and
    ``order_id`` come from the reports (text as written; empty if never reported). ``open``:
    no terminal event (what a restart must resolve).
    """

    intent: Intent
    status: str
    reason: str
    filled: str
    order_id: str
    updated_ns: int
    open: bool
    events: tuple[JournalEvent, ...]


class StoreReader:
    """A state store opened read-only. Use :meth:`open`; close with :meth:`close` or ``with``.

    Raises :class:`~mm_trio.store.schema.StoreError` (the message names the file) for a
    missing file, one that is not an SQLite database or not a state store, a corrupt one,
    and :class:`~mm_trio.store.schema.StoreVersionError` for a newer schema.
    """

    def __init__(self, path: Path, busy_timeout_s: float) -> None:
        self.path = path
        self._busy_timeout_s = busy_timeout_s
        self._conn: sqlite3.Connection | None = None
        self._immutable = False
        self._file_id: _FileId | None = None

    @classmethod
    def open(cls, path: str | Path, *, busy_timeout_s: float = DEFAULT_BUSY_TIMEOUT_S) -> Self:
        reader = cls(Path(path), busy_timeout_s)
        reader._check_header()
        reader._connect(immutable=not reader._has_side_files())
        try:
            (version_rows, check_rows) = reader._read(_VERSION_QUERIES)
        except BaseException:
            reader.close()
            raise
        version = version_rows[0][0]
        check = " ".join(" ".join(str(row[0]).split()) for row in check_rows)
        if version > SCHEMA_VERSION:
            reader.close()
            raise StoreVersionError(_newer_message(reader.path, version, SCHEMA_VERSION))
        if version < FIRST_READABLE_VERSION:
            reader.close()
            raise StoreError(f"state store {reader.path} is not an mm-trio state store (no schema)")
        if check != "ok":
            reader.close()
            raise StoreError(f"state store {reader.path} is corrupt: {check}")
        return reader

    # ------------------------------------------------------------------ opening

    def _check_header(self) -> None:
        # Only stat here: opening and closing the file outside SQLite would drop the POSIX
        # locks that any other connection of this process holds on it.
        path = self.path
        if not path.exists():
            raise StoreError(f"state store {path} does not exist")
        if not path.is_file():
            raise StoreError(f"state store {path} is not a file")
        if path.stat().st_size == 0:
            raise StoreError(f"state store {path} is empty: not an mm-trio state store")

    def _has_side_files(self) -> bool:
        return any(Path(f"{self.path}{suffix}").exists() for suffix in _SIDE_FILES)

    def _stat(self) -> _FileId:
        try:
            st = os.stat(self.path)
        except OSError as e:
            raise StoreError(f"state store {self.path} cannot be read: {e.strerror}") from None
        return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)

    def _connect(self, *, immutable: bool) -> None:
        self.close()
        uri = self.path.resolve().as_uri() + ("?immutable=1" if immutable else "?mode=ro")
        try:
            self._file_id = self._stat() if immutable else None
            self._conn = sqlite3.connect(
                uri, uri=True, timeout=self._busy_timeout_s, isolation_level=None
            )
        except (sqlite3.Error, OSError) as e:
            raise StoreError(f"state store {self.path} cannot be opened read-only: {e}") from None
        self._immutable = immutable

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # ------------------------------------------------------------------ reading

    def _read(self, queries: Sequence[_Query]) -> list[list[Any]]:
        """The rows of ``queries``, all read in one read transaction."""
        if self._conn is None:
            raise StoreError(f"state store {self.path} is closed")
        if self._immutable:
            try:
                rows = self._transaction(queries)
            except StoreError:
                if self._stat() == self._file_id:
                    raise  # the file did not move under us: it is what it is
                rows = None
            if rows is not None and self._stat() == self._file_id:
                return rows
            # a writer checkpointed into the file while we read it: read it the shared way
            self._connect(immutable=False)
        return self._transaction(queries)

    def _transaction(self, queries: Sequence[_Query]) -> list[list[Any]]:
        conn = self._conn
        assert conn is not None
        try:
            conn.execute("BEGIN")
            try:
                return [conn.execute(sql, params).fetchall() for sql, params in queries]
            finally:
                conn.execute("COMMIT")
        except sqlite3.OperationalError as e:
            if e.sqlite_errorname == "SQLITE_READONLY_ROLLBACK":
                raise StoreError(
                    f"state store {self.path} holds an unfinished transaction of a writer that "
                    f"crashed ({self.path}-journal); only a writer may roll it back, so open it "
                    "once with mm-trio run"
                ) from None
            if "no such table" in str(e):
                raise StoreError(
                    f"state store {self.path} is not an mm-trio state store ({e})"
                ) from None
            raise StoreError(f"state store {self.path} cannot be read: {e}") from None
        except sqlite3.DatabaseError as e:
            if e.sqlite_errorname == "SQLITE_NOTADB":
                raise StoreError(
                    f"state store {self.path} is not an SQLite database ({e})"
                ) from None
            raise StoreError(f"state store {self.path} is corrupt or not a database: {e}") from None

    def version(self) -> int:
        ((version,),) = self._read([("PRAGMA user_version", ())])[0]
        return int(version)

    def fills(self, symbol: str | None = None) -> list[Fill]:
        """The fill ledger (of ``symbol``, or all), ordered by time, then trade id."""
        sql = "SELECT * FROM fills"
        params: tuple[Any, ...] = ()
        if symbol is not None:
            sql, params = sql + " WHERE symbol = ?", (symbol,)
        (rows,) = self._read([(sql, params)])
        fills = [self._row(_fill, row) for row in rows]
        fills.sort(key=lambda f: (f.ts_ns, _id_key(f.trade_id), f.symbol))
        return fills

    def orders(self, symbol: str | None = None, *, open_only: bool = False) -> list[OrderView]:
        """One :class:`OrderView` per journalled client id (of ``symbol``, or all), ordered
        by the time the intent was journalled; ``open_only``: those with no terminal event."""
        where, params = ("", ()) if symbol is None else (" WHERE symbol = ?", (symbol,))
        events_sql = "SELECT seq, client_id, kind, payload, terminal, ts_ns FROM events"
        if symbol is not None:
            events_sql += " WHERE client_id IN (SELECT client_id FROM intents WHERE symbol = ?)"
        events_sql += " ORDER BY seq"
        intent_rows, event_rows = self._read(
            [("SELECT * FROM intents" + where, params), (events_sql, params)]
        )
        by_cid: dict[str, list[JournalEvent]] = {}
        for s, c, k, p, t, ts in event_rows:
            by_cid.setdefault(c, []).append(JournalEvent(s, c, k, p, bool(t), ts))
        views = [_view(self._row(_intent, row), by_cid.get(row[0], [])) for row in intent_rows]
        if open_only:
            views = [v for v in views if v.open]
        views.sort(key=lambda v: (v.intent.ts_ns, v.intent.client_id))
        return views

    def _row(self, convert: Any, row: Any) -> Any:
        try:
            return convert(row)
        except (StoreError, ValueError, TypeError) as e:
            raise StoreError(f"state store {self.path} holds a malformed row ({e})") from None


_VERSION_QUERIES: tuple[_Query, ...] = (
    ("PRAGMA user_version", ()),
    ("PRAGMA quick_check", ()),
)


def _id_key(trade_id: str) -> tuple[int, int, str]:
    """Venue trade ids are integers (sorted as numbers); anything else after them, as text."""
    return (0, int(trade_id), "") if trade_id.isdigit() else (1, 0, trade_id)


def _decimal_text(value: object) -> str:
    """A number from a payload as written (``""`` if it is not a decimal)."""
    if isinstance(value, str):
        try:
            Decimal(value)
        except InvalidOperation:
            return ""
        return value
    return ""


def _view(intent: Intent, events: list[JournalEvent]) -> OrderView:
    """An order as its journal tells it. A final status is not undone by a report that is
    not final: reports arrive out of order (a late NEW after the CANCELED), and the strategy
    ignores them for an ended order, so the view does too (a later final report, the
    venue's word on an order we presumed gone, does replace it); filled is the highest
    reported."""
    status, reason, filled, order_id = SENT_STATUS, "", "", ""
    final = False
    for ev in events:
        try:
            payload = json.loads(ev.payload_json)
        except ValueError:
            payload = None
        if not isinstance(payload, dict):
            payload = {}
        if ev.kind == ENDED_KIND:
            if not final:
                status = ENDED_STATUS
                reason = str(payload.get("reason", ""))
            final = True
        elif ev.kind == REPORT_KIND:
            reported = str(payload.get("status") or "")
            ends = reported in TERMINAL_STATUSES
            if reported and (ends or not final):  # a later final report is the venue's word
                status = reported
                reason = str(payload.get("reason", ""))
                final = final or ends
            cum = _decimal_text(payload.get("cum_qty"))
            if cum and (not filled or Decimal(cum) > Decimal(filled)):
                filled = cum
            order_id = str(payload.get("order_id") or order_id)
    return OrderView(
        intent=intent,
        status=status,
        reason=reason,
        filled=filled,
        order_id=order_id,
        updated_ns=events[-1].ts_ns if events else intent.ts_ns,
        open=not any(ev.terminal for ev in events),
        events=tuple(events),
    )
