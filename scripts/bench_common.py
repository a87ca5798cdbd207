"""Shared parts of the benchmarks (``scripts/bench.py`` and its ``bench_*`` modules): paths,
the limits that keep a run unthrottled, and the results table every benchmark adds rows to.

Importing it also makes the checkout's ``mm_trio`` importable when the scripts run as plain
scripts from a checkout (``python scripts/bench.py``), so every bench module imports it
before ``mm_trio``.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a plain script from a checkout
    sys.path.insert(0, str(REPO))

SCRIPTS = REPO / "scripts"
DATA_DIR = REPO.parent / "shared" / "data"
FIXTURES_DIR = REPO / "fixtures"
BENCHMARKS_MD = REPO / "BENCHMARKS.md"

# Limits high enough that no symbol count is throttled, rejected or gated differently:
# (b) and (c) measure the pipeline, not the rate limiter, the balance or the governor.
UNTHROTTLED: dict[str, Any] = {
    "limiter": {"weight_per_minute": 10**9, "orders_per_10s": 10**9, "orders_per_day": 10**9},
    "governor": {
        "max_total_exposure": "1e12",
        "max_symbol_exposure": "1e12",
        "max_total_loss": "1e12",
    },
}


@dataclass
class Row:
    metric: str
    value: str
    target: str = ""
    ok: bool | None = None  # None: informational

    @property
    def verdict(self) -> str:
        return "" if self.ok is None else ("pass" if self.ok else "**FAIL**")


@dataclass
class Results:
    """The rows of the markdown table and the method note of each benchmark (by letter)."""

    quick: bool
    rows: list[Row] = field(default_factory=list)
    notes: dict[str, str] = field(default_factory=dict)
    profiles: list[str] = field(default_factory=list)  # markdown blocks (part p)

    def add(self, metric: str, value: str, target: str = "", ok: bool | None = None) -> None:
        self.rows.append(Row(metric, value, target, ok))

    def table(self) -> str:
        lines = ["| metric | value | target | result |", "| --- | ---: | --- | --- |"]
        lines += [f"| {r.metric} | {r.value} | {r.target} | {r.verdict} |" for r in self.rows]
        return "\n".join(lines)


def fmt_rate(n: float) -> str:
    return f"{n:,.0f} ev/s"
