"""Binance request signatures, verified the way Binance does.

REST: ``totalParams`` is the query string concatenated (no ``&``) with the request body, both
exactly as received, with the ``signature=...`` parameter taken out. HMAC-SHA256 signatures
are hex (case-insensitive); Ed25519 signatures are base64 (usually percent-encoded in the
request). WebSocket API: the payload is every parameter except ``signature``, sorted by name,
``key=value`` joined with ``&``.

Admin: :class:`AdminToken` is the bearer token of ``/_admin/*``, compared in constant time.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote_plus

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from mm_trio.apps.paper.config import ADMIN_TOKEN_ENV, AccountConfig
from mm_trio.apps.web import BearerToken

__all__ = ["AdminToken", "Credentials", "split_signature", "ws_payload"]


class AdminToken(BearerToken):
    """The bearer token of the admin endpoints; never in ``repr``, compared in constant time.

    ``generated``: no token was configured, so this one was made at start (the server logs
    it once, for the operator).
    """

    __slots__ = ()

    @classmethod
    def resolve(cls, configured: str | None, environ: Mapping[str, str]) -> AdminToken:
        """``configured`` (already validated), else :data:`ADMIN_TOKEN_ENV` (``ValueError``
        naming it if unusable; empty counts as unset), else a fresh random token."""
        if configured is not None:
            return cls(configured)
        return cls.from_environ(ADMIN_TOKEN_ENV, environ)


class Credentials:
    """Verifier for one account (the secret is kept private and out of ``repr``)."""

    __slots__ = ("api_key", "_secret", "_ed25519")

    def __init__(self, account: AccountConfig) -> None:
        self.api_key = account.api_key
        self._secret = account.api_secret.encode() if account.api_secret is not None else None
        self._ed25519: Ed25519PublicKey | None = None
        if account.ed25519_public_key is not None:
            key = load_pem_public_key(account.ed25519_public_key.encode())
            if not isinstance(key, Ed25519PublicKey):
                raise ValueError(f"account {account.api_key!r}: not an Ed25519 public key")
            self._ed25519 = key

    def __repr__(self) -> str:
        return f"Credentials(api_key={self.api_key!r}, secret=***)"

    def verify(self, payload: bytes, signature: str) -> bool:
        """True if ``signature`` (already percent-decoded) signs ``payload``."""
        if self._secret is not None and len(signature) == 64:
            expected = hmac.new(self._secret, payload, hashlib.sha256).hexdigest()
            if hmac.compare_digest(expected, signature.lower()):
                return True
        if self._ed25519 is not None:
            try:
                # as on Binance: a base64 '+' sent without percent-encoding arrives as a
                # space and the signature fails
                raw = base64.b64decode(signature, validate=True)
                self._ed25519.verify(raw, payload)
            except (InvalidSignature, binascii.Error, ValueError):
                return False
            return True
        return False


def _strip(part: bytes) -> tuple[bytes, bytes | None]:
    """Remove the ``signature=`` parameter from a raw urlencoded string."""
    if b"signature=" not in part:
        return part, None
    kept: list[bytes] = []
    sig: bytes | None = None
    for item in part.split(b"&"):
        if item.startswith(b"signature=") and sig is None:
            sig = item[len(b"signature=") :]
        else:
            kept.append(item)
    return b"&".join(kept), sig


def split_signature(query: bytes, body: bytes) -> tuple[bytes, str | None]:
    """``(totalParams without the signature, decoded signature or None)``.

    The query string's signature wins if both carry one (Binance reads the query first).
    """
    q, sig_q = _strip(query)
    b, sig_b = _strip(body)
    sig = sig_q if sig_q is not None else sig_b
    return q + b, None if sig is None else unquote_plus(sig.decode("latin-1"))


def _ws_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def ws_payload(params: Mapping[str, Any]) -> bytes:
    """The WebSocket API signature payload: params except ``signature``, sorted by name."""
    items = sorted((k, v) for k, v in params.items() if k != "signature")
    return "&".join(f"{k}={_ws_value(v)}" for k, v in items).encode()
