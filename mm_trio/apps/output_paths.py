"""Checking output paths when a command starts, so that an hour of trading or replaying is
not lost to a path that cannot be written at the end (``--summary-json``, ``replay --out``).
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

from mm_trio.domain.errors import UsageError


def check_seconds(flag: str, value: float | None) -> None:
    """``value`` (if given) is a finite number of seconds > 0; :class:`UsageError` if not."""
    if value is not None and not (math.isfinite(value) and value > 0):
        raise UsageError(f"{flag}: must be a finite number of seconds > 0, got {value:g}")


def check_output_file(flag: str, path: Path) -> None:
    """``path`` can be written: not a directory, in an existing directory, writable (probed
    by opening it for appending, or creating and removing it: permission bits alone do not
    tell, e.g. for root or a read-only file system)."""
    shown = str(path)
    if path.is_dir():
        raise UsageError(f"{flag}: {shown!r} is a directory (give a file name)")
    parent = path.parent
    if not parent.is_dir():
        raise UsageError(f"{flag}: directory {str(parent)!r} does not exist")
    try:
        if path.exists():
            with path.open("ab"):
                pass
        else:
            with path.open("xb"):
                pass
            path.unlink()
    except OSError as exc:
        raise UsageError(f"{flag}: cannot write {shown!r}: {exc.strerror or exc}") from None


def check_output_dir(flag: str, path: Path) -> None:
    """``path`` is a writable directory, or can be made one (its nearest existing ancestor is
    a writable directory); nothing is created. :class:`UsageError` naming it if not."""
    shown = str(path)
    if path.exists() and not path.is_dir():
        raise UsageError(f"{flag}: {shown!r} exists and is not a directory")
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise UsageError(f"{flag}: {str(existing)!r} is not a directory")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as exc:
        raise UsageError(f"{flag}: cannot write into {str(existing)!r}: {exc.strerror}") from None
