"""Prometheus metrics of a running ``mm-trio run`` (``GET /metrics``, text format).

A custom collector reads the orchestrator's snapshots and the shell's plain counters at
scrape time, so trading never touches a metric object. Names follow Prometheus conventions
(an ``mm_trio_`` prefix, ``_total`` on counters, base units: seconds; money in the symbol's
quote asset, which the ``quote`` label names). Every metric is listed in the README.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import trio
from prometheus_client import CONTENT_TYPE_LATEST as CONTENT_TYPE
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from mm_trio import __version__
from mm_trio.core.lifecycle import SymbolState
from mm_trio.core.risk.monitor import BREAKERS
from mm_trio.engine.orchestrator import Orchestrator
from mm_trio.engine.stats import REJECT_CLASSES
from mm_trio.exchange.ingest import IngestStats

__all__ = [
    "CONTENT_TYPE",
    "OrchestratorCollector",
    "metrics_registry",
    "render",
    "render_off_loop",
]

SIDES = ("BUY", "SELL")
OUTCOMES = ("FILLED", "CANCELED", "REJECTED", "EXPIRED")
EVENT_KINDS = ("quote", "order", "trade", "stream", "marker")
P = "mm_trio_"
REJECT_LABELS = (*sorted(REJECT_CLASSES), "unknown")


def _f(value: Decimal | None) -> float:
    """A metric sample (never an order price): Prometheus samples are floats."""
    return float("nan") if value is None else float(value)


class OrchestratorCollector(Collector):
    """Everything the issue lists: per symbol, aggregate, limiter, streams, latency."""

    def __init__(self, orch: Orchestrator, venue: str) -> None:
        self.orch = orch
        self.venue = venue

    def collect(self) -> Iterator[Metric]:  # noqa: C901 - one flat list of metric families
        orch = self.orch
        snapshot = orch.snapshot()
        running = orch.symbols()
        managers = [orch.manager(s) for s in running]
        exp = snapshot.exposure

        info = InfoMetricFamily(P + "build", "mm-trio version and the venue it trades on")
        info.add_metric([], {"version": __version__, "venue": self.venue})
        yield info
        yield GaugeMetricFamily(
            P + "uptime_seconds",
            "Seconds since the run started",
            value=max(0.0, trio.current_time() - orch.started_at),
        )

        # ------------------------------------------------------------ per symbol
        lab = ["symbol"]
        state = GaugeMetricFamily(
            P + "symbol_state",
            "1 for the state the symbol is in, 0 for the others",
            labels=[*lab, "state"],
        )
        paused = GaugeMetricFamily(
            P + "symbol_paused", "1 while an operator's pause holds", labels=lab
        )
        position = GaugeMetricFamily(
            P + "position", "Held position in the base asset", labels=[*lab, "base"]
        )
        mid = GaugeMetricFamily(
            P + "mid_price", "Last mid price (quote asset)", labels=[*lab, "quote"]
        )
        pnl = GaugeMetricFamily(
            P + "pnl",
            "PnL in the quote asset by kind (realized: closed round trips; unrealized: at mid); "
            "fees are in mm_trio_fees",
            labels=[*lab, "quote", "kind"],
        )
        fees = GaugeMetricFamily(
            P + "fees", "Fees paid, valued in the quote asset", labels=[*lab, "quote"]
        )
        open_orders = GaugeMetricFamily(P + "open_orders", "Our live orders", labels=lab)
        fills = CounterMetricFamily(P + "fills", "Fills of our orders", labels=[*lab, "side"])
        orders = CounterMetricFamily(
            P + "orders",
            "Our orders that ended, by side and outcome",
            labels=[*lab, "side", "outcome"],
        )
        events = CounterMetricFamily(
            P + "events", "Events the symbol handled, by kind", labels=[*lab, "kind"]
        )
        conflated = CounterMetricFamily(
            P + "quotes_conflated",
            "Quotes replaced by a newer one before the symbol read them",
            labels=lab,
        )
        absorbed = CounterMetricFamily(
            P + "quotes_absorbed",
            "Quotes inside the symbol's quiet band: they did not wake it",
            labels=lab,
        )
        trades_absorbed = CounterMetricFamily(
            P + "trades_absorbed",
            "Public trades inside the symbol's trade band (no breaker can trip): "
            "handled later, without waking it",
            labels=lab,
        )
        trades_dropped = CounterMetricFamily(
            P + "trades_dropped",
            "Public trades dropped because the symbol's channel was full",
            labels=lab,
        )
        rejects = CounterMetricFamily(
            P + "rejects", "Orders the venue rejected, by class", labels=[*lab, "class"]
        )
        breaker = GaugeMetricFamily(
            P + "breaker_tripped", "1 while the risk breaker is tripped", labels=[*lab, "breaker"]
        )
        trips = CounterMetricFamily(P + "breaker_trips", "Risk breaker trips", labels=lab)
        exposure = GaugeMetricFamily(
            P + "symbol_exposure",
            "|position| x mid + open buy notional (quote asset)",
            labels=lab,
        )
        reduce_only = GaugeMetricFamily(
            P + "symbol_reduce_only",
            "1 while the governor holds the symbol reduce-only",
            labels=lab,
        )
        resyncs = CounterMetricFamily(
            P + "order_resyncs",
            "Order-state resyncs from the venue (reconnects, overflows)",
            labels=lab,
        )
        overflows = CounterMetricFamily(
            P + "order_channel_overflows",
            "Order events that did not fit the channel (halt + resync)",
            labels=lab,
        )
        foreign = CounterMetricFamily(
            P + "foreign_reports",
            "Execution reports of orders that are not ours (ignored)",
            labels=lab,
        )
        latency = HistogramMetricFamily(
            P + "event_to_intent_seconds",
            "From a quote reaching the symbol's channel to the intents it caused being sent on",
            labels=lab,
        )
        for m in managers:
            s = m.symbol
            snap = snapshot.symbols[s]
            for st in SymbolState:
                state.add_metric([s, str(st)], 1.0 if snap.state == st else 0.0)
            paused.add_metric([s], 1.0 if snap.paused else 0.0)
            position.add_metric([s, m.spec.base], _f(snap.position))
            if snap.mid is not None:  # no quote yet: no sample rather than NaN
                mid.add_metric([s, m.spec.quote], _f(snap.mid))
            pnl.add_metric([s, m.spec.quote, "realized"], _f(snap.realized_pnl))
            pnl.add_metric([s, m.spec.quote, "unrealized"], _f(snap.unrealized_pnl))
            fees.add_metric([s, m.spec.quote], _f(snap.fees_quote))
            open_orders.add_metric([s], snap.open_orders)
            fills.add_metric([s, "BUY"], snap.buys)
            fills.add_metric([s, "SELL"], snap.sells)
            for side in SIDES:
                for outcome in OUTCOMES:
                    orders.add_metric([s, side, outcome], m.order_outcomes.get((side, outcome), 0))
            for kind in EVENT_KINDS:
                events.add_metric([s, kind], m.event_counts.get(kind, 0))
            conflated.add_metric([s], snap.quotes_skipped)
            absorbed.add_metric([s], snap.quotes_absorbed)
            trades_absorbed.add_metric([s], snap.trades_absorbed)
            trades_dropped.add_metric([s], snap.trades_dropped)
            for cls in REJECT_LABELS:  # every class from the start: no series appears late
                rejects.add_metric([s, cls], m.reject_classes.get(cls, 0))
            tripped = set(snap.breakers)
            for name in BREAKERS:
                breaker.add_metric([s, name], 1.0 if name in tripped else 0.0)
            trips.add_metric([s], snap.breaker_trips)
            exposure.add_metric([s], _f(exp.per_symbol.get(s, Decimal(0))))
            reduce_only.add_metric([s], 1.0 if s in exp.reduce_only_symbols else 0.0)
            resyncs.add_metric([s], m.resyncs)
            overflows.add_metric([s], m.overflows)
            foreign.add_metric([s], snap.foreign_reports)
            hist = m.latency
            latency.add_metric(
                [s],
                [(_le(bound), n) for bound, n in hist.cumulative()],
                sum_value=hist.total,
            )
        yield from (
            state, paused, position, mid, pnl, fees, open_orders, fills, orders, events,
            conflated, absorbed, trades_absorbed, trades_dropped, rejects, breaker, trips,
            exposure, reduce_only, resyncs, overflows, foreign, latency,
        )  # fmt: skip

        # ------------------------------------------------------------ aggregate
        yield GaugeMetricFamily(
            P + "total_exposure", "Sum of the symbols' exposure (quote asset)", value=_f(exp.total)
        )
        yield GaugeMetricFamily(
            P + "total_exposure_cap", "governor.max_total_exposure", value=_f(exp.max_total)
        )
        yield GaugeMetricFamily(
            P + "symbol_exposure_cap", "governor.max_symbol_exposure", value=_f(exp.max_symbol)
        )
        yield GaugeMetricFamily(
            P + "total_reduce_only",
            "1 while the total cap holds every symbol reduce-only",
            value=1.0 if exp.reduce_only_total else 0.0,
        )
        yield GaugeMetricFamily(
            P + "killed",
            "1 while the kill switch is latched",
            value=1.0 if snapshot.killed else 0.0,
        )
        yield CounterMetricFamily(
            P + "unrouted_events",
            "Venue events of symbols nobody runs",
            value=snapshot.unrouted_events,
        )
        yield GaugeMetricFamily(
            P + "event_subscribers", "Open event-stream subscribers", value=orch.events.subscribers
        )
        yield CounterMetricFamily(
            P + "event_subscribers_dropped",
            "Event-stream subscribers dropped for reading too slowly",
            value=orch.events.dropped_subscribers,
        )
        yield from self._limiter()
        yield from self._streams()

    def _limiter(self) -> Iterator[Metric]:
        limiter = self.orch.limiter
        core = limiter.core
        now = trio.current_time()
        for name, bucket, what in (
            ("weight", core.weight, "request weight in the last 60 s"),
            ("orders_10s", core.orders_short, "new orders in the last 10 s"),
            ("orders_1d", core.orders_day, "new orders in the last 24 h"),
        ):
            yield GaugeMetricFamily(
                P + f"limiter_{name}_used", f"Limiter: {what}", value=bucket.used(now)
            )
            yield GaugeMetricFamily(
                P + f"limiter_{name}_limit",
                f"Limiter: the limit on {what} (after the safety margin)",
                value=bucket.limit,
            )
        stats = limiter.stats()
        yield CounterMetricFamily(
            P + "limiter_sent_weight", "Request weight granted", value=stats["sent_weight"]
        )
        yield CounterMetricFamily(
            P + "limiter_sent_orders", "New orders granted", value=stats["sent_orders"]
        )
        yield CounterMetricFamily(
            P + "limiter_waits", "Requests that had to wait", value=stats["waits"]
        )
        yield CounterMetricFamily(
            P + "limiter_withdrawn",
            "Placements withdrawn while waiting (never sent)",
            value=stats["withdrawn"],
        )
        yield GaugeMetricFamily(P + "limiter_queued", "Requests waiting now", value=limiter.queued)
        pauses = CounterMetricFamily(
            P + "limiter_pauses",
            "Venue-ordered pauses of all traffic, by HTTP status",
            labels=["status"],
        )
        pauses.add_metric(["429"], stats["pauses"] - stats["bans"])
        pauses.add_metric(["418"], stats["bans"])
        yield pauses
        yield CounterMetricFamily(
            P + "limiter_paused_seconds",
            "Time all traffic was paused by the venue",
            value=limiter.paused_seconds,
        )
        yield GaugeMetricFamily(
            P + "limiter_paused",
            "1 while all traffic is paused by the venue",
            value=1.0 if limiter.paused_until > now else 0.0,
        )

    def _streams(self) -> Iterator[Metric]:
        demux = self.orch.demux
        up = GaugeMetricFamily(
            P + "stream_up", "1 while the venue stream is connected", labels=["stream"]
        )
        reconnects = CounterMetricFamily(
            P + "stream_reconnects", "Reconnects after an outage (then resynced)", labels=["stream"]
        )
        disconnects = CounterMetricFamily(
            P + "stream_disconnects", "Stream outages", labels=["stream"]
        )
        for stream, status in sorted(demux.streams.items()):
            up.add_metric([stream], 0.0 if status == "disconnected" else 1.0)
            reconnects.add_metric([stream], demux.stream_statuses.get((stream, "resynced"), 0))
            disconnects.add_metric([stream], demux.stream_statuses.get((stream, "disconnected"), 0))
        yield from (up, reconnects, disconnects)
        yield from self._ingest()

    def _ingest(self) -> Iterator[Metric]:
        """Market events taken off a network venue's stream, and their event-time lag."""
        ingest = getattr(self.orch.exchange, "market_ingest", None)
        if not isinstance(ingest, IngestStats):  # the in-process venue has no wire
            return
        received = CounterMetricFamily(
            P + "market_events_received",
            "Market events decoded off the venue's market stream, by kind",
            labels=["kind"],
        )
        received.add_metric(["quote"], ingest.quotes)
        received.add_metric(["trade"], ingest.trades)
        lag = HistogramMetricFamily(
            P + "market_event_lag_seconds",
            "From a trade's venue event time (E) to its local receipt, on the venue's clock",
        )
        lag.add_metric(
            [], [(_le(b), n) for b, n in ingest.lag.cumulative()], sum_value=ingest.lag.total
        )
        yield from (received, lag)
        yield GaugeMetricFamily(
            P + "market_event_lag_max_seconds",
            "The largest market_event_lag_seconds observed since the start",
            value=ingest.max_lag,
        )


def _le(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(bound)


def metrics_registry(orch: Orchestrator, venue: str) -> CollectorRegistry:
    """A registry of its own (not the process-global one): the run's collector plus the
    client library's standard process and platform metrics."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(OrchestratorCollector(orch, venue))
    _standard(registry)
    return registry


def _standard(registry: CollectorRegistry) -> None:
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)


def render(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)


class _Collected(Collector):
    """Metric families already read (so formatting them can happen off the event loop)."""

    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterator[Metric]:
        return iter(self.families)


async def render_off_loop(collector: OrchestratorCollector) -> bytes:
    """Read the engine on the event loop (consistent, no locks: nothing else runs while it
    reads), then format the text in a worker thread, so a scrape holds trading up only for
    the reading (about half the work with a few symbols)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collected(list(collector.collect())))
    _standard(registry)
    return await trio.to_thread.run_sync(generate_latest, registry)
