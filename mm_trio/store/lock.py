"""One trader per state store: an exclusive advisory lock on ``<store>.lock``.

SQLite lets several processes write one file in turn; two traders on one account would
interleave their journals and fight over the same orders. The lock is held for the whole
run and released by the OS when the process ends, however it ends (``kill -9`` included), so
a crash never leaves a stale lock behind. Readers (``mm-trio trades`` / ``orders``) do not
take it.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from types import TracebackType
from typing import Self

from mm_trio.store.schema import StoreError


class StoreLock:
    """Hold :meth:`acquire`'d until :meth:`release` (or the end of the process)."""

    def __init__(self, store_path: str | Path) -> None:
        self.path = Path(f"{store_path}.lock")
        self._fd: int | None = None

    def acquire(self) -> Self:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise StoreError(f"state store lock {self.path} cannot be opened: {exc}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise StoreError(
                f"state store {str(self.path)[: -len('.lock')]} is in use by another mm-trio "
                "process (one trader per account and store)"
            ) from None
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the lock
            self._fd = None

    def __enter__(self) -> Self:
        return self.acquire()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
