"""What a run or a replay reports: the status line, the exit summary (``--summary-json``)
and its table. One shape for ``run`` and ``replay``."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import msgspec

from mm_trio.engine.orchestrator import Snapshot
from mm_trio.exchange.limiter import Limiter


def _fmt(d: Decimal | None, places: int = 2) -> str:
    if d is None:
        return "-"
    return f"{d:.{places}f}"


def status_line(snapshot: Snapshot) -> str:
    parts = []
    for sym, s in snapshot.symbols.items():
        breakers = ",".join(s.breakers) or "-"
        parts.append(
            f"{sym} {s.state} mid={_fmt(s.mid, 4)} pos={s.position.normalize():f} "
            f"open={s.open_orders} fills={s.fills} pnl={_fmt(s.total_pnl, 4)} brk={breakers}"
        )
    exp = snapshot.exposure
    parts.append(f"exposure={_fmt(exp.total)}/{exp.max_total}")
    return " | ".join(parts)


def quote_of(symbol: str) -> str:
    """The quote currency of a ``BASE/QUOTE`` symbol (PnL is summed per quote currency)."""
    return symbol.rpartition("/")[2]


def _columns(rows: Sequence[Sequence[str]]) -> list[str]:
    """Rows of cells as left-aligned columns two spaces apart (no trailing blanks)."""
    widths = [max(len(r[i]) for r in rows if i < len(r)) for i in range(max(map(len, rows)))]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)).rstrip() for r in rows]


def _state_text(state: str, reason: str) -> str:
    return f"{state} ({reason})" if reason and state != "RUNNING" else state


def status_lines(snapshot: Snapshot, clock: str = "") -> list[str]:
    """The periodic status: one line per symbol (aligned), then a TOTAL line with the PnL
    per quote currency and the aggregate exposure against its cap. ``clock``: the time
    shown in the first line (the header)."""
    rows: list[list[str]] = []
    totals: dict[str, Decimal] = {}
    for sym, s in snapshot.symbols.items():
        q = quote_of(sym)
        totals[q] = totals.get(q, Decimal(0)) + s.total_pnl
        row = [
            sym,
            _state_text(s.state, s.reason),
            f"mid={_fmt(s.mid, 4)}",
            f"pos={plain(s.position)}",
            f"open={s.open_orders}",
            f"fills={s.fills}",
            f"pnl={_fmt(s.total_pnl, 4)}",
        ]
        if s.breakers:
            row.append("breakers=" + ",".join(s.breakers))
        rows.append(row)
    exp = snapshot.exposure
    pnl = ", ".join(f"{_fmt(v, 4)} {q}" for q, v in totals.items()) or "-"
    total = f"TOTAL pnl {pnl}; exposure {_fmt(exp.total)}/{exp.max_total}"
    if snapshot.killed:
        total += f"; KILLED: {snapshot.kill_reason}"
    header = f"-- status {clock} --" if clock else "-- status --"
    return [header, *_columns(rows), total]


KILL_PREFIX = "kill switch: "
LOSS_PREFIX = "loss limit"


def final_state(state: str, reason: str, run_end: str) -> tuple[str, str]:
    """Why a symbol stopped, from its state and reason when trading stopped and why the run
    ended (``duration``, ``SIGINT``, ``SIGTERM``, ``end of data``...): ``(stopped_by,
    text)``, e.g. ``("duration", "STOPPED (duration)")``, ``("kill", "KILLED: ...")``."""
    if state == "FAILED":
        return "failed", f"FAILED: {reason}"
    if state == "REMOVED":  # removed while the run went on (e.g. by an operator)
        return "removed", "REMOVED"
    if state == "STOPPED":
        why = reason.removeprefix(KILL_PREFIX)
        if why.startswith(LOSS_PREFIX):  # also a loss limit latched by an earlier run
            return "loss_limit", f"STOPPED ({why})"
        return "kill", f"KILLED: {why}"
    return run_end, f"STOPPED ({run_end})"


def plain(value: Decimal) -> str:
    """A Decimal as plain digits without trailing zeros (``0E-13`` -> ``0``)."""
    text = f"{value.normalize():f}"
    return "0" if text in ("-0", "0") else text


def _plain_tree(value: Any) -> Any:
    if isinstance(value, Decimal):
        return plain(value)
    if isinstance(value, dict):
        return {k: _plain_tree(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain_tree(v) for v in value]
    return value


def summary_dict(
    snapshot: Snapshot,
    open_at_exit: dict[str, int | None],
    exposure_at_stop: Snapshot | None = None,
    *,
    limiter: dict[str, Any] | None = None,
    run_end: str | None = None,
) -> dict[str, Any]:
    """The exit summary (``--summary-json``); ``exposure_at_stop`` is a snapshot taken when
    trading stopped, before our orders were cancelled and the symbols removed; ``limiter``
    (see :func:`limiter_summary`) adds the rate limiter's counters and the venue's alerts;
    ``run_end`` (why the run ended) adds each symbol's ``stopped_by`` and ``final_state``
    (see :func:`final_state`)."""
    symbols: dict[str, Any] = {}
    stopped = (exposure_at_stop or snapshot).symbols
    for sym, s in snapshot.symbols.items():
        symbols[sym] = {
            "fills": s.fills,
            "buys": s.buys,
            "sells": s.sells,
            "position": plain(s.position),
            "realized_pnl": plain(s.realized_pnl),
            "unrealized_pnl": plain(s.unrealized_pnl),
            "fees": plain(s.fees_quote),
            "max_inventory": plain(s.max_inventory),
            "breaker_trips": s.breaker_trips,
            # None (null) when the venue could not be asked
            "open_orders_at_exit": open_at_exit.get(sym, s.open_orders),
            "state": s.state,
            "reason": s.reason,
            # execution reports of orders that are not ours (hand-placed, other programs)
            "foreign_reports": s.foreign_reports,
        }
        if run_end is not None:
            at = stopped.get(sym, s)
            by, text = final_state(at.state, at.reason, run_end)
            symbols[sym]["stopped_by"] = by
            symbols[sym]["final_state"] = text
    exposure = (exposure_at_stop or snapshot).exposure
    summary: dict[str, Any] = {
        "symbols": symbols,
        "exposure": _plain_tree(msgspec.to_builtins(exposure, builtin_types=(Decimal,))),
        "killed": snapshot.killed,
        "kill_reason": snapshot.kill_reason,
    }
    if limiter is not None:
        summary["limiter"] = limiter
    return summary


def limiter_summary(limiter: Limiter, alerts: Sequence[str]) -> dict[str, Any]:
    """The limiter's counters (``pauses`` by 429 or 418, ``bans`` by 418 alone) and every
    alert it raised (one per ban)."""
    return {**limiter.stats(), "alerts": list(alerts)}


RUN_COLUMNS = [
    "symbol",
    "state",
    "fills",
    "buys",
    "sells",
    "position",
    "realized_pnl",
    "unrealized_pnl",
    "fees",
    "open_orders_at_exit",
]
REPLAY_COLUMNS = [
    "symbol",
    "events",
    "fills",
    "buys",
    "sells",
    "position",
    "realized_pnl",
    "unrealized_pnl",
    "fees",
    "max_inventory",
    "breaker_trips",
]


_SUMMED = ("events", "fills", "buys", "sells", "realized_pnl", "unrealized_pnl", "fees")


def _total_rows(summary: dict[str, Any], cols: Sequence[str]) -> list[list[str]]:
    """A TOTAL row per quote currency (one, ``TOTAL``, when all symbols share it): counts and
    PnL summed; positions are in different assets, so not summed."""
    by_quote: dict[str, list[dict[str, Any]]] = {}
    for sym, s in summary["symbols"].items():
        by_quote.setdefault(quote_of(sym), []).append(s)
    rows = []
    for q, group in by_quote.items():
        row = ["TOTAL" if len(by_quote) == 1 else f"TOTAL {q}"]
        for c in cols[1:]:
            if c in _SUMMED and all(c in s for s in group):
                row.append(plain(sum((Decimal(str(s[c])) for s in group), Decimal(0))))
            elif c == "open_orders_at_exit" and all(s[c] is not None for s in group):
                row.append(str(sum(s[c] for s in group)))
            else:
                row.append("")
        rows.append(row)
    return rows


def summary_table(summary: dict[str, Any], cols: Sequence[str] = RUN_COLUMNS) -> str:
    """The exit table: a row per symbol (its ``final_state`` as the state where known), a
    TOTAL row, the exposure, the kill switch and the venue's pauses."""
    rows = [list(cols)]
    for sym, s in summary["symbols"].items():
        cells = [sym]
        for c in cols[1:]:
            value = s.get("final_state", s[c]) if c == "state" else s[c]
            cells.append("-" if value is None else str(value))
        rows.append(cells)
    body = rows[1:]
    rows.extend(_total_rows(summary, cols) if body else [])
    lines = _columns(rows)
    widths = [max(len(r[i]) for r in rows) for i in range(len(cols))]
    rule = "  ".join("-" * w for w in widths)
    lines.insert(1, rule)
    if body:
        lines.insert(len(body) + 2, rule)
    exp = summary["exposure"]
    lines.append(
        f"exposure total {exp.get('total')} (cap {exp.get('max_total')})"
        + ("  KILLED: " + summary["kill_reason"] if summary["killed"] else "")
    )
    lim = summary.get("limiter")
    if lim and lim["pauses"]:
        lines.append(f"venue paused us {lim['pauses']} times ({lim['bans']} bans, 418)")
    return "\n".join(lines)


def replay_counts_line(rp: dict[str, Any]) -> str:
    """One line of the replay's counts (the summary's ``replay`` section)."""
    return (
        f"replayed {rp['records']:,} records ({rp['duration_s']}s of market time); "
        f"malformed lines {rp['malformed_lines']}, unknown streams "
        f"{rp['unknown_streams']}, unknown symbols {rp['unknown_symbols']}; "
        f"time jumps skipped {rp['time_jumps_skipped']}, out of order skipped "
        f"{rp['out_of_order_skipped']}, late lines kept {rp['late_lines_kept']}; "
        f"truncated files {rp['truncated_files']}, corrupt files {rp['corrupt_files']}"
    )


def replay_warnings(rp: dict[str, Any]) -> list[str]:
    """What the user must hear about the replay's input: every damaged file, where it stopped,
    then the first problems by file and line."""
    out = [
        f"{d['file']} is {d['problem']} at byte {d['at_byte']}: its lines up to line "
        f"{d['after_line']} were replayed, reading stopped there ({d['detail']})"
        for d in rp["damage"]
    ]
    out.extend(rp["problems"])
    return out
