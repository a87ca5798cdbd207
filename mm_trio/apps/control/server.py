"""Serve the control plane with hypercorn's trio worker, inside the run's nursery.

``port = await nursery.start(serve_control, orch, token, host, port)`` binds (port 0 picks a
free one) and reports the bound port; cancelling the nursery stops it. Every request passes
two checks before any endpoint runs, in a plain ASGI middleware (so the event stream and
``/metrics`` are covered too):

* the ``Host`` header names a loopback host or the bound host (a page on another site that
  resolves its own name to 127.0.0.1 — DNS rebinding — is refused with 421);
* ``Authorization: Bearer <token>``, compared in constant time (else 401) — except a GET of
  the dashboard page or one of its assets, which hold no data (see ``dashboard``).

No CORS headers are ever sent, so no other origin's page can read an answer.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any, TextIO

import attrs
import trio
from hypercorn.trio import serve
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from mm_trio.apps.control import api, dashboard
from mm_trio.apps.control.api import ControlContext, json_response
from mm_trio.apps.control.metrics import CONTENT_TYPE, OrchestratorCollector, render_off_loop
from mm_trio.apps.control.token import TOKEN_ENV, remove_token_file, write_token_file
from mm_trio.apps.web import BearerToken, hypercorn_config, is_loopback
from mm_trio.domain.errors import UsageError
from mm_trio.engine.orchestrator import Orchestrator

__all__ = ["ControlOptions", "ControlServer", "build_app", "open_control", "serve_control"]

log = logging.getLogger(__name__)

_AUTH_CHALLENGE = 'Bearer realm="mm-trio control"'
_LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
_PUBLIC_METHODS = frozenset({"GET", "HEAD"})


def _host_name(header: str) -> str:
    """``example.com:8766`` -> ``example.com``; ``[::1]:8766`` -> ``::1``."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1:].split("]", 1)[0]
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


class Guard:
    """The Host check and the bearer token, before anything else runs (see module doc)."""

    def __init__(
        self,
        app: ASGIApp,
        token: BearerToken,
        allowed_hosts: frozenset[str],
        public_paths: frozenset[str] = frozenset(),
    ) -> None:
        self.app = app
        self.token = token
        self.allowed_hosts = allowed_hosts
        self.public_paths = public_paths

    def _public(self, scope: Scope) -> bool:
        return (
            scope["type"] == "http"
            and scope.get("method") in _PUBLIC_METHODS
            and scope["path"] in self.public_paths
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)  # lifespan
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        host = _host_name(headers.get("host", ""))
        if host not in self.allowed_hosts:
            log.warning("control: refused a request for Host %r", host[:64])
            response: Response = json_response(
                {"error": "Host header not allowed: use 127.0.0.1 or localhost", "field": "Host"},
                421,
            )
        elif not self._public(scope) and not self.token.matches(headers.get("authorization")):
            log.warning(
                "control: %s %s refused: no valid bearer token", scope.get("method"), scope["path"]
            )
            response = Response(
                b'{"error":"needs \'Authorization: Bearer <token>\' (MM_TRIO_CONTROL_TOKEN, or the '
                b'token file mm-trio run wrote)"}',
                401,
                headers={"WWW-Authenticate": _AUTH_CHALLENGE},
                media_type=api.JSON_TYPE,
            )
        else:
            await self.app(scope, receive, send)
            return
        if scope["type"] == "http":
            await response(scope, receive, send)
        else:
            await send({"type": "websocket.close", "code": 1008})


def build_app(ctx: ControlContext, token: BearerToken, *, bind_host: str = "127.0.0.1") -> ASGIApp:
    """The control plane's ASGI app (``app.state.control`` is ``ctx``)."""
    collector = OrchestratorCollector(ctx.orch, ctx.venue)

    async def metrics(request: Request) -> Response:
        return Response(await render_off_loop(collector), media_type=CONTENT_TYPE)

    async def not_found(request: Request, exc: Exception) -> Response:
        return json_response(
            {"error": f"no such endpoint: {request.method} {request.url.path}"}, 404
        )

    async def not_allowed(request: Request, exc: Exception) -> Response:
        return json_response(
            {"error": f"{request.method} is not allowed on {request.url.path}"}, 405
        )

    routes = [
        Route("/api/status", api.get_status, methods=["GET"]),
        Route("/api/symbols", api.list_symbols, methods=["GET"]),
        Route("/api/symbols", api.add_symbol, methods=["POST"]),
        Route("/api/symbols/{symbol:path}", api.remove_symbol, methods=["DELETE"]),
        Route("/api/pause", api.pause, methods=["POST"]),
        Route("/api/resume", api.resume, methods=["POST"]),
        Route("/api/kill", api.kill, methods=["POST"]),
        Route("/api/fills", api.fills, methods=["GET"]),
        Route("/api/events", api.events, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        *dashboard.routes(),
    ]
    app = Starlette(routes=routes, exception_handlers={404: not_found, 405: not_allowed})
    app.state.control = ctx
    allowed = _LOOPBACK_HOSTS | {bind_host.strip("[]").lower()}
    return Guard(app, token, frozenset(allowed), dashboard.PUBLIC_PATHS)


async def serve_control(
    ctx: ControlContext,
    token: BearerToken,
    host: str,
    port: int,
    *,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve until cancelled; ``task_status.started(bound_port)``."""
    if not is_loopback(host):
        log.warning(
            "control API bound to non-loopback %s: anyone who can reach it needs only the token",
            host,
        )
    app: Any = build_app(ctx, token, bind_host=host)
    async with trio.open_nursery() as nursery:
        bound: list[str] = await nursery.start(
            partial(
                serve,
                app,
                hypercorn_config(host, port, max_message_bytes=api.MAX_BODY_BYTES),
                shutdown_trigger=trio.sleep_forever,
            )
        )
        task_status.started(int(bound[0].rsplit(":", 1)[1]))


@attrs.frozen
class ControlOptions:
    """``--control HOST:PORT`` with its token (already resolved)."""

    host: str
    port: int
    token: BearerToken
    explicit: bool = True  # given on the command line: a port that cannot be bound is fatal


def _bind_error(exc: BaseException) -> OSError | None:
    """The ``OSError`` of a failed bind, also from inside hypercorn's exception group."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc if isinstance(exc, OSError) else None


@attrs.frozen
class ControlServer:
    """A running control plane: its bound port and the line that tells the operator."""

    port: int
    banner: str


@asynccontextmanager
async def open_control(
    orch: Orchestrator,
    options: ControlOptions | None,
    venue: str,
    err: TextIO,
) -> AsyncIterator[ControlServer | None]:
    """Serve the control plane for ``orch`` inside the block (``None``: off); yields the
    bound port and the banner to print (``mm-trio: control API on http://...``). A generated
    token is written to its file (removed on exit). A port given explicitly that cannot be
    bound is a :class:`UsageError` naming it; the default one (another run may hold it) only
    turns the control plane off, with a warning on ``err``."""
    if options is None:
        yield None
        return
    ctx = ControlContext(orch, venue)
    async with trio.open_nursery() as nursery:
        try:
            port: int = await nursery.start(
                serve_control, ctx, options.token, options.host, options.port
            )
        except (OSError, BaseExceptionGroup) as caught:
            exc = _bind_error(caught)
            if exc is None:
                raise
            why = f"{options.host}:{options.port}: cannot listen: {exc.strerror or exc}"
            if options.explicit:
                raise UsageError(f"--control {why}") from None
            print(
                f"mm-trio: warning: control API off ({why}; choose one with --control HOST:PORT)",
                file=err,
                flush=True,
            )
            yield None
            return
        token_file = None
        if options.token.generated:
            token_file = write_token_file(options.host, port, options.token)
            where = f"token in {token_file}"
        else:
            where = f"token from {TOKEN_ENV}"
        shown = f"[{options.host}]" if ":" in options.host else options.host
        try:
            yield ControlServer(port, f"mm-trio: control API on http://{shown}:{port} ({where})")
        finally:
            ctx.closing = True
            if token_file is not None:
                remove_token_file(token_file)
            nursery.cancel_scope.cancel()
