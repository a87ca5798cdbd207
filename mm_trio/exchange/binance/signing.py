"""Request signing for Binance spot: HMAC-SHA256 (hex) and Ed25519 (base64).

* REST ``SIGNED`` endpoints: the signature covers ``totalParams``, i.e. exactly the query
  string that is sent (we send every parameter in the query string, none in the body), and is
  appended as ``&signature=...``. HMAC signatures are lowercase hex; Ed25519 signatures are
  base64 and therefore percent-encoded in the URL (:func:`signed_query`).
* WebSocket API requests (``userDataStream.subscribe.signature``): the payload is every
  parameter except ``signature``, sorted by name, formatted ``name=value`` and joined by ``&``
  (:func:`ws_payload`); the signature is put in ``params`` unencoded.

Signers never show their key: ``repr`` and ``str`` print a constant mask.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Protocol
from urllib.parse import quote, urlencode

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

__all__ = [
    "MASK",
    "Ed25519Signer",
    "HmacSigner",
    "Signer",
    "encode_params",
    "make_signer",
    "signed_query",
    "ws_payload",
]

MASK = "***"
"""What a secret looks like in any repr, log line or error message."""


class Signer(Protocol):
    """Something that signs a payload string for Binance."""

    kind: str

    def sign(self, payload: str) -> str:
        """The signature of ``payload`` as Binance expects it (hex or base64)."""
        ...


class HmacSigner:
    """HMAC-SHA256 with the API secret; lowercase hex signature."""

    kind = "hmac"
    __slots__ = ("_key",)

    def __init__(self, secret: str) -> None:
        if not secret:
            raise ValueError("HMAC signer: empty API secret")
        self._key = secret.encode()

    def sign(self, payload: str) -> str:
        return hmac.new(self._key, payload.encode(), hashlib.sha256).hexdigest()

    def __repr__(self) -> str:
        return f"HmacSigner(secret={MASK})"

    __str__ = __repr__


class Ed25519Signer:
    """Ed25519 with a private key (PEM, PKCS#8); base64 signature."""

    kind = "ed25519"
    __slots__ = ("_key",)

    def __init__(self, key: Ed25519PrivateKey) -> None:
        if not isinstance(key, Ed25519PrivateKey):
            raise TypeError("Ed25519 signer: not an Ed25519 private key")
        self._key = key

    @classmethod
    def from_pem(cls, data: bytes, password: bytes | None = None) -> Ed25519Signer:
        """Load a PEM private key; the error never echoes the key material."""
        try:
            key = serialization.load_pem_private_key(data, password=password)
        except (ValueError, TypeError) as exc:
            raise ValueError(
                f"Ed25519 signer: cannot load the PEM private key ({type(exc).__name__})"
            ) from None
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError("Ed25519 signer: the PEM key is not an Ed25519 private key")
        return cls(key)

    @classmethod
    def from_file(cls, path: str | Path, password: bytes | None = None) -> Ed25519Signer:
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise ValueError(
                f"Ed25519 signer: cannot read key file {str(path)!r}: {exc.strerror}"
            ) from None
        return cls.from_pem(data, password)

    def sign(self, payload: str) -> str:
        return base64.b64encode(self._key.sign(payload.encode("ascii"))).decode("ascii")

    def public_key_pem(self) -> bytes:
        """The public half (what is registered with Binance)."""
        return self._key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def __repr__(self) -> str:
        return f"Ed25519Signer(key={MASK})"

    __str__ = __repr__


def make_signer(
    api_key: str | None,
    api_secret: str | None,
    ed25519_key_path: str | None,
    ed25519_password: bytes | None = None,
) -> Signer | None:
    """The signer of the given key material: HMAC with a secret, Ed25519 with a PEM key file,
    ``None`` with neither (public endpoints only). Both, or a key without an API key, is a
    ``ValueError``."""
    if api_secret and ed25519_key_path:
        raise ValueError("give either an API secret (HMAC) or an Ed25519 key, not both")
    signer: Signer | None = None
    if api_secret:
        signer = HmacSigner(api_secret)
    elif ed25519_key_path:
        signer = Ed25519Signer.from_file(ed25519_key_path, ed25519_password)
    if signer is not None and not api_key:
        raise ValueError("a signing key was given without an API key")
    return signer


def encode_params(params: Mapping[str, object] | Iterable[tuple[str, object]]) -> str:
    """``application/x-www-form-urlencoded`` query string, in the given order."""
    items = params.items() if isinstance(params, Mapping) else params
    return urlencode([(k, str(v)) for k, v in items])


def signed_query(query: str, signer: Signer) -> str:
    """``query`` plus ``&signature=...`` signed over exactly ``query`` (what is sent)."""
    signature = quote(signer.sign(query), safe="")
    return f"{query}&signature={signature}" if query else f"signature={signature}"


def ws_payload(params: Mapping[str, object]) -> str:
    """WebSocket API signature payload: params except ``signature``, sorted, ``k=v&...``."""
    return "&".join(f"{k}={params[k]}" for k in sorted(params) if k != "signature")
