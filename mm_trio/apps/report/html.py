"""The report as one self-contained HTML file (plotly figures, plotly.js inlined once).

Per run and symbol: price with the grid's resting orders and every fill; PnL split into
realized, unrealized and fees; inventory; drawdown. Per run: the total. With several runs,
their total PnL and drawdown overlaid, and every metrics table has one column per run.
Nothing is fetched when the page opens: plotly.js is in the page, no CDN.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from decimal import Decimal

import plotly.graph_objects as go
from plotly.offline import get_plotlyjs
from plotly.subplots import make_subplots

from mm_trio.apps.report.load import TOTAL, Run, SymbolRun
from mm_trio.apps.report.metrics import (
    NS_PER_S,
    Metrics,
    OrderRec,
    Sample,
    drawdowns,
    match_fills,
)

PLOT_CONFIG = {"displaylogo": False, "responsive": True}
FIGURE_HEIGHT = 900
TOTAL_HEIGHT = 600
ORDER_COLOURS = {
    "open BUY": "#2ca02c",
    "open SELL": "#ff7f0e",
    "TP SELL": "#d62728",
    "TP BUY": "#1f77b4",
}
FILL_MARKERS = {
    ("BUY", True): ("buy (opening)", "triangle-up", "#2ca02c"),
    ("BUY", False): ("buy (take-profit)", "triangle-up-open", "#1f77b4"),
    ("SELL", True): ("sell (opening)", "triangle-down-open", "#ff7f0e"),
    ("SELL", False): ("sell (take-profit)", "triangle-down", "#d62728"),
}


def _t(ns: int) -> datetime:
    return datetime.fromtimestamp(ns / NS_PER_S, tz=UTC)


# --------------------------------------------------------------------------- formatting


def _money(d: Decimal | None) -> str:
    return "-" if d is None else f"{d:,.4f}"


def _ratio(x: float | None, places: int = 2) -> str:
    return "-" if x is None else f"{x:,.{places}f}"


def _pct(x: float | None, places: int = 2) -> str:
    return "-" if x is None else f"{x:.{places}%}"


def _secs(x: float | None) -> str:
    return "-" if x is None else f"{x:,.0f} s"


def _levels(d: dict[int | None, int]) -> str:
    return " ".join(f"{'?' if k is None else k}:{v}" for k, v in d.items()) or "-"


def _rejects(d: dict[str, int]) -> str:
    return " ".join(f"{k}:{v}" for k, v in d.items()) or "0"


def _qty(d: Decimal | None) -> str:
    return "-" if d is None else f"{d.normalize():f}"


MetricRow = tuple[str, Callable[[Metrics], str]]
METRIC_ROWS: list[MetricRow] = [
    ("net PnL", lambda m: _money(m.net_pnl)),
    ("realized PnL", lambda m: _money(m.realized_pnl)),
    ("unrealized PnL", lambda m: _money(m.unrealized_pnl)),
    ("fees", lambda m: _money(m.fees)),
    ("capital used (peak exposure)", lambda m: _money(m.capital_used)),
    ("return on capital", lambda m: _pct(m.return_on_capital, 4)),
    ("max drawdown", lambda m: _money(m.max_drawdown)),
    ("PnL / max drawdown", lambda m: _ratio(m.pnl_per_drawdown)),
    ("Sharpe (annualised)", lambda m: _ratio(m.sharpe)),
    ("Sortino (annualised)", lambda m: _ratio(m.sortino)),
    ("round trips", lambda m: str(m.round_trips)),
    ("round trips per level", lambda m: _levels(m.round_trips_per_level)),
    ("avg profit per round trip (after fees)", lambda m: _money(m.avg_round_trip_net)),
    ("fills", lambda m: str(m.fills)),
    ("opening orders placed", lambda m: str(m.opening_orders)),
    ("fill rate", lambda m: _pct(m.fill_rate)),
    ("turnover", lambda m: _money(m.turnover)),
    ("max inventory (base)", lambda m: _qty(m.max_inventory)),
    ("max inventory value", lambda m: _money(m.max_inventory_value)),
    ("time at max inventory", lambda m: _secs(m.time_at_max_inventory_s)),
    ("time holding inventory", lambda m: _secs(m.time_holding_s)),
    ("time halted", lambda m: _secs(m.time_halted_s)),
    ("time reduce-only", lambda m: _secs(m.time_reduce_only_s)),
    ("breaker trips", lambda m: str(m.breaker_trips)),
    ("rejects by class", lambda m: _rejects(m.rejects)),
    ("duration", lambda m: _secs(m.duration_s)),
]


def side_by_side(
    runs: Sequence[Run], results: Sequence[dict[str, Metrics]]
) -> list[tuple[str, Metrics]]:
    """The table's columns: the total, then each symbol; within each, one column per run
    (so two configs' numbers stand next to each other)."""
    symbols = [TOTAL, *sorted({s for r in runs for s in r.symbols})]
    cols = []
    for symbol in symbols:
        for run, m in zip(runs, results, strict=True):
            if symbol in m:
                cols.append((symbol if len(runs) == 1 else f"{run.name} {symbol}", m[symbol]))
    return cols


def metrics_table_rows(columns: Sequence[tuple[str, Metrics]]) -> list[list[str]]:
    """Header then one row per metric, one column per ``(title, metrics)``."""
    rows = [["metric", *(title for title, _ in columns)]]
    for label, fmt in METRIC_ROWS:
        rows.append([label, *(fmt(m) for _, m in columns)])
    return rows


def text_table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        )
        for r in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _html_table(rows: list[list[str]], css: str = "metrics") -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in rows[0])
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows[1:]
    )
    return f'<table class="{css}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


# --------------------------------------------------------------------------- figures


def _order_segments(orders: Sequence[OrderRec], end_ns: int) -> dict[str, tuple[list, list]]:
    """Resting orders as horizontal segments, one trace per kind (``None`` separates)."""
    out: dict[str, tuple[list, list]] = {}
    for o in orders:
        kind = ("open " if o.opening else "TP ") + o.side
        xs, ys = out.setdefault(kind, ([], []))
        xs += [_t(o.ts_ns), _t(o.end_ns if o.end_ns is not None else end_ns), None]
        ys += [float(o.price), float(o.price), None]
    return out


def _add_pnl(fig: go.Figure, samples: Sequence[Sample], row: int, legend: bool = True) -> None:
    t = [_t(s.ts_ns) for s in samples]
    series = [
        ("total PnL", [s.total for s in samples], "#000000"),
        ("realized", [s.realized for s in samples], "#2ca02c"),
        ("unrealized", [s.unrealized for s in samples], "#9467bd"),
        ("fees", [-s.fees for s in samples], "#d62728"),
    ]
    for name, ys, colour in series:
        fig.add_trace(
            go.Scatter(
                x=t,
                y=[float(y) for y in ys],
                name=name,
                mode="lines",
                line={"color": colour},
                showlegend=legend,
                legendgroup=name,
            ),
            row=row,
            col=1,
        )


def _add_drawdown(fig: go.Figure, samples: Sequence[Sample], row: int, name: str) -> None:
    dd = drawdowns([s.total for s in samples])
    fig.add_trace(
        go.Scatter(
            x=[_t(s.ts_ns) for s in samples],
            y=[-float(d) for d in dd],
            name=name,
            mode="lines",
            fill="tozeroy",
            line={"color": "#8c564b"},
        ),
        row=row,
        col=1,
    )


def symbol_figure(sym: SymbolRun, title: str) -> go.Figure:
    fig = make_subplots(
        rows=4,
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.04,
        row_heights=[0.4, 0.25, 0.175, 0.175],
        subplot_titles=(
            "price, grid orders and fills",
            "PnL (quote)",
            "inventory (base)",
            "drawdown (quote)",
        ),
    )
    samples = sym.samples
    end_ns = samples[-1].ts_ns if samples else max((o.ts_ns for o in sym.orders), default=0)
    mids = [(s.ts_ns, s.mid) for s in samples if s.mid is not None]
    fig.add_trace(
        go.Scatter(
            x=[_t(t) for t, _ in mids],
            y=[float(m) for _, m in mids],
            name="mid",
            mode="lines",
            line={"color": "#7f7f7f", "width": 1},
        ),
        row=1,
        col=1,
    )
    for kind, (xs, ys) in sorted(_order_segments(sym.orders, end_ns).items()):
        fig.add_trace(
            go.Scatter(
                x=xs,
                y=ys,
                name=f"grid: {kind}",
                mode="lines",
                opacity=0.6,
                line={"color": ORDER_COLOURS.get(kind), "width": 2},
            ),
            row=1,
            col=1,
        )
    opening = match_fills(sym.fills).opening
    ordered = sorted(sym.fills, key=lambda f: f.ts_ns)
    for (side, is_open), (name, symbol, colour) in FILL_MARKERS.items():
        picked = [
            f for f, o in zip(ordered, opening, strict=True) if f.side == side and o == is_open
        ]
        if not picked:
            continue
        fig.add_trace(
            go.Scatter(
                x=[_t(f.ts_ns) for f in picked],
                y=[float(f.price) for f in picked],
                name=name,
                mode="markers",
                marker={
                    "symbol": symbol,
                    "size": 11,
                    "color": colour,
                    "line": {"width": 1, "color": colour},
                },
                text=[
                    f"{f.side} {f.qty.normalize():f} @ {f.price} ({f.client_id})" for f in picked
                ],
                hoverinfo="text+x",
            ),
            row=1,
            col=1,
        )
    _add_pnl(fig, samples, row=2)
    fig.add_trace(
        go.Scatter(
            x=[_t(s.ts_ns) for s in samples],
            y=[float(s.position) for s in samples],
            name="inventory",
            mode="lines",
            line={"shape": "hv", "color": "#17becf"},
        ),
        row=3,
        col=1,
    )
    _add_drawdown(fig, samples, row=4, name="drawdown")
    fig.update_layout(title=title, height=FIGURE_HEIGHT, hovermode="x unified")
    return fig


def total_figure(run: Run) -> go.Figure:
    fig = make_subplots(
        rows=2,
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.08,
        subplot_titles=("total PnL (quote)", "total drawdown (quote)"),
    )
    _add_pnl(fig, run.total, row=1)
    _add_drawdown(fig, run.total, row=2, name="drawdown")
    fig.update_layout(title=f"{run.name}: all symbols", height=TOTAL_HEIGHT, hovermode="x unified")
    return fig


def comparison_figure(runs: Sequence[Run]) -> go.Figure:
    fig = make_subplots(
        rows=2,
        cols=1,
        shared_xaxes=False,
        vertical_spacing=0.1,
        subplot_titles=("total PnL by run (time since start)", "drawdown by run"),
    )
    for run in runs:
        if not run.total:
            continue
        t0 = run.total[0].ts_ns
        x = [(s.ts_ns - t0) / NS_PER_S for s in run.total]
        fig.add_trace(
            go.Scatter(
                x=x,
                y=[float(s.total) for s in run.total],
                name=run.name,
                mode="lines",
                legendgroup=run.name,
            ),
            row=1,
            col=1,
        )
        dd = drawdowns([s.total for s in run.total])
        fig.add_trace(
            go.Scatter(
                x=x,
                y=[-float(d) for d in dd],
                name=f"{run.name} drawdown",
                mode="lines",
                legendgroup=run.name,
            ),
            row=2,
            col=1,
        )
    fig.update_xaxes(title_text="seconds since the run's first sample")
    fig.update_layout(title="runs compared", height=TOTAL_HEIGHT)
    return fig


# --------------------------------------------------------------------------- page

DEFINITIONS = """
<details><summary>How the metrics are defined</summary><ul>
<li><b>net PnL</b> = realized + unrealized (at the last mid) &minus; fees, in the quote asset.</li>
<li><b>Sharpe</b> = mean / sample standard deviation of the equity's changes between samples
&times; &radic;(seconds per 365-day year / sampling interval); <b>Sortino</b> the same over
the downside deviation &radic;(&Sigma; min(change, 0)&sup2; / n). No risk-free rate.</li>
<li><b>drawdown</b> = highest PnL so far (0 at the start) &minus; PnL.</li>
<li><b>capital used</b> = peak exposure (|position| &times; mid + open buy notional);
<b>return on capital</b> = net PnL / capital used.</li>
<li><b>round trip</b>: a closing order (take-profit or buy-back) matched FIFO against its
level's open lots; its profit is the price difference &times; matched quantity minus both
legs' fees. <b>fill rate</b> = opening orders with a fill / opening orders placed.</li>
<li><b>turnover</b> = &Sigma; price &times; quantity of all fills. Times weight each sample
by the time to the next one.</li></ul></details>
"""

CSS = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
table.metrics{border-collapse:collapse;margin:0.5em 0 1.5em}
table.metrics td,table.metrics th{border:1px solid #ccc;padding:3px 8px;text-align:right}
table.metrics td:first-child,table.metrics th:first-child{text-align:left}
table.metrics thead th{background:#f2f2f2}
h2{border-bottom:1px solid #ddd;padding-bottom:3px}
"""


class Page:
    """An HTML page of sections and plotly figures sharing one inlined plotly.js."""

    def __init__(self, title: str) -> None:
        self.title = title
        self.parts: list[str] = []
        self.figures = 0

    def add(self, markup: str) -> None:
        self.parts.append(markup)

    def figure(self, fig: go.Figure) -> None:
        self.figures += 1
        self.parts.append(
            fig.to_html(
                full_html=False,
                include_plotlyjs=False,
                config=PLOT_CONFIG,
                div_id=f"fig{self.figures}",
            )
        )

    def render(self) -> str:
        return (
            '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            f"<title>{html.escape(self.title)}</title><style>{CSS}</style>"
            f'<script type="text/javascript">{get_plotlyjs()}</script></head><body>'
            + "\n".join(self.parts)
            + "</body></html>\n"
        )


def render_report(runs: Sequence[Run], results: Sequence[dict[str, Metrics]]) -> str:
    """The report of ``runs`` with their metrics (``results[i][symbol or TOTAL]``)."""
    names = ", ".join(r.name for r in runs)
    page = Page(f"mm-trio report: {names}")
    page.add(f"<h1>mm-trio report: {html.escape(names)}</h1>")
    page.add(_sources(runs))
    page.add("<h2>Metrics</h2>")
    page.add(_html_table(metrics_table_rows(side_by_side(runs, results))))
    page.add(DEFINITIONS)
    if len(runs) > 1:
        page.add("<h2>Runs compared</h2>")
        page.figure(comparison_figure(runs))
    for run in runs:
        page.add(f"<h2>Run {html.escape(run.name)}</h2>")
        page.figure(total_figure(run))
        for symbol in sorted(run.symbols):
            page.figure(symbol_figure(run.symbols[symbol], f"{run.name}: {symbol}"))
    return page.render()


def _sources(runs: Sequence[Run]) -> str:
    items = []
    for r in runs:
        what = (
            "replay output directory"
            if r.kind == "replay"
            else (
                "state store (equity rebuilt from the fill ledger, marked at the last fill price)"
            )
        )
        items.append(
            f"<li><b>{html.escape(r.name)}</b>: {html.escape(str(r.source))} ({what})</li>"
        )
    return "<ul>" + "".join(items) + "</ul>"
