"""What the project's HTTP servers share (the paper venue and the control plane): a bearer
token compared in constant time, bodies read under a cap, strict JSON, loopback checks and
the hypercorn settings of a starlette app on hypercorn's trio worker."""

from __future__ import annotations

import hmac
import ipaddress
import json
import secrets
from collections.abc import Mapping
from decimal import Decimal
from typing import Any, Self

from hypercorn.config import Config as HypercornConfig
from starlette.requests import Request

__all__ = [
    "BearerToken",
    "BodyTooLarge",
    "hypercorn_config",
    "is_loopback",
    "loads_strict",
    "read_body",
    "token_error",
]

_BEARER = "bearer"
MIN_TOKEN_CHARS = 16
GENERATED_TOKEN_BYTES = 32
"""Random bytes of a generated token (``secrets.token_urlsafe``: 43 characters)."""
"""Shortest bearer token accepted: anything shorter is guessable by a local process."""
GRACEFUL_TIMEOUT_S = 1.0
"""How long hypercorn lets open requests finish once the server is told to stop."""
KEEP_ALIVE_TIMEOUT_S = 30.0


def token_error(token: str) -> str | None:
    """Why ``token`` cannot be a bearer token (None if it can)."""
    if len(token) < MIN_TOKEN_CHARS:
        return f"must be at least {MIN_TOKEN_CHARS} characters"
    if not token.isascii() or not token.isprintable() or any(c.isspace() for c in token):
        return "must be printable ASCII without spaces (it travels in an HTTP header)"
    return None


class BearerToken:
    """A bearer token; never in ``repr``, compared in constant time.

    ``generated``: no token was configured, so this one was made at start.
    """

    __slots__ = ("_value", "generated")

    def __init__(self, value: str, *, generated: bool = False) -> None:
        self._value = value.encode("latin-1")
        self.generated = generated

    @classmethod
    def from_environ(cls, name: str, environ: Mapping[str, str]) -> Self:
        """``environ[name]`` (``ValueError`` naming ``name`` if unusable; empty counts as
        unset), else a fresh random token (``generated``)."""
        from_env = environ.get(name, "")
        if from_env:
            why = token_error(from_env)
            if why is not None:  # never echo the token itself
                raise ValueError(f"{name} {why}")
            return cls(from_env)
        return cls(secrets.token_urlsafe(GENERATED_TOKEN_BYTES), generated=True)

    def reveal(self) -> str:
        """The token itself (for a start-up line, a token file, tests' request headers)."""
        return self._value.decode("latin-1")

    def matches(self, authorization: str | None) -> bool:
        """True if an ``Authorization`` header value is ``Bearer <this token>``."""
        if not authorization:
            return False
        scheme, _, credentials = authorization.strip().partition(" ")
        if scheme.lower() != _BEARER:
            return False
        try:
            sent = credentials.strip().encode("latin-1")
        except UnicodeEncodeError:
            return False
        return hmac.compare_digest(sent, self._value)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(***)"


class BodyTooLarge(Exception):
    """A request body over the cap (its ``Content-Length`` said so, or it kept coming)."""

    def __init__(self, cap: int) -> None:
        super().__init__(f"request body over {cap} bytes")
        self.cap = cap


async def read_body(request: Request, cap: int) -> bytes:
    """The body, read chunk by chunk and given up on as soon as it passes ``cap`` bytes
    (:class:`BodyTooLarge`): a client cannot make the server hold more than that."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > cap:
        raise BodyTooLarge(cap)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > cap:
            raise BodyTooLarge(cap)
        chunks.append(chunk)
    return b"".join(chunks)


def _constant(name: str) -> Decimal:
    # NaN / Infinity are not JSON; kept as Decimals so that the field check refuses them
    # naming the field, rather than a parse error naming nothing
    return Decimal(name)


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


def loads_strict(body: bytes) -> Any:
    """JSON with fractions as exact Decimals (``NaN`` / ``Infinity`` too: every field check
    requires finite numbers); a duplicate key is a ``ValueError``."""
    return json.loads(
        body.decode("utf-8"),
        parse_float=Decimal,
        parse_constant=_constant,
        object_pairs_hook=_no_duplicates,
    )


def is_loopback(host: str) -> bool:
    """``127.0.0.0/8``, ``::1`` or ``localhost``."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def hypercorn_config(
    host: str, port: int, *, max_message_bytes: int, ws_ping_interval: float | None = None
) -> HypercornConfig:
    """Hypercorn settings for one of our servers: bound to ``host:port`` (0: any free port),
    no access log, a short graceful stop."""
    hc = HypercornConfig()
    hc.bind = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
    if ws_ping_interval is not None:
        hc.websocket_ping_interval = ws_ping_interval
    hc.websocket_max_message_size = max_message_bytes
    hc.accesslog = None
    hc.loglevel = "WARNING"  # not hypercorn's own "Running on ..." line: we print our own
    hc.graceful_timeout = GRACEFUL_TIMEOUT_S
    hc.keep_alive_timeout = KEEP_ALIVE_TIMEOUT_S
    return hc
