"""Read a run for the report: a replay output directory or a ``--state`` store of a live run.

A **replay directory** (``mm-trio replay --out DIR``) has ``equity.csv`` (PnL, position,
mid, exposure and state per symbol every ``replay.equity_interval``), ``fills.csv``,
``orders.jsonl`` (every placement with its ``post_only`` flag -- our opening orders are
post-only, take-profits are not -- and every report) and ``summary.json``.

A **state store** (SQLite, SPEC §9) has the fill ledger and the order journal, but no mid
and no PnL over time. The equity curve is rebuilt from the fills: they are applied in time
order to the same :class:`~mm_trio.core.position.PositionManager` the engine uses, and each
symbol is marked to market at its latest fill price (the only price the store knows), then
sampled every :func:`store_interval` seconds (the last value held between fills). Capital
used is then the largest inventory value (no open-order notional is journalled with time);
an order is opening unless one of its fills closed a lot, or, unfilled, it is a SELL of a
long grid. The file is opened read-only: a report never changes a store.
"""

from __future__ import annotations

import csv
import json
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from mm_trio.apps.report.metrics import (
    HALTED_STATES,
    NS_PER_S,
    FillRec,
    OrderRec,
    Sample,
    match_fills,
)
from mm_trio.core.position import Fill, PositionManager
from mm_trio.domain.ids import parse_client_id
from mm_trio.domain.model import TERMINAL_STATUSES, ZERO, parse_symbol
from mm_trio.store.schema import SCHEMA_VERSION, SQLITE_MAGIC

TOTAL = "TOTAL"
REPLAY_FILES = ("equity.csv", "fills.csv", "orders.jsonl")
MAX_STORE_SAMPLES = 5000
"""A live run's equity curve is resampled to at most this many points."""
MIN_STORE_INTERVAL_S = 1


class ReportError(ValueError):
    """A RUN that cannot be read: the message names it and what is wrong (exit 2)."""


@dataclass(slots=True)
class SymbolRun:
    symbol: str
    samples: list[Sample] = field(default_factory=list)
    fills: list[FillRec] = field(default_factory=list)
    orders: list[OrderRec] = field(default_factory=list)
    reject_reasons: list[str] = field(default_factory=list)
    breaker_trips: int = 0


@dataclass(slots=True)
class Run:
    name: str
    kind: str  # "replay" or "store"
    symbols: dict[str, SymbolRun]
    total: list[Sample]
    source: Path


def load_run(path: Path) -> Run:
    """Read ``path`` (replay directory or state store); :class:`ReportError` if neither."""
    if path.is_dir():
        missing = [f for f in REPLAY_FILES if not (path / f).is_file()]
        if missing:
            raise ReportError(
                f"{str(path)!r} is not a replay output directory: no {', '.join(missing)}"
            )
        return load_replay_dir(path)
    if path.is_file():
        with path.open("rb") as fh:
            head = fh.read(len(SQLITE_MAGIC))
        if head != SQLITE_MAGIC:
            raise ReportError(
                f"{str(path)!r} is neither a replay output directory nor a state store"
            )
        return load_store(path)
    raise ReportError(f"{str(path)!r} does not exist")


# --------------------------------------------------------------------------- replay


def _dec(text: str, where: str) -> Decimal:
    try:
        return Decimal(text)
    except InvalidOperation:
        raise ReportError(f"{where}: {text!r} is not a number") from None


def _csv_rows(path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    with path.open(newline="", encoding="utf-8") as fh:
        for n, row in enumerate(csv.DictReader(fh), start=2):
            yield f"{path}:{n}", row


def _sample(row: dict[str, str], where: str) -> Sample:
    try:
        mid = row["mid"]
        exposure = row.get("exposure") or ""
        return Sample(
            ts_ns=int(row["ts"]),
            total=_dec(row["total_pnl"], where),
            realized=_dec(row["realized_pnl"] or "0", where),
            unrealized=_dec(row["unrealized_pnl"] or "0", where),
            fees=_dec(row["fees"] or "0", where),
            mid=None if mid in ("", "None") else _dec(mid, where),
            position=_dec(row["position"] or "0", where),
            exposure=_dec(exposure, where) if exposure else None,
            state=row.get("state") or "",
            reduce_only=row.get("reduce_only") == "1",
            breakers=row.get("breakers") or "",
        )
    except (KeyError, ValueError, TypeError) as exc:
        if isinstance(exc, ReportError):
            raise
        raise ReportError(f"{where}: not an equity row ({exc!r})") from None


def load_replay_dir(path: Path) -> Run:
    symbols: dict[str, SymbolRun] = {}
    total: list[Sample] = []

    def sym(name: str) -> SymbolRun:
        return symbols.setdefault(name, SymbolRun(name))

    for where, row in _csv_rows(path / "equity.csv"):
        sample = _sample(row, where)
        series = total if row.get("symbol") == TOTAL else sym(row.get("symbol") or "?").samples
        if series and series[-1].ts_ns == sample.ts_ns:
            series[-1] = sample  # the final sample can fall on a periodic one: keep one
        else:
            series.append(sample)
    for where, row in _csv_rows(path / "fills.csv"):
        try:
            fill = FillRec(
                ts_ns=int(row["ts"]),
                symbol=row["symbol"],
                side="BUY" if row["side"] == "BUY" else "SELL",
                price=_dec(row["price"], where),
                qty=_dec(row["qty"], where),
                fee=_dec(row["fee"], where),
                fee_asset=row["fee_asset"],
                client_id=row["client_id"],
                trade_id=row["trade_id"],
            )
        except (KeyError, ValueError) as exc:
            if isinstance(exc, ReportError):
                raise
            raise ReportError(f"{where}: not a fill row ({exc!r})") from None
        sym(fill.symbol).fills.append(fill)
    _read_order_log(path / "orders.jsonl", sym)
    summary_path = path / "summary.json"
    if summary_path.is_file():
        try:
            summary = json.loads(summary_path.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise ReportError(f"{summary_path}: not JSON ({exc})") from None
        for name, row in (summary.get("symbols") or {}).items():
            sym(name).breaker_trips = int(row.get("breaker_trips") or 0)
    total = _total_with_parts(total, symbols)
    return Run(path.name or str(path), "replay", symbols, total, path)


def _read_order_log(path: Path, sym: Callable[[str], SymbolRun]) -> None:
    placed: dict[str, dict[str, Any]] = {}
    ends: dict[str, tuple[int, str]] = {}
    rejected: dict[str, tuple[str, str]] = {}  # key -> (symbol, reason)
    with path.open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, start=1):
            try:
                entry = json.loads(line)
                kind, cid, status = entry["kind"], entry.get("client_id", ""), entry.get("status")
                if kind == "place":
                    placed.setdefault(cid, entry)
                elif kind == "refused":  # the governor's: never placed, under its own key
                    reason = entry.get("reason") or "governor:"
                    rejected.setdefault(cid + "#refused", (entry["symbol"], reason))
                elif status in TERMINAL_STATUSES and cid not in ends:
                    ends[cid] = (int(entry["ts"]), status)
                if status == "REJECTED" and kind != "refused":
                    rejected.setdefault(cid, (entry.get("symbol", ""), entry.get("reason", "")))
            except (ValueError, KeyError, TypeError, AttributeError):
                raise ReportError(f"{path}:{n}: not an order-log entry") from None
    for cid, p in placed.items():
        end_ns, status = ends.get(cid, (None, ""))
        try:
            order = OrderRec(
                ts_ns=int(p["ts"]),
                symbol=p["symbol"],
                client_id=cid,
                side="BUY" if p["side"] == "BUY" else "SELL",
                price=_dec(str(p["price"]), str(path)),
                qty=_dec(str(p["qty"]), str(path)),
                opening=bool(p.get("post_only")),
                end_ns=end_ns,
                status=status,
            )
        except (KeyError, ValueError) as exc:
            raise ReportError(f"{path}: placement {cid!r} is incomplete ({exc!r})") from None
        sym(order.symbol).orders.append(order)
    for cid, (symbol, reason) in rejected.items():
        symbol = symbol or placed.get(cid, {}).get("symbol", "")
        if symbol:
            sym(symbol).reject_reasons.append(reason)


def _total_with_parts(total: list[Sample], symbols: dict[str, SymbolRun]) -> list[Sample]:
    """A replay's TOTAL rows carry the total PnL and exposure only: add realized,
    unrealized and fees summed over the symbols, and mark a total sample halted while any
    symbol is (or the kill switch is on)."""
    parts: dict[int, list[Decimal]] = {}
    halted: set[int] = set()
    for run in symbols.values():
        for s in run.samples:
            acc = parts.setdefault(s.ts_ns, [ZERO, ZERO, ZERO])
            acc[0] += s.realized
            acc[1] += s.unrealized
            acc[2] += s.fees
            if s.state in HALTED_STATES:
                halted.add(s.ts_ns)
    out = []
    for s in total:
        realized, unrealized, fees = parts.get(s.ts_ns, (s.realized, s.unrealized, s.fees))
        state = "HALTED" if s.ts_ns in halted and s.state not in HALTED_STATES else s.state
        out.append(
            Sample(
                s.ts_ns,
                s.total,
                realized,
                unrealized,
                fees,
                s.mid,
                s.position,
                s.exposure,
                state,
                s.reduce_only,
                s.breakers,
            )
        )
    return out


# --------------------------------------------------------------------------- state store


def store_interval(span_ns: int) -> int:
    """Sampling interval (ns) of a rebuilt equity curve: 1 s, or coarser for long runs."""
    step = max(MIN_STORE_INTERVAL_S * NS_PER_S, -(-span_ns // MAX_STORE_SAMPLES))
    return int(step)


def load_store(path: Path) -> Run:
    try:
        conn = sqlite3.connect(f"file:{path.resolve()}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise ReportError(f"state store {path} cannot be opened: {exc}") from None
    try:
        (version,) = conn.execute("PRAGMA user_version").fetchone()
        if version > SCHEMA_VERSION:
            raise ReportError(
                f"state store {path} has schema version {version}, newer than this "
                f"mm-trio knows ({SCHEMA_VERSION}): upgrade mm-trio"
            )
        fills = [
            FillRec(
                ts,
                s,
                "BUY" if side == "BUY" else "SELL",
                Decimal(p),
                Decimal(q),
                Decimal(fee),
                fa,
                cid,
                tid,
            )
            for s, tid, cid, side, p, q, fee, fa, ts in conn.execute(
                "SELECT symbol, trade_id, client_id, side, price, qty, fee, fee_asset, ts_ns "
                "FROM fills ORDER BY ts_ns, rowid"
            )
        ]
        intents = conn.execute(
            "SELECT client_id, symbol, side, price, qty, ts_ns FROM intents ORDER BY ts_ns"
        ).fetchall()
        events = conn.execute(
            "SELECT client_id, kind, payload, terminal, ts_ns FROM events ORDER BY seq"
        ).fetchall()
        modes = {}
        for symbol, config in conn.execute("SELECT symbol, config FROM symbols"):
            try:
                modes[symbol] = str(json.loads(config).get("mode", "long"))
            except (ValueError, AttributeError):
                modes[symbol] = "long"
    except sqlite3.DatabaseError as exc:
        raise ReportError(f"state store {path} cannot be read: {exc}") from None
    finally:
        conn.close()
    return _store_run(path, fills, intents, events, modes)


def _store_run(
    path: Path,
    fills: list[FillRec],
    intents: list[tuple[str, str, str, str, str, int]],
    events: list[tuple[str, str, str, int, int]],
    modes: dict[str, str],
) -> Run:
    symbols: dict[str, SymbolRun] = {}
    for f in fills:
        symbols.setdefault(f.symbol, SymbolRun(f.symbol)).fills.append(f)
    ends: dict[str, tuple[int, str]] = {}
    reasons: dict[str, str] = {}
    for cid, kind, payload, terminal, ts in events:
        try:
            body = json.loads(payload)
        except ValueError:
            body = {}
        status = body.get("status", "") if isinstance(body, dict) else ""
        if terminal and cid not in ends:
            ends[cid] = (ts, status or kind)
        if status == "REJECTED":
            reasons.setdefault(cid, str(body.get("reason", "")))
    closing = {
        f.client_id
        for f, opening in zip(fills, match_fills(fills).opening, strict=True)
        if not opening
    }
    for cid, symbol, side, price, qty, ts in intents:
        run = symbols.setdefault(symbol, SymbolRun(symbol))
        filled = any(f.client_id == cid for f in run.fills)
        long_tp = not filled and side == "SELL" and modes.get(symbol, "long") == "long"
        end_ns, status = ends.get(cid, (None, ""))
        run.orders.append(
            OrderRec(
                ts,
                symbol,
                cid,
                "BUY" if side == "BUY" else "SELL",
                Decimal(price),
                Decimal(qty),
                cid not in closing and not long_tp,
                end_ns,
                status,
            )
        )
        if cid in reasons:
            run.reject_reasons.append(reasons[cid])
    per_symbol = {s: _rebuilt_equity(r.fills, s) for s, r in symbols.items()}
    start = min((f.ts_ns for f in fills), default=0)
    end = max([f.ts_ns for f in fills] + [o.ts_ns for r in symbols.values() for o in r.orders],
              default=0)  # fmt: skip
    step = store_interval(end - start) if fills else NS_PER_S
    grid = list(range(start, end + step, step)) if fills else []
    total: dict[int, Sample] = {}
    for symbol, points in per_symbol.items():
        sampled = _hold(points, grid)
        symbols[symbol].samples = sampled
        for s in sampled:
            t = total.get(s.ts_ns)
            total[s.ts_ns] = Sample(
                s.ts_ns,
                s.total + (t.total if t else ZERO),
                s.realized + (t.realized if t else ZERO),
                s.unrealized + (t.unrealized if t else ZERO),
                s.fees + (t.fees if t else ZERO),
                exposure=(s.exposure or ZERO) + ((t.exposure or ZERO) if t else ZERO),
            )
    return Run(path.name, "store", symbols, [total[t] for t in sorted(total)], path)


def _rebuilt_equity(fills: list[FillRec], symbol: str) -> list[Sample]:
    """PnL after each fill, marked at that fill's price (see the module docstring)."""
    base, quote = parse_symbol(symbol)
    pm = PositionManager(symbol, base, quote)
    out = []
    for n, f in enumerate(fills):
        level = None
        parsed = parse_client_id(f.client_id)
        if parsed is not None:
            level = parsed.level
        try:
            trade_id = int(f.trade_id)
        except ValueError:
            trade_id = -1 - n  # a venue with non-numeric trade ids: still one key each
        pm.on_fill(
            Fill(trade_id, symbol, f.side, f.price, f.qty, f.fee, f.fee_asset, level, f.ts_ns)
        )
        mark = f.price
        fees = pm.fees_in_quote(mark)
        out.append(
            Sample(
                f.ts_ns,
                pm.total_pnl(mark),
                pm.realized_pnl,
                pm.unrealized_pnl(mark),
                fees,
                mid=mark,
                position=pm.position,
                exposure=abs(pm.position) * mark,
                state="RUNNING",
            )
        )
    return out


def _hold(points: list[Sample], grid: list[int]) -> list[Sample]:
    """Sample a step function (the last point at or before each grid time; 0 before any)."""
    out = []
    i = -1
    for t in grid:
        while i + 1 < len(points) and points[i + 1].ts_ns <= t:
            i += 1
        if i < 0:
            out.append(Sample(t, ZERO, state="RUNNING"))
        else:
            p = points[i]
            out.append(
                Sample(
                    t,
                    p.total,
                    p.realized,
                    p.unrealized,
                    p.fees,
                    p.mid,
                    p.position,
                    p.exposure,
                    p.state,
                )
            )
    return out
