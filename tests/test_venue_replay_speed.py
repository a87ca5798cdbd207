"""``mm-trio venue --replay ... --replay-speed X --replay-repeat N``: recordings served faster
than recorded and looped (:class:`~mm_trio.apps.paper.replay.ScaledReplayFeed`), the venue's
``/_admin/stats`` counters, and the trader's ingest counters and lag (issue 12 (f))."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import httpx
import pytest
import trio

from mm_trio.apps.paper import replay
from mm_trio.apps.paper.config import PaperConfig
from mm_trio.apps.paper.replay import PUBLISH_QUANTUM_NS, ScaledReplayFeed, scaled_replay
from mm_trio.apps.paper.server import open_paper_venue
from mm_trio.cli import main
from mm_trio.domain.config import Config, LimiterConfig
from mm_trio.domain.model import Quote, Trade
from mm_trio.exchange.binance.adapter import BinanceExchange
from mm_trio.exchange.binance.decode import StreamDecoder
from mm_trio.exchange.ingest import IngestStats
from mm_trio.exchange.limiter import Limiter
from mm_trio.exchange.recording import merge_recordings
from mm_trio.exchange.sim.recorded import RecordedMarket
from tests.conftest import ROOT

ETHBTC = ROOT / "fixtures" / "ethbtc-synth.gz"
START_NS = 1_000_000_000_000_000_000


def recorded_events(path: Path) -> list[tuple[int, Quote | Trade]]:
    """(recording time, event) of every quote and trade of the file."""
    decoder = StreamDecoder({"ETHBTC": "ETH/BTC"}, clock="recv")
    out: list[tuple[int, Quote | Trade]] = []
    for ts, raw in merge_recordings([path]):
        out += [(ts, ev) for ev in decoder.decode(raw, ts) if type(ev) in (Quote, Trade)]  # type: ignore[misc]
    return out


def feed(speed: float, repeat: int = 1):  # type: ignore[no-untyped-def]
    market = RecordedMarket([ETHBTC], Config())
    f = scaled_replay(market, [ETHBTC], Config(), start_ns=START_NS, speed=speed, repeat=repeat)
    f.add("ETH/BTC", Decimal(1))
    return f


# --------------------------------------------------------------------------- the feed (pure)


def test_a_faster_replay_serves_each_record_speed_times_sooner() -> None:
    recorded = recorded_events(ETHBTC)
    first = recorded[0][0]
    f = feed(10.0)
    got: list[tuple[int, Quote | Trade]] = []
    while (due := f.next_ts()) is not None:
        events = f.advance(due)
        got += [(due, ev) for ev in events]  # type: ignore[misc]
    assert len(got) == len(recorded)
    for (due, ev), (rec_ts, rec) in zip(got, recorded, strict=True):
        # due at start + elapsed / 10, rounded up to the publishing quantum, never early
        exact = START_NS + (rec_ts - first) / 10
        assert exact <= due < exact + PUBLISH_QUANTUM_NS + 1
        assert ev.ts == due  # stamped with the time the venue published it
        if type(ev) is Quote:
            assert (ev.bid, ev.ask) == (rec.bid, rec.ask)  # type: ignore[union-attr]
    span = recorded[-1][0] - first
    assert got[-1][0] - START_NS == pytest.approx(span / 10, abs=PUBLISH_QUANTUM_NS)
    assert f.exhausted


def test_a_late_clock_gets_the_backlog_in_bounded_batches_and_the_lag_is_kept() -> None:
    f = feed(1000.0)
    far = START_NS + 10**12  # the venue clock comes back long after everything was due
    batches = []
    while not f.exhausted:
        batches.append(f.advance(far))
    assert sum(map(len, batches)) == len(recorded_events(ETHBTC))
    assert len(batches) > 1  # the 882 records did not go out in one tick
    assert f.max_lag_ns >= far - START_NS - PUBLISH_QUANTUM_NS


def test_a_repeated_replay_plays_again_with_increasing_trade_ids() -> None:
    once = len(recorded_events(ETHBTC))
    f = feed(50.0, repeat=3)
    events = []
    while (due := f.next_ts()) is not None:
        events += f.advance(due)
    assert len(events) == 3 * once and f.passes == 3 and f.exhausted
    trade_ids = [ev.trade_id for ev in events if type(ev) is Trade]
    assert trade_ids == sorted(trade_ids) and len(set(trade_ids)) == len(trade_ids)
    times = [ev.ts for ev in events]
    assert times == sorted(times)  # each pass starts where the previous one ended


def test_repeat_zero_never_ends() -> None:
    f = feed(100_000.0, repeat=0)
    # each advance takes at most MAX_BATCH_RECORDS records: enough advances for 4 passes
    for _ in range(5 * len(recorded_events(ETHBTC)) // (replay.MAX_BATCH_RECORDS * 4 // 5)):
        due = f.next_ts()
        assert due is not None
        f.advance(due + 10**12)
    assert f.passes >= 2 and not f.exhausted


def _play(f: ScaledReplayFeed, step_ns: int = 0) -> list[Quote | Trade]:
    events: list[Quote | Trade] = []
    while (due := f.next_ts()) is not None:
        events += f.advance(due + step_ns)  # type: ignore[arg-type]
    return events


def test_later_passes_replay_the_first_passs_events_not_the_files(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    kept = feed(50.0, repeat=3)
    from_kept = _play(kept)
    monkeypatch.setattr(replay, "MAX_CACHED_EVENTS", 0)  # too small to keep: decodes each pass
    decoded = feed(50.0, repeat=3)
    assert from_kept == _play(decoded)
    assert isinstance(kept._inner, replay._CachedPass)  # pass 3 came from the kept events
    assert not isinstance(decoded._inner, replay._CachedPass)
    assert kept.records == decoded.records and kept.events == decoded.events


def test_subscribing_during_a_kept_pass_goes_on_from_the_files() -> None:
    f = feed(50.0, repeat=3)
    reference = _play(feed(50.0, repeat=3))
    got: list[Quote | Trade] = []
    while not (isinstance(f._inner, replay._CachedPass) and f._inner.records > 100):
        due = f.next_ts()
        assert due is not None
        got += f.advance(due)  # type: ignore[arg-type]
    served = f._inner.records
    f.add("ETH/BTC", Decimal(1))  # the kept events are dropped; the pass goes on from there
    assert not isinstance(f._inner, replay._CachedPass) and f._inner.records == served
    got += _play(f)
    assert got == reference


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--replay-speed", "0"], "--replay-speed: must be a finite number > 0, got 0"),
        (["--replay-speed", "-3"], "--replay-speed: must be a finite number > 0, got -3"),
        (["--replay-speed", "nan"], "--replay-speed: must be a finite number > 0, got nan"),
        (["--replay-speed", "1e9"], "--replay-speed: must be at most 100000, got 1e+09"),
        (["--replay-repeat", "-1"], "--replay-repeat: must be >= 0 (0: until stopped), got -1"),
    ],
)
def test_bad_replay_pace_is_refused_with_exit_2(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["venue", "--port", "0", "--replay", str(ETHBTC), *args]) == 2
    assert f"mm-trio: error: {message}" in capsys.readouterr().err


def test_a_replay_pace_needs_recordings(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["venue", "--port", "0", "--replay-speed", "5"]) == 2
    assert "need recordings (--replay FILE...)" in capsys.readouterr().err


def test_a_bad_replay_pace_in_the_config_is_named() -> None:
    with pytest.raises(ValueError, match=r"replay_speed = -1\.0: must be a finite number > 0"):
        PaperConfig(replay=(str(ETHBTC),), replay_speed=-1.0)
    with pytest.raises(ValueError, match=r"replay_repeat = -2: must be a whole number >= 0"):
        PaperConfig(replay=(str(ETHBTC),), replay_repeat=-2)


# --------------------------------------------------------------------------- the lag metric


def test_the_lag_is_receipt_minus_event_time_in_buckets() -> None:
    ingest = IngestStats()
    ms = 1_000_000
    ingest.observe_lag(recv_ns=1_000 * ms + 3 * ms, event_ns=1_000 * ms)  # 3 ms
    ingest.observe_lag(recv_ns=2_000 * ms + 150 * ms, event_ns=2_000 * ms)  # 150 ms
    ingest.observe_lag(recv_ns=3_000 * ms, event_ns=3_000 * ms + 5 * ms)  # clock skew: 0
    buckets = dict(ingest.lag.cumulative())
    assert buckets[0.001] == 1  # the skewed one, counted as 0
    assert buckets[0.005] == 2 and buckets[0.1] == 2 and buckets[0.25] == 3
    assert ingest.lag.above(0.1) == 1
    assert ingest.lag.total == pytest.approx(0.153)
    assert ingest.max_lag == pytest.approx(0.15)


# --------------------------------------------------------------------------- end to end


@pytest.mark.slow
async def test_a_trader_on_a_fast_replay_loses_nothing_and_is_never_late() -> None:
    """The Binance adapter (the trader's live path) on the venue's combined stream, the
    fixture served 20 times faster, twice: every market message the venue queued for the
    connection is decoded, and every trade arrives within 100 ms of its ``E``."""
    cfg = PaperConfig(
        replay=(str(ETHBTC),), replay_speed=20.0, replay_repeat=2, admin_token="t" * 32
    )
    async with open_paper_venue(cfg) as server, trio.open_nursery() as nursery:
        exchange = BinanceExchange(
            base_url=server.http_url,
            ws_url=server.ws_url,
            ws_api_url=server.ws_url + "/ws-api/v3",
            api_key=None,
            limiter=Limiter(LimiterConfig()),
        )
        await nursery.start(exchange.run)

        async def drain() -> None:
            async for _ in exchange.events:
                pass

        nursery.start_soon(drain)
        await exchange.subscribe(["ETH/BTC"])
        async with httpx.AsyncClient(base_url=server.http_url) as http:
            with trio.fail_after(30):
                while True:
                    stats = (await http.get("/_admin/stats", headers=server.admin_headers)).json()
                    conns = [c for c in stats["connections"] if c["combined"]]
                    if stats["replay"]["exhausted"] and conns and not conns[-1]["queued"]:
                        break
                    await trio.sleep(0.1)
            await trio.sleep(0.3)  # the last bytes on the wire
        (conn,) = conns
        ingest = exchange.market_ingest
        assert conn["market_messages"] > 100 and not conn["overflowed"]
        assert ingest.quotes + ingest.trades == conn["market_messages"]
        assert ingest.trades == ingest.lag.count > 0
        assert ingest.lag.above(0.1) == 0
        assert stats["replay"]["passes"] == 2
        nursery.cancel_scope.cancel()
