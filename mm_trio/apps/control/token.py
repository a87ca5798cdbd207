"""Where the control plane listens and how a CLI verb finds its bearer token.

The token is :data:`TOKEN_ENV` when set; otherwise ``mm-trio run`` generates one and writes
it to a file only its user can read (``0600``, in a ``0700`` directory under the platformdirs
user state dir, one file per host and port), which the CLI verbs read for that address. The
file is removed when the run ends.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

import platformdirs

from mm_trio.apps.control.names import DEFAULT_HOST, DEFAULT_PORT, DEFAULT_URL, TOKEN_ENV
from mm_trio.apps.web import BearerToken, is_loopback

__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "DEFAULT_URL",
    "TOKEN_ENV",
    "ControlToken",
    "read_token_file",
    "remove_token_file",
    "token_path",
    "write_token_file",
]

_DIR_MODE = 0o700
_FILE_MODE = 0o600
APP_NAME = "mm-trio"
_LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")


class ControlToken(BearerToken):
    """The control plane's bearer token (never in ``repr``, compared in constant time)."""

    __slots__ = ()

    @classmethod
    def resolve(cls, environ: Mapping[str, str]) -> ControlToken:
        """:data:`TOKEN_ENV` (``ValueError`` naming it if unusable; empty counts as unset),
        else a fresh random token (``generated``)."""
        return cls.from_environ(TOKEN_ENV, environ)


def _directory() -> Path:
    return platformdirs.user_state_path(APP_NAME) / "control"


def token_path(host: str, port: int) -> Path:
    """The token file of the control plane on ``host:port``."""
    safe = host.strip("[]").replace(":", "_")
    return _directory() / f"{safe}-{port}.json"


def write_token_file(host: str, port: int, token: BearerToken) -> Path:
    """Write ``{"url", "token", "pid"}`` readable by this user only; returns the path."""
    path = token_path(host, port)
    path.parent.mkdir(mode=_DIR_MODE, parents=True, exist_ok=True)
    os.chmod(path.parent, _DIR_MODE)
    shown = f"[{host}]" if ":" in host else host
    body = json.dumps(
        {"url": f"http://{shown}:{port}", "token": token.reveal(), "pid": os.getpid()}
    )
    tmp = path.with_suffix(".tmp")
    # created 0600 from the start: the token is never readable by others, not even briefly
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, _FILE_MODE)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(body)
    os.replace(tmp, path)
    return path


def remove_token_file(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass


def read_token_file(url: str) -> str | None:
    """The token a run wrote for the control plane at ``url`` (None if there is none)."""
    parts = urlsplit(url)
    if parts.hostname is None:
        return None
    port = parts.port or DEFAULT_PORT
    hosts = [parts.hostname]
    if is_loopback(parts.hostname):  # the run may have written it under another name
        hosts += [h for h in _LOOPBACK_NAMES if h != parts.hostname]
    for host in hosts:
        try:
            data = json.loads(token_path(host, port).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        token = data.get("token") if isinstance(data, dict) else None
        if isinstance(token, str):
            return token
    return None
