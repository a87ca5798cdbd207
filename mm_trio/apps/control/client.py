"""The CLI verbs (``mm-trio status``, ``symbols list|add|remove``, ``pause``, ``resume``,
``kill``): clients of a running ``mm-trio run``'s control plane, over httpx.

Exit codes: 0 ok; 1 the control plane cannot be reached or refused us (no or wrong token,
Host refused, shutting down); 2 bad input (a malformed or unknown symbol, a bad grid key or
value: the message names it, and nothing changed).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from typing import Any, TextIO
from urllib.parse import quote, urlsplit

import httpx

from mm_trio.apps.control.names import URL_ENV
from mm_trio.apps.control.token import DEFAULT_URL, TOKEN_ENV, read_token_file, token_path
from mm_trio.domain.errors import UsageError
from mm_trio.domain.model import SymbolError, parse_symbol

__all__ = ["ControlClient", "URL_ENV", "VerbError", "parse_overrides", "run_verb"]

EXIT_OK = 0
EXIT_UNREACHABLE = 1
EXIT_USAGE = 2
REQUEST_TIMEOUT_S = 30.0
"""Long enough for a removal (it waits for the venue to acknowledge the cancels)."""
_BAD_INPUT = frozenset({400, 404, 409, 413, 422})


class VerbError(Exception):
    """A verb failed: the one-line message and the exit code."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def control_url(given: str | None) -> str:
    """``--control URL``, else :data:`URL_ENV`, else the default; checked."""
    url = given or os.environ.get(URL_ENV) or DEFAULT_URL
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"--control: expected a URL like {DEFAULT_URL}, got {url!r}")
    try:
        parts.port  # noqa: B018 - a bad port raises here
    except ValueError:
        raise UsageError(f"--control: bad port in {url!r}") from None
    return url.rstrip("/")


def resolve_token(url: str) -> str | None:
    """:data:`TOKEN_ENV`, else the token file the run wrote for ``url`` (None: neither)."""
    return os.environ.get(TOKEN_ENV) or read_token_file(url)


def _no_token(url: str) -> VerbError:
    parts = urlsplit(url)
    where = token_path(parts.hostname or "", parts.port or 0)
    return VerbError(
        f"the control API at {url} needs its token: set {TOKEN_ENV}, or run this as the "
        f"user whose mm-trio run wrote {where}",
        EXIT_UNREACHABLE,
    )


class ControlClient:
    """One control plane: ``request`` returns the JSON answer or raises :class:`VerbError`."""

    def __init__(self, url: str, token: str | None, *, timeout: float = REQUEST_TIMEOUT_S) -> None:
        self.url = url
        self.has_token = token is not None
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        self._client = httpx.Client(base_url=url, headers=headers, timeout=timeout)

    def close(self) -> None:
        self._client.close()

    def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        try:
            response = self._client.request(method, path, json=body)
        except httpx.HTTPError as exc:
            raise VerbError(
                f"cannot reach the control API at {self.url}: {exc or type(exc).__name__} "
                "(is mm-trio run running, with --control on this address?)",
                EXIT_UNREACHABLE,
            ) from None
        try:
            data = response.json()
        except ValueError:
            data = {"error": response.text[:200]}
        if response.is_success:
            return data
        if response.status_code == 401 and not self.has_token:
            raise _no_token(self.url)
        why = data.get("error", response.reason_phrase) if isinstance(data, dict) else str(data)
        code = EXIT_USAGE if response.status_code in _BAD_INPUT else EXIT_UNREACHABLE
        raise VerbError(f"{why} (HTTP {response.status_code})", code)


def parse_overrides(items: Sequence[str]) -> dict[str, Any]:
    """``--set step=0.002 --set levels_below=3``: a grid key and its value (integers and
    booleans as such, anything else as a string, so decimals stay exact)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UsageError(f"--set: expected KEY=VALUE (e.g. step=0.002), got {item!r}")
        text = text.strip()
        value: Any = text
        if text.lower() in ("true", "false"):
            value = text.lower() == "true"
        elif text.lstrip("-").isdigit():
            value = int(text)
        out[key] = value
    return out


def _symbol(text: str | None) -> str | None:
    if text is None:
        return None
    try:
        parse_symbol(text)
    except SymbolError as exc:
        raise UsageError(str(exc)) from None
    return text


def _line(sym: dict[str, Any]) -> str:
    pnl = sym["pnl"]
    brk = ",".join(sym["breakers"]) or "-"
    reason = f"  ({sym['reason']})" if sym["reason"] else ""
    return (
        f"{sym['symbol']:<10} {sym['state']:<8} mid={sym['mid'] or '-'} pos={sym['position']} "
        f"open={sym['open_orders']} fills={sym['fills']} pnl={pnl['total']} "
        f"(realized {pnl['realized']}, unrealized {pnl['unrealized']}, fees {pnl['fees']}) "
        f"brk={brk}{reason}"
    )


def format_status(status: dict[str, Any]) -> str:
    lines = [_line(s) for s in status["symbols"].values()] or ["(no symbol running)"]
    pnl, exp, lim = status["pnl"], status["exposure"], status["limiter"]
    lines.append(
        f"total pnl={pnl['total']} (realized {pnl['realized']}, unrealized "
        f"{pnl['unrealized']}, fees {pnl['fees']})"
    )
    lines.append(
        f"exposure {exp['total']}/{exp['max_total']} (per symbol cap {exp['max_symbol']})"
        + (" REDUCE-ONLY" if exp["reduce_only_total"] else "")
    )
    lines.append(
        f"limiter weight {lim['weight_used']}/{lim['weight_limit']} per min, orders "
        f"{lim['orders_10s_used']}/{lim['orders_10s_limit']} per 10s, pauses {lim['pauses']}"
    )
    streams = ", ".join(f"{k} {v}" for k, v in status["streams"].items()) or "-"
    lines.append(f"venue {status['venue']}, streams: {streams}, up {status['uptime_seconds']:.0f}s")
    if status["killed"]:
        lines.append(f"KILLED: {status['kill_reason']} (mm-trio resume to trade again)")
    return "\n".join(lines)


def run_verb(
    verb: str,
    *,
    url: str | None,
    as_json: bool,
    symbol: str | None = None,
    overrides: Sequence[str] = (),
    reason: str | None = None,
    out: TextIO = sys.stdout,
) -> int:
    """Perform one verb; print its answer (``as_json``: the API's JSON as it came)."""
    base = control_url(url)
    symbol = _symbol(symbol)
    grid = parse_overrides(overrides)
    client = ControlClient(base, resolve_token(base))
    try:
        text: str
        if verb == "status":
            data = client.request("GET", "/api/status")
            text = format_status(data)
        elif verb == "list":
            data = client.request("GET", "/api/symbols")
            text = "\n".join(f"{s['symbol']:<10} {s['state']}" for s in data["symbols"]) or (
                "(no symbol running)"
            )
        elif verb == "add":
            assert symbol is not None
            body: dict[str, Any] = {"symbol": symbol}
            if grid:
                body["grid"] = grid
            data = client.request("POST", "/api/symbols", body)
            text = f"added {data['symbol']} ({data['state']})"
        elif verb == "remove":
            assert symbol is not None
            data = client.request("DELETE", "/api/symbols/" + quote(symbol, safe=""))
            text = f"removed {data['symbol']} ({data['open_orders']} open orders left)"
        elif verb == "pause":
            data = client.request("POST", "/api/pause", {"symbol": symbol} if symbol else {})
            text = "paused " + (", ".join(data["paused"]) or "nothing (no symbol runs)")
        elif verb == "resume":
            data = client.request("POST", "/api/resume", {"symbol": symbol} if symbol else {})
            text = ("kill switch lifted; " if data["kill_lifted"] else "") + (
                "resumed " + (", ".join(data["resumed"]) or "nothing")
            )
        elif verb == "kill":
            data = client.request("POST", "/api/kill", {"reason": reason} if reason else {})
            text = f"KILLED: {data['reason']} (every order cancelled; mm-trio resume to trade)"
        else:  # pragma: no cover - argparse only offers the verbs above
            raise UsageError(f"unknown verb {verb!r}")
    finally:
        client.close()
    print(json.dumps(data, indent=2) if as_json else text, file=out, flush=True)
    return EXIT_OK
