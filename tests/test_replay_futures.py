"""Replay of USDⓈ-M futures recordings (``fixtures/btcusdt-usdm-synth.gz``)."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest

from mm_trio.apps.config_file import load_config
from mm_trio.apps.replay import run_replay
from mm_trio.domain.model import Quote, Trade
from mm_trio.exchange.binance.decode import DepthUpdate, StreamDecoder
from mm_trio.exchange.recording import RecordingStats, infer_specs, iter_recording, merge_recordings
from mm_trio.exchange.sim.recorded import discover_symbols
from tests.conftest import ROOT

FIXTURES = ROOT / "fixtures"
USDM = FIXTURES / "btcusdt-usdm-synth.gz"
ETH = FIXTURES / "ethusdt-synth.gz"
OUTPUTS = ["orders.jsonl", "fills.csv", "equity.csv", "summary.json"]
MS = 1_000_000
START_NS = 1_767_225_600_000_000_000
GAP_S = (90, 97)

# Field order of fstream (USDⓈ-M) market-stream payloads, as Binance sends them.
USDM_KEYS = {
    "bookTicker": ["e", "u", "s", "b", "B", "a", "A", "T", "E"],
    "aggTrade": ["e", "E", "a", "s", "p", "q", "f", "l", "T", "m"],
    "depth@100ms": ["e", "E", "T", "s", "U", "u", "pu", "b", "a"],
}
EXPECTED = {"book_ticker": 900, "agg_trade": 1058, "depth": 692}


def _lines() -> list[tuple[int, dict]]:
    return [(ts, json.loads(raw)) for ts, raw in iter_recording(USDM)]


def test_fixture_present_and_small() -> None:
    assert USDM.is_file()
    assert USDM.stat().st_size <= 120_000


def test_futures_fixture_decodes_cleanly() -> None:
    stats = RecordingStats()
    decoder = StreamDecoder({"BTCUSDT": "BTC/USDT"}, decode_depth=True, clock="recv")
    events = decoder.decode_many(merge_recordings([USDM], stats))
    d = decoder.stats
    assert stats.malformed == 0 and stats.records == sum(EXPECTED.values())
    assert d.malformed == 0 and d.unknown_stream == 0 and d.unrouted == 0
    assert (d.book_ticker, d.agg_trade, d.depth) == tuple(EXPECTED.values())
    assert d.trade == 0  # the classic USDⓈ-M API documents aggTrade, not @trade
    assert d.messages == d.decoded == d.events == len(events)
    kinds = {k: sum(type(e) is k for e in events) for k in (Quote, Trade, DepthUpdate)}
    assert kinds == {Quote: 900, Trade: 1058, DepthUpdate: 692}
    assert all(e.symbol == "BTC/USDT" for e in events)
    # market time: 0-180 s with the 90-97 s gap
    ts = [e.ts - START_NS for e in events]
    assert ts == sorted(ts) and 0 <= ts[0] < 1e9 and 179e9 < ts[-1] < 180e9
    assert not any(GAP_S[0] * 1e9 <= t < GAP_S[1] * 1e9 for t in ts)


def test_futures_lines_look_like_fstream() -> None:
    prev_u: int | None = None
    breaks: list[int] = []
    agg_ids: list[int] = []
    last_trade_id = None
    for recv, msg in _lines():
        assert list(msg) == ["stream", "data"]
        name, _, suffix = msg["stream"].partition("@")
        data = msg["data"]
        assert name == "btcusdt" and data["s"] == "BTCUSDT"
        assert list(data) == USDM_KEYS[suffix], suffix
        assert data["T"] <= data["E"] < recv // MS  # transaction <= event < receive
        if suffix == "depth@100ms":
            if prev_u is not None and data["pu"] != prev_u:
                breaks.append(recv)
            assert data["pu"] < data["U"] <= data["u"]
            prev_u = data["u"]
            levels = data["b"] + data["a"]
        elif suffix == "bookTicker":
            assert Decimal(data["b"]) < Decimal(data["a"])
            levels = [[data["b"], data["B"]], [data["a"], data["A"]]]
            assert len(str(data["u"])) == 13
        else:
            agg_ids.append(data["a"])
            assert data["f"] <= data["l"] and isinstance(data["m"], bool)
            if last_trade_id is not None:
                assert data["f"] == last_trade_id + 1
            last_trade_id = data["l"]
            levels = [[data["p"], data["q"]]]
        for price, qty in levels:  # BTCUSDT perpetual precision: 0.10 tick, 0.001 step
            assert len(price.split(".")[1]) == 2 and Decimal(price) % Decimal("0.1") == 0
            assert len(qty.split(".")[1]) == 3
    assert agg_ids == list(range(agg_ids[0], agg_ids[0] + len(agg_ids)))
    # pu chains the diffs, except once: across the gap the recorder missed messages
    assert len(breaks) == 1 and GAP_S[1] * 1e9 <= breaks[0] - START_NS < (GAP_S[1] + 1) * 1e9


def test_documented_usdm_samples_decode_like_the_fixture() -> None:
    """Samples built from Binance's documented USDⓈ-M payloads decode as fixture lines do."""
    book = {
        "e": "bookTicker",
        "u": 400900217,
        "s": "BTCUSDT",
        "b": "25.35",
        "B": "31.210",
        "a": "25.36",
        "A": "40.660",
        "T": 1568014460891,
        "E": 1568014460893,
    }
    agg = {
        "e": "aggTrade",
        "E": 123456789,
        "a": 5933014,
        "s": "BTCUSDT",
        "p": "0.01",
        "q": "100.000",
        "f": 100,
        "l": 105,
        "T": 123456785,
        "m": True,
    }
    depth = {
        "e": "depthUpdate",
        "E": 123456789,
        "T": 123456788,
        "s": "BTCUSDT",
        "U": 157,
        "u": 160,
        "pu": 149,
        "b": [["0.24", "10.000"]],
        "a": [["0.26", "100.000"]],
    }
    samples = {"bookTicker": book, "aggTrade": agg, "depth@100ms": depth}
    for suffix, data in samples.items():
        assert list(data) == USDM_KEYS[suffix]
    d = StreamDecoder({"BTCUSDT": "BTC/USDT"}, decode_depth=True)  # venue clock: E
    q, t, dep = (
        d.decode(
            json.dumps({"stream": f"btcusdt@{s}", "data": v}, separators=(",", ":")), recv_ts=1
        )[0]
        for s, v in samples.items()
    )
    assert type(q) is Quote and q.ts == book["E"] * MS and q.bid == Decimal("25.35")
    assert type(t) is Trade and t.trade_id == 5933014 and t.buyer_maker
    assert type(dep) is DepthUpdate and (dep.first_id, dep.last_id, dep.prev_last_id) == (
        157,
        160,
        149,
    )
    # the generator's lines carry the same fields, so they decode the same way
    first = {}
    for _ts, msg in _lines():
        first.setdefault(msg["stream"].split("@", 1)[1], msg["data"])
        if len(first) == 3:
            break
    for suffix, data in first.items():
        assert set(data) == set(samples[suffix])


def test_specs_inferred_from_futures_precision() -> None:
    specs = infer_specs([USDM], StreamDecoder({"BTCUSDT": "BTC/USDT"}, decode_depth=True))
    spec = specs["BTC/USDT"]
    assert (spec.tick_size, spec.step_size) == (Decimal("0.1"), Decimal("0.001"))


@pytest.mark.slow
def test_replay_futures_trades_and_flattens_orders(tmp_path: Path) -> None:
    summary = run_replay([USDM], load_config(None), out=tmp_path, progress=None)
    s = summary["symbols"]["BTC/USDT"]
    assert s["fills"] > 0 and s["buys"] > 0 and s["sells"] > 0, s
    assert s["fills"] == s["buys"] + s["sells"]
    assert s["open_orders_at_exit"] == 0
    assert s["events"] > 1000
    rp = summary["replay"]
    assert rp["records"] == sum(EXPECTED.values())
    assert rp["malformed_lines"] == 0 and rp["unknown_streams"] == 0
    assert 179 < rp["duration_s"] < 180
    fills = (tmp_path / "fills.csv").read_text().splitlines()
    assert len(fills) - 1 == s["fills"]
    for row in fills[1:]:  # fills land on the 0.10 tick with 0.001 quantities
        price, qty = row.split(",")[3:5]
        assert Decimal(price) % Decimal("0.1") == 0 and Decimal(qty) % Decimal("0.001") == 0


@pytest.mark.slow
def test_replay_futures_twice_identical(tmp_path: Path) -> None:
    cfg = load_config(None)
    a = run_replay([USDM], cfg, out=tmp_path / "a", progress=None)
    b = run_replay([USDM], cfg, out=tmp_path / "b", progress=None)
    assert a == b
    for name in OUTPUTS:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


@pytest.mark.slow
def test_replay_merges_spot_and_futures() -> None:
    paths = [ETH, USDM]
    assert discover_symbols(paths) == {"BTCUSDT": "BTC/USDT", "ETHUSDT": "ETH/USDT"}
    merged = run_replay(paths, load_config(None), progress=None)
    alone = run_replay([USDM], load_config(None), progress=None)
    for sym in ("BTC/USDT", "ETH/USDT"):
        s = merged["symbols"][sym]
        assert s["fills"] > 0 and s["buys"] > 0 and s["sells"] > 0, (sym, s)
        assert s["open_orders_at_exit"] == 0
    rp = merged["replay"]
    eth_records = sum(1 for _ in iter_recording(ETH))
    assert rp["records"] == eth_records + sum(EXPECTED.values())
    assert rp["malformed_lines"] == 0 and rp["unknown_streams"] == 0
    assert merged["symbols"]["BTC/USDT"]["events"] == alone["symbols"]["BTC/USDT"]["events"]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["btcusdt-usdm-synth.gz"])
def test_futures_fixture_matches_generator(tmp_path: Path, name: str) -> None:
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location(
        "make_fixtures", ROOT / "scripts/make_fixtures.py"
    )
    assert spec is not None and spec.loader is not None
    gen = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("make_fixtures", gen)
    spec.loader.exec_module(gen)
    paths = {p.name: p for p in gen.make_fixtures(tmp_path)}
    assert paths[name].read_bytes() == (FIXTURES / name).read_bytes()
