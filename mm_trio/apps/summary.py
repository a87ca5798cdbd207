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
) -> dict[str, Any]:
    """The exit summary (``--summary-json``); ``exposure_at_stop`` is a snapshot taken when
    trading stopped, before our orders were cancelled and the symbols removed; ``limiter``
    (see :func:`limiter_summary`) adds the rate limiter's counters and the venue's alerts."""
    symbols: dict[str, Any] = {}
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


def summary_table(summary: dict[str, Any], cols: Sequence[str] = RUN_COLUMNS) -> str:
    rows = [list(cols)]
    for sym, s in summary["symbols"].items():
        rows.append([sym] + [str(s[c]) for c in cols[1:]])
    widths = [max(len(r[i]) for r in rows) for i in range(len(cols))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
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
