"""Where a run's state store lives, and opening it for a run (``--state``, ``[run] state``).

Default: the embedded simulated venue keeps no store unless one is given (so the quick start
stays repeatable); a Binance venue keeps one per venue, base URL and API key under the
user's data directory (platformdirs), so a restart with the same command finds its state.
The API key itself is never part of the file name: a digest of it is.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import platformdirs

from mm_trio.store import StateStore, StoreLock

APP_NAME = "mm-trio"
KEY_DIGEST_CHARS = 12


def default_state_path(venue: str, base_url: str | None, api_key: str | None) -> Path | None:
    """The store of an account on ``venue`` (``None`` for the simulated venue)."""
    if venue == "sim":
        return None
    account = hashlib.sha256(f"{venue}\0{base_url or ''}\0{api_key or ''}".encode()).hexdigest()
    return platformdirs.user_data_path(APP_NAME) / f"{venue}-{account[:KEY_DIGEST_CHARS]}.db"


def state_path(
    *,
    given: Path | None,
    configured: str | None,
    disabled: bool,
    venue: str,
    base_url: str | None,
    api_key: str | None,
) -> Path | None:
    """``--state`` wins over ``[run] state``, which wins over the default; ``--no-state``
    turns the store off."""
    if disabled:
        return None
    if given is not None:
        return given
    if configured:
        return Path(configured).expanduser()
    return default_state_path(venue, base_url, api_key)


def open_state(path: Path) -> tuple[StateStore, StoreLock]:
    """Lock and open the store at ``path`` (its directory is made if missing);
    :class:`~mm_trio.store.StoreError` naming the file if it cannot be used."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = StoreLock(path).acquire()
    try:
        return StateStore.open(path), lock
    except BaseException:
        lock.release()
        raise
