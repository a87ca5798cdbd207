"""The control plane's JSON endpoints (see the README's API reference).

Every request body is read under a cap, parsed as strict JSON and validated in full before
anything changes: a bad one answers 4xx ``{"error": ..., "field": ...}`` and nothing is
applied. Mutations are shielded from a client that hangs up half-way (an add or a removal
runs to its end, bounded by the run's shutdown timeout) and refused with 503 once the run is
shutting down.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from decimal import Decimal
from typing import Any

import attrs
import msgspec
import trio
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from mm_trio.apps.funding import funding_problems
from mm_trio.apps.summary import plain
from mm_trio.apps.web import BodyTooLarge, loads_strict, read_body
from mm_trio.domain.config import ConfigError, GridConfig
from mm_trio.domain.model import SymbolError, parse_symbol
from mm_trio.engine.events import ControlEvent
from mm_trio.engine.manager import SymbolSnapshot
from mm_trio.engine.orchestrator import Orchestrator

__all__ = ["ControlContext", "ControlError", "status_dict", "symbol_dict"]

log = logging.getLogger(__name__)

JSON_TYPE = "application/json"
MAX_BODY_BYTES = 64 * 1024
"""Cap on a request body: the largest valid one (a symbol with every grid key) is < 1 KiB."""
MAX_REASON_CHARS = 200
DEFAULT_KILL_REASON = "operator kill (control API)"
DEFAULT_FILLS_LIMIT = 100
MAX_FILLS_LIMIT = 1_000
SSE_KEEPALIVE_S = 15.0
"""A comment line this often keeps an idle event stream open through proxies."""
_GRID_KEYS = frozenset(f.name for f in attrs.fields(GridConfig))
_JSON = msgspec.json.Encoder()


@attrs.define
class ControlContext:
    """What the endpoints need: the orchestrator, the venue's name, and whether the run is
    shutting down."""

    orch: Orchestrator
    venue: str
    closing: bool = False


class ControlError(Exception):
    """A refused request: HTTP ``status``, why, and the field at fault (if one)."""

    def __init__(self, status: int, why: str, field: str | None = None) -> None:
        super().__init__(why)
        self.status = status
        self.field = field

    def response(self) -> Response:
        body: dict[str, Any] = {"error": str(self)}
        if self.field is not None:
            body["field"] = self.field
        return json_response(body, self.status)


def json_response(body: Any, status: int = 200) -> Response:
    return Response(_JSON.encode(body), status, media_type=JSON_TYPE)


def _num(value: Decimal | None) -> str | None:
    return None if value is None else plain(value)


def symbol_dict(snap: SymbolSnapshot, orch: Orchestrator) -> dict[str, Any]:
    exposure = orch.governor.exposure()
    return {
        "symbol": snap.symbol,
        "state": snap.state,
        "reason": snap.reason,
        "paused": snap.paused,
        "mid": _num(snap.mid),
        "position": plain(snap.position),
        "open_orders": snap.open_orders,
        "fills": snap.fills,
        "buys": snap.buys,
        "sells": snap.sells,
        "pnl": {
            "realized": plain(snap.realized_pnl),
            "unrealized": plain(snap.unrealized_pnl),
            "fees": plain(snap.fees_quote),
            "total": plain(snap.total_pnl),
        },
        "max_inventory": plain(snap.max_inventory),
        "breakers": snap.breakers,
        "breaker_trips": snap.breaker_trips,
        "exposure": _num(exposure.per_symbol.get(snap.symbol)),
        "reduce_only": snap.symbol in exposure.reduce_only_symbols,
        "rejects": snap.rejects,
        "events": snap.events,
        "quotes_skipped": snap.quotes_skipped,
        "foreign_reports": snap.foreign_reports,
    }


def status_dict(ctx: ControlContext) -> dict[str, Any]:
    """Per symbol and aggregate: state, PnL, exposure, limiter, streams, uptime."""
    orch = ctx.orch
    running = set(orch.symbols())
    snapshot = orch.snapshot()
    symbols = {s: symbol_dict(snap, orch) for s, snap in snapshot.symbols.items() if s in running}
    exp = snapshot.exposure
    limiter = orch.limiter
    now = trio.current_time()
    core = limiter.core
    totals = {
        key: plain(
            sum(
                (getattr(snap, attr) for s, snap in snapshot.symbols.items() if s in running),
                Decimal(0),
            )
        )
        for key, attr in (
            ("realized", "realized_pnl"),
            ("unrealized", "unrealized_pnl"),
            ("fees", "fees_quote"),
            ("total", "total_pnl"),
        )
    }
    return {
        "venue": ctx.venue,
        "uptime_seconds": round(max(0.0, now - orch.started_at), 3),
        "killed": snapshot.killed,
        "kill_reason": snapshot.kill_reason,
        "symbols": symbols,
        "pnl": totals,
        "exposure": {
            "total": plain(exp.total),
            "max_total": plain(exp.max_total),
            "max_symbol": plain(exp.max_symbol),
            "fair_share": plain(exp.fair_share),
            "reduce_only_total": exp.reduce_only_total,
            "reduce_only_symbols": exp.reduce_only_symbols,
        },
        "limiter": {
            "weight_used": core.weight.used(now),
            "weight_limit": core.weight.limit,
            "orders_10s_used": core.orders_short.used(now),
            "orders_10s_limit": core.orders_short.limit,
            "orders_day_used": core.orders_day.used(now),
            "orders_day_limit": core.orders_day.limit,
            "queued": limiter.queued,
            "paused_for_seconds": round(max(0.0, limiter.paused_until - now), 3),
            "paused_seconds_total": round(limiter.paused_seconds, 3),
            **limiter.stats(),
        },
        "streams": dict(orch.demux.streams),
        "unrouted_events": snapshot.unrouted_events,
        "event_subscribers": orch.events.subscribers,
    }


# --------------------------------------------------------------------------- input


async def _body(request: Request, allowed: frozenset[str]) -> dict[str, Any]:
    """The request's JSON object (an empty body is ``{}``), keys limited to ``allowed``."""
    try:
        raw = await read_body(request, MAX_BODY_BYTES)
    except BodyTooLarge as exc:
        raise ControlError(413, str(exc)) from None
    if not raw.strip():
        return {}
    try:
        data = loads_strict(raw)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise ControlError(400, f"body must be a JSON object: {exc}") from None
    if not isinstance(data, dict):
        raise ControlError(400, "body must be a JSON object")
    for key in data:
        if key not in allowed:
            raise ControlError(
                400, f"unknown field {key!r} (expected: {', '.join(sorted(allowed))})", key
            )
    return data


def _symbol_field(data: dict[str, Any], *, required: bool) -> str | None:
    value = data.get("symbol")
    if value is None:
        if required:
            raise ControlError(400, "symbol is required (e.g. 'SOL/USDT')", "symbol")
        return None
    if not isinstance(value, str):
        raise ControlError(400, f"symbol must be a string like 'SOL/USDT', got {value!r}", "symbol")
    _check_symbol_text(value)
    return value


def _check_symbol_text(symbol: str) -> None:
    try:
        parse_symbol(symbol)
    except SymbolError as exc:
        raise ControlError(400, str(exc), "symbol") from None


def _running(orch: Orchestrator, symbol: str) -> None:
    if symbol not in orch.symbols():
        raise ControlError(404, f"symbol {symbol!r} is not running", "symbol")


def _ctx(request: Request) -> ControlContext:
    ctx: ControlContext = request.app.state.control
    return ctx


def _mutable(request: Request) -> ControlContext:
    ctx = _ctx(request)
    if ctx.closing or ctx.orch.closing:
        raise ControlError(503, "the run is shutting down")
    return ctx


Handler = Callable[[Request], Awaitable[Response]]


def endpoint(fn: Handler) -> Handler:
    """Turn a :class:`ControlError` into its JSON answer."""

    async def wrapped(request: Request) -> Response:
        try:
            return await fn(request)
        except ControlError as exc:
            return exc.response()

    wrapped.__name__ = fn.__name__
    wrapped.__doc__ = fn.__doc__
    return wrapped


async def _shielded(ctx: ControlContext, fn: Callable[[], Awaitable[Any]]) -> Any:
    """Run a mutation to its end even if the client hangs up (bounded: an add or removal
    that has not finished in twice the shutdown timeout is abandoned, cleanly)."""
    bound = 2 * ctx.orch.config.run.shutdown_timeout
    with trio.CancelScope(shield=True):
        with trio.fail_after(bound):
            return await fn()


# --------------------------------------------------------------------------- endpoints


@endpoint
async def get_status(request: Request) -> Response:
    return json_response(status_dict(_ctx(request)))


@endpoint
async def list_symbols(request: Request) -> Response:
    ctx = _ctx(request)
    snapshot = ctx.orch.snapshot()
    running = ctx.orch.symbols()
    return json_response(
        {
            "symbols": [symbol_dict(snapshot.symbols[s], ctx.orch) for s in running],
            "removed": sorted(s for s in snapshot.symbols if s not in running),
        }
    )


@endpoint
async def add_symbol(request: Request) -> Response:
    """``{"symbol": "SOL/USDT", "grid": {<any [grid] key>: value}}``."""
    ctx = _mutable(request)
    data = await _body(request, frozenset({"symbol", "grid"}))
    symbol = _symbol_field(data, required=True)
    assert symbol is not None
    orch = ctx.orch
    try:
        orch.check_symbol(symbol)
    except SymbolError as exc:
        raise ControlError(400, str(exc), "symbol") from None
    if symbol in orch.symbols():
        raise ControlError(409, f"symbol {symbol!r} is already running", "symbol")
    overrides = data.get("grid", {})
    if not isinstance(overrides, dict):
        raise ControlError(400, "grid must be an object of [grid] keys", "grid")
    for key in overrides:
        if key not in _GRID_KEYS:
            raise ControlError(
                400,
                f"unknown grid key {key!r} (expected one of: {', '.join(sorted(_GRID_KEYS))})",
                f"grid.{key}",
            )
    try:
        grid = orch.grid_with_overrides(symbol, _plain_numbers(overrides))
    except ConfigError as exc:
        raise ControlError(400, str(exc), _grid_field(exc.key)) from None
    # the start checks of `mm-trio run`: the grid fits the symbol, and the account pays
    problems = await funding_problems(orch, {symbol: grid})
    if problems:
        raise ControlError(400, problems[0], "grid")
    try:
        await _shielded(ctx, lambda: orch.add_symbol(symbol, grid))
    except SymbolError as exc:
        raise ControlError(409, str(exc), "symbol") from None
    except trio.TooSlowError:
        raise ControlError(504, f"adding {symbol} did not finish in time") from None
    log.warning("control: %s added", symbol)
    return json_response(symbol_dict(orch.manager(symbol).snapshot(), orch), 201)


def _plain_numbers(overrides: dict[str, Any]) -> dict[str, Any]:
    """JSON fractions arrive as exact Decimals; keep NaN/Infinity for the validator to name."""
    return {
        k: (str(v) if isinstance(v, Decimal) and v.is_finite() else v) for k, v in overrides.items()
    }


def _grid_field(key: str | None) -> str:
    """``symbols.'SOL/USDT'.step`` -> ``grid.step`` (the request's own field name)."""
    if key is None:
        return "grid"
    _, sep, tail = key.rpartition("'.")
    return f"grid.{tail}" if sep else "grid"


@endpoint
async def remove_symbol(request: Request) -> Response:
    """``DELETE /api/symbols/SOL/USDT``: cancel its orders, wait for the acks, drop it."""
    ctx = _mutable(request)
    symbol = request.path_params["symbol"]
    _check_symbol_text(symbol)
    _running(ctx.orch, symbol)
    try:
        snap = await _shielded(ctx, lambda: ctx.orch.remove_symbol(symbol))
    except SymbolError as exc:
        raise ControlError(404, str(exc), "symbol") from None
    except trio.TooSlowError:
        raise ControlError(504, f"removing {symbol} did not finish in time") from None
    log.warning("control: %s removed", symbol)
    return json_response(symbol_dict(snap, ctx.orch))


@endpoint
async def pause(request: Request) -> Response:
    """``{"symbol": "BTC/USDT"}`` or ``{}`` (every symbol): stop opening, keep take-profits."""
    ctx = _mutable(request)
    symbol = _symbol_field(await _body(request, frozenset({"symbol"})), required=False)
    if symbol is not None:
        _running(ctx.orch, symbol)
    done = ctx.orch.pause(symbol)
    log.warning("control: paused %s", ", ".join(done) or "nothing (no symbol runs)")
    return json_response({"paused": done})


@endpoint
async def resume(request: Request) -> Response:
    """``{"symbol": ...}``: lift its pause; ``{}``: lift the kill switch and every pause."""
    ctx = _mutable(request)
    symbol = _symbol_field(await _body(request, frozenset({"symbol"})), required=False)
    if symbol is not None:
        _running(ctx.orch, symbol)
        if ctx.orch.governor.killed:
            raise ControlError(
                409, "the kill switch is on: resume without a symbol to lift it", "symbol"
            )
    was_killed = ctx.orch.governor.killed
    done = await ctx.orch.resume(symbol)
    log.warning("control: resumed %s", ", ".join(done) or "nothing")
    return json_response({"resumed": done, "kill_lifted": was_killed and symbol is None})


@endpoint
async def kill(request: Request) -> Response:
    """``{"reason": "..."}``: the latched kill switch (cancel every order, stop)."""
    ctx = _mutable(request)
    data = await _body(request, frozenset({"reason"}))
    reason = data.get("reason", DEFAULT_KILL_REASON)
    if not isinstance(reason, str) or not reason.strip():
        raise ControlError(400, "reason must be a non-empty string", "reason")
    if len(reason) > MAX_REASON_CHARS or not reason.isprintable():
        raise ControlError(
            400, f"reason must be printable, at most {MAX_REASON_CHARS} characters", "reason"
        )
    await ctx.orch.kill(reason.strip())
    return json_response({"killed": True, "reason": reason.strip()})


@endpoint
async def fills(request: Request) -> Response:
    """``?symbol=BTC/USDT&limit=100``: the most recent fills, newest last."""
    ctx = _ctx(request)
    query = request.query_params
    for key in query:
        if key not in ("symbol", "limit"):
            raise ControlError(400, f"unknown parameter {key!r} (expected symbol, limit)", key)
    symbol = query.get("symbol")
    if symbol is not None:
        _check_symbol_text(symbol)
    text = query.get("limit", str(DEFAULT_FILLS_LIMIT))
    if not text.isdigit() or not 1 <= int(text) <= MAX_FILLS_LIMIT:
        raise ControlError(400, f"limit must be 1..{MAX_FILLS_LIMIT}, got {text!r}", "limit")
    limit = int(text)
    chosen = [e for e in ctx.orch.recent_fills if symbol is None or e.symbol == symbol]
    return json_response({"fills": [_event_dict(e) for e in chosen[-limit:]]})


def _event_dict(event: ControlEvent) -> dict[str, Any]:
    return {
        "seq": event.seq,
        "kind": event.kind,
        "symbol": event.symbol,
        "ts_ns": event.ts_ns,
        **event.data,
    }


def _sse(event: ControlEvent) -> bytes:
    body = _JSON.encode(
        {"kind": event.kind, "symbol": event.symbol, "ts_ns": event.ts_ns, "data": event.data}
    )
    return b"id: %d\nevent: %s\ndata: %s\n\n" % (event.seq, event.kind.encode(), body)


@endpoint
async def events(request: Request) -> Response:
    """Server-sent events: ``fill``, ``state``, ``breaker``, ``governor``, ``symbol``,
    ``control``. ``Last-Event-ID`` (or ``?since=N``) replays the recent events after it."""
    orch = _ctx(request).orch
    since_text = request.headers.get("last-event-id") or request.query_params.get("since")
    since: int | None = None
    if since_text is not None:
        if not since_text.isdigit():
            raise ControlError(400, f"since must be an event id, got {since_text!r}", "since")
        since = int(since_text)

    async def stream() -> AsyncIterator[bytes]:
        with orch.events.subscribe() as receive:
            # subscribed first, then the backlog: nothing published in between is missed
            last = 0
            yield b": mm-trio events\nretry: 2000\n\n"
            if since is not None:
                for event in list(orch.events.recent):
                    if event.seq > since:
                        last = event.seq
                        yield _sse(event)
            while True:
                with trio.move_on_after(SSE_KEEPALIVE_S) as idle:
                    try:
                        event = await receive.receive()
                    except trio.EndOfChannel:  # too slow: dropped by the hub
                        yield b'event: dropped\ndata: {"error": "too slow: reconnect"}\n\n'
                        return
                if idle.cancelled_caught:
                    yield b": keep-alive\n\n"
                    continue
                if event.seq > last:
                    yield _sse(event)

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
