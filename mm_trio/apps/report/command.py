"""What ``mm-trio report`` does: load every RUN, compute its metrics, write the HTML page,
return the terminal's metrics table."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from mm_trio.apps.report.load import TOTAL, ReportError, Run, load_run
from mm_trio.apps.report.metrics import Metrics, inventory_value_total, metrics


def run_metrics(run: Run) -> dict[str, Metrics]:
    """Metrics per symbol and in total (key :data:`TOTAL`)."""
    out = {
        symbol: metrics(
            s.samples,
            s.fills,
            s.orders,
            reject_reasons=s.reject_reasons,
            breaker_trips=s.breaker_trips,
        )
        for symbol, s in sorted(run.symbols.items())
    }
    syms = list(run.symbols.values())
    out[TOTAL] = metrics(
        run.total,
        [f for s in syms for f in s.fills],
        [o for s in syms for o in s.orders],
        reject_reasons=[r for s in syms for r in s.reject_reasons],
        breaker_trips=sum(s.breaker_trips for s in syms),
        inventory_samples=inventory_value_total(s.samples for s in syms),
        per_base=False,
    )
    return out


def unique_names(runs: Sequence[Run]) -> None:
    """Two RUNs with one directory name (``a/r1``, ``b/r1``) get their parent's name too."""
    seen: dict[str, int] = {}
    for r in runs:
        seen[r.name] = seen.get(r.name, 0) + 1
    for r in runs:
        if seen[r.name] > 1:
            r.name = f"{r.source.parent.name}/{r.name}" if r.source.parent.name else str(r.source)


def report(paths: Sequence[Path], out: Path) -> str:
    """Write the report of ``paths`` to ``out``; return the terminal's metrics table
    (the total, then each symbol, runs side by side). :class:`ReportError`: a bad RUN."""
    # here, not at the top: a sweep's workers need run_metrics, not plotly
    from mm_trio.apps.report.html import metrics_table_rows, render_report, side_by_side, text_table

    if out.is_dir():
        raise ReportError(f"--out: {str(out)!r} is a directory; give a file name (report.html)")
    runs = [load_run(p) for p in paths]
    unique_names(runs)
    results = [run_metrics(r) for r in runs]
    page = render_report(runs, results)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page, encoding="utf-8")
    return text_table(metrics_table_rows(side_by_side(runs, results)))
