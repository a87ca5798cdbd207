"""Persistent state of one trading account (SPEC §9): see :mod:`mm_trio.store.state`."""

from __future__ import annotations

from mm_trio.store.lock import StoreLock
from mm_trio.store.schema import SCHEMA_VERSION
from mm_trio.store.state import (
    MIGRATIONS,
    Fill,
    Intent,
    JournalEvent,
    Latch,
    Migration,
    StateStore,
    StoreError,
    StoreVersionError,
    SymbolRecord,
)

__all__ = [
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "Fill",
    "Intent",
    "JournalEvent",
    "Latch",
    "Migration",
    "StateStore",
    "StoreError",
    "StoreLock",
    "StoreVersionError",
    "SymbolRecord",
]
