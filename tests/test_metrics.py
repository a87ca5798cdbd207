"""Prometheus metrics: the collector on a trading orchestrator (simulated venue, MockClock),
parsed back with prometheus_client's own parser; values agree with the snapshots; names
follow the conventions; every metric is in the README; ``promtool check metrics`` passes
where promtool is installed."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from mm_trio.apps.control.metrics import (
    OrchestratorCollector,
    metrics_registry,
    render,
    render_off_loop,
)
from mm_trio.engine.orchestrator import open_orchestrator
from mm_trio.engine.stats import LatencyHistogram, reject_class
from tests.test_orchestrator import make_config, sim, wait_for

ROOT = Path(__file__).resolve().parents[1]
BTC, ETH = "BTC/USDT", "ETH/USDT"
NAME_RE = re.compile(r"mm_trio_[a-z0-9_]+")
WIRE_ONLY_RE = re.compile(r"^\| `(mm_trio_[a-z0-9_]+)` \|.*\(not with `--venue sim`\) \|$", re.M)


def _samples(text: str) -> dict[str, list[Sample]]:
    out: dict[str, list[Sample]] = {}
    for family in text_string_to_metric_families(text):
        out.setdefault(family.name, []).extend(family.samples)
    return out


def _value(samples: dict[str, list[Sample]], name: str, **labels: str) -> float:
    for family in samples.values():
        for s in family:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
    raise AssertionError(f"no sample {name}{labels}")


async def _trading_text(autojump_clock: trio.abc.Clock) -> tuple[str, dict[str, Any]]:
    config = make_config()
    exchange, limiter = sim(config)
    async with open_orchestrator(exchange, config, limiter=limiter) as orch:
        await orch.add_symbols([BTC, ETH])
        await wait_for(lambda: orch.manager(BTC).position.fills >= 2)
        orch.pause(ETH)
        await wait_for(lambda: orch.snapshot().symbols[ETH].state == "HALTED")
        registry = metrics_registry(orch, exchange.name)
        text = render(registry).decode()
        snap = orch.snapshot()
        facts: dict[str, Any] = {
            "btc": snap.symbols[BTC],
            "eth": snap.symbols[ETH],
            "exposure": snap.exposure,
            "sent_weight": limiter.sent_weight,
            "btc_manager_latency": orch.manager(BTC).latency.count,
        }
    return text, facts


async def test_metrics_agree_with_the_snapshot(autojump_clock: trio.abc.Clock) -> None:
    text, facts = await _trading_text(autojump_clock)
    samples = _samples(text)
    btc, eth, exposure = facts["btc"], facts["eth"], facts["exposure"]
    assert _value(samples, "mm_trio_position", symbol=BTC) == float(btc.position)
    assert _value(samples, "mm_trio_open_orders", symbol=BTC) == btc.open_orders
    buys = _value(samples, "mm_trio_fills_total", symbol=BTC, side="BUY")
    sells = _value(samples, "mm_trio_fills_total", symbol=BTC, side="SELL")
    assert (buys, sells) == (btc.buys, btc.sells) and buys + sells >= 2
    realized = _value(samples, "mm_trio_pnl", symbol=BTC, kind="realized")
    assert realized == float(btc.realized_pnl)
    assert _value(samples, "mm_trio_fees", symbol=BTC, quote="USDT") == float(btc.fees_quote)
    assert _value(samples, "mm_trio_symbol_state", symbol=BTC, state="RUNNING") == 1
    assert _value(samples, "mm_trio_symbol_state", symbol=ETH, state="HALTED") == 1
    assert _value(samples, "mm_trio_symbol_state", symbol=ETH, state="RUNNING") == 0
    assert _value(samples, "mm_trio_symbol_paused", symbol=ETH) == 1
    assert eth.paused
    assert _value(samples, "mm_trio_total_exposure") == float(exposure.total)
    assert _value(samples, "mm_trio_total_exposure_cap") == float(exposure.max_total)
    assert _value(samples, "mm_trio_limiter_sent_weight_total") == facts["sent_weight"]
    assert _value(samples, "mm_trio_breaker_tripped", symbol=BTC, breaker="stale") == 0
    assert _value(samples, "mm_trio_events_total", symbol=BTC, kind="quote") > 0
    assert _value(samples, "mm_trio_events_total", symbol=BTC, kind="order") > 0
    filled = _value(samples, "mm_trio_orders_total", symbol=BTC, side="BUY", outcome="FILLED")
    assert filled >= 1
    count = _value(samples, "mm_trio_event_to_intent_seconds_count", symbol=BTC)
    assert count == facts["btc_manager_latency"] and count > 0
    inf = _value(samples, "mm_trio_event_to_intent_seconds_bucket", symbol=BTC, le="+Inf")
    assert inf == count
    assert _value(samples, "mm_trio_limiter_pauses_total", status="429") == 0
    assert _value(samples, "mm_trio_stream_up", stream="venue") == 1
    assert _value(samples, "mm_trio_killed") == 0


async def test_metric_names_follow_conventions_and_are_documented(
    autojump_clock: trio.abc.Clock,
) -> None:
    text, _ = await _trading_text(autojump_clock)
    ours = [f for f in text_string_to_metric_families(text) if f.name.startswith("mm_trio_")]
    assert len(ours) > 40
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    documented = set(NAME_RE.findall(readme))
    for family in ours:
        exposed = family.name + ("_total" if family.type == "counter" else "")
        if family.type == "info":
            exposed = family.name + "_info"
        assert exposed in documented, f"{exposed} is not in the README"
        assert not family.name.endswith(("_ms", "_milliseconds")), family.name
        if family.type == "counter":
            assert all(s.name.endswith(("_total", "_created")) for s in family.samples)
        if family.type == "gauge":
            assert not family.name.endswith("_total"), family.name
        assert family.documentation, family.name
    names = {f.name for f in ours}
    wire_only = set(WIRE_ONLY_RE.findall(readme))  # rows a network venue alone exposes
    assert wire_only, "the README marks the network venue's metrics"
    for name in documented - wire_only:  # nothing documented that is not exposed
        base = name.removesuffix("_total").removesuffix("_info")
        assert base in names or name in names, f"README lists {name}, not exposed"


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed")
async def test_exposition_passes_promtool(autojump_clock: trio.abc.Clock) -> None:
    text, _ = await _trading_text(autojump_clock)
    promtool = shutil.which("promtool")
    assert promtool is not None
    result = subprocess.run(  # noqa: ASYNC221 - one short check of a finished text
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_latency_histogram_buckets_are_cumulative() -> None:
    hist = LatencyHistogram((0.001, 0.01))
    for seconds in (0.0005, 0.001, 0.005, 0.5):
        hist.observe(seconds)
    assert hist.cumulative() == [(0.001, 2), (0.01, 3), (float("inf"), 4)]
    assert hist.count == 4 and abs(hist.total - 0.5065) < 1e-12


@pytest.mark.parametrize(
    ("reason", "cls"),
    [
        ("filter: PRICE_FILTER", "filter"),
        ("balance: insufficient", "balance"),
        ("duplicate: id reused", "duplicate"),
        ("rate_limit: 429", "rate_limit"),
        ("post_only: would take", "post_only"),
        ("something odd", "unknown"),
        ("", "unknown"),
    ],
)
def test_reject_classes(reason: str, cls: str) -> None:
    assert reject_class(reason) == cls


async def test_scrape_formats_off_the_event_loop_with_the_same_families(
    autojump_clock: trio.abc.Clock,
) -> None:
    config = make_config()
    exchange, limiter = sim(config)
    async with open_orchestrator(exchange, config, limiter=limiter) as orch:
        await orch.add_symbols([BTC, ETH])
        await wait_for(lambda: orch.manager(BTC).position.fills >= 1)
        collector = OrchestratorCollector(orch, exchange.name)
        threaded = (await render_off_loop(collector)).decode()
        inline = render(metrics_registry(orch, exchange.name)).decode()
    names = {f.name for f in text_string_to_metric_families(threaded)}
    assert names == {f.name for f in text_string_to_metric_families(inline)}
    assert _value(_samples(threaded), "mm_trio_fills_total", symbol=BTC, side="BUY") >= 1
