"""One read of the recordings (issue 12): :class:`RecordingPass` reads each file's head ahead
and merges on from there, and counts exactly what a plain merge counts, in the same order;
:class:`RecordedMarket` finds the symbols, specs and first prices in that read and the replay
decodes every record once."""

from __future__ import annotations

import builtins
import gzip
import random
from collections.abc import Iterator
from itertools import islice
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import mm_trio.exchange.recording.reader as reader_module
from mm_trio.apps.config_file import load_config
from mm_trio.apps.replay import run_replay
from mm_trio.domain.config import Config, config_from_dict
from mm_trio.domain.model import Quote, SymbolSpec, Trade
from mm_trio.exchange.binance.decode import StreamDecoder
from mm_trio.exchange.recording import (
    MAX_TIME_GAP_NS,
    RecordingPass,
    RecordingStats,
    infer_specs,
    iter_recording,
    merge_recordings,
    write_raw_lines,
)
from mm_trio.exchange.sim.recorded import (
    DISCOVERY_LINES,
    MID_LINES,
    SPEC_LINES,
    RecordedMarket,
    ReplayError,
    ReplayFeed,
    discover_symbols,
    replay_market,
)
from tests.conftest import ROOT, SHARED_DATA

FIXTURES = ROOT / "fixtures"
BTC = FIXTURES / "btcusdt-synth.gz"
ETH = FIXTURES / "ethusdt-synth.gz"
ETHBTC = FIXTURES / "ethbtc-synth.gz"
S = 1_000_000_000


def fixture_lines(path: Path) -> list[bytes]:
    return [line for line in gzip.decompress(path.read_bytes()).split(b"\n") if line]


def spoiled(lines: list[bytes], rng: random.Random, count: int) -> list[bytes]:
    """``lines`` with ``count`` of them made bad in the ways a reader counts and notes."""
    out = list(lines)
    for _ in range(count):
        i = rng.randrange(len(out))
        ts, _, payload = out[i].partition(b" ")
        if not ts.isdigit():
            continue
        kind = rng.randrange(4)
        if kind == 0:
            out[i] = b"no time here %d" % i
        elif kind == 1:
            out[i] = b"%d %s" % (int(ts) + 1000 * S, payload)  # a jump
        elif kind == 2:
            out[i] = b"%d %s" % (int(ts) - 5 * S, payload)  # far out of order
        else:
            out[i] = b"%d %s" % (int(ts) - S // 2, payload)  # a little late: kept
    return out


def as_dict(stats: RecordingStats) -> dict[str, Any]:
    return msgspec.to_builtins(stats)  # type: ignore[no-any-return]


def write_files(folder: Path, seed: int, cut: bool) -> list[Path]:
    """Three spoiled copies of the fixtures (the last one cut short when ``cut``)."""
    rng = random.Random(seed)
    paths = []
    for n, src in enumerate((BTC, ETH, ETHBTC)):
        lines = spoiled(fixture_lines(src), rng, rng.randrange(5, 60))
        path = folder / f"f{n}.gz"
        write_raw_lines(path, lines, compresslevel=1)
        paths.append(path)
    if cut:
        data = paths[-1].read_bytes()
        paths[-1].write_bytes(data[: len(data) * 2 // 3])
    return paths


@settings(max_examples=15)
@given(
    seed=st.integers(0, 10_000),
    head=st.integers(1, 3000),
    cut=st.booleans(),
)
def test_a_pass_yields_and_counts_what_a_merge_does(
    tmp_path_factory: pytest.TempPathFactory, seed: int, head: int, cut: bool
) -> None:
    paths = write_files(tmp_path_factory.mktemp("pass"), seed, cut)
    plain = RecordingStats()
    expected = list(merge_recordings(paths, plain))
    stats = RecordingStats()
    reading = RecordingPass(paths, stats, head_lines=head)
    assert reading.heads == [list(islice(iter_recording(p), head)) for p in paths]
    assert list(reading.records()) == expected
    # every counter, the problems in the order the merge met them, the damage: all equal
    assert as_dict(stats) == as_dict(plain)
    assert plain.errors  # the files did hold problems to order


def test_problems_come_in_merge_order_though_the_heads_are_read_first(tmp_path: Path) -> None:
    """Both files' bad lines are in their heads, read file by file; the stats get them in
    the order a merge meets them, interleaved by time."""
    times = [i * S // 10 for i in range(120)]
    a = [b"%d {}" % t for t in times[0::2]]
    b = [b"%d {}" % t for t in times[1::2]]
    a[3] = b"bad-a"
    b[3] = b"bad-b"
    a[40] = b"bad-a-late"
    write_raw_lines(tmp_path / "a.gz", a)
    write_raw_lines(tmp_path / "b.gz", b)
    paths = [tmp_path / "a.gz", tmp_path / "b.gz"]
    plain = RecordingStats()
    list(merge_recordings(paths, plain))
    stats = RecordingStats()
    reading = RecordingPass(paths, stats, head_lines=100)  # the whole of both files
    assert stats.errors == []  # held back: nothing was merged yet
    assert stats.malformed == 3  # the counters are counted as read
    list(reading.records())
    assert stats.errors == plain.errors
    assert [e.rsplit("'", 2)[1] for e in stats.errors] == ["bad-a", "bad-b", "bad-a-late"]


def test_records_are_taken_once(tmp_path: Path) -> None:
    reading = RecordingPass([BTC], head_lines=10)
    list(reading.records())
    with pytest.raises(RuntimeError, match="read once"):
        reading.records()


def test_a_pass_skips_files_that_do_not_meet_in_time(tmp_path: Path) -> None:
    later = tmp_path / "later.gz"
    lines = [b"%d %s" % (ts + 2 * MAX_TIME_GAP_NS, p) for ts, p in iter_recording(BTC)]
    write_raw_lines(later, lines)
    plain = RecordingStats()
    expected = list(merge_recordings([BTC, later], plain))
    stats = RecordingStats()
    assert list(RecordingPass([BTC, later], stats, head_lines=50).records()) == expected
    assert as_dict(stats) == as_dict(plain) and stats.time_jumps > 0


# --------------------------------------------------------------------------- RecordedMarket


def reference_mids(paths: list[Path], native_map: dict[str, str], symbols: set[str]) -> Any:
    """The first price of each symbol, on a read and a decoder of its own."""
    decoder = StreamDecoder(native_map, clock="recv")
    mids: dict[str, Any] = {}
    for n, (ts, raw) in enumerate(merge_recordings(paths)):
        if n >= MID_LINES or len(mids) == len(symbols):
            break
        for ev in decoder.decode(raw, ts):
            if type(ev) is Quote:
                mids.setdefault(ev.symbol, ev.mid)
            elif type(ev) is Trade:
                mids.setdefault(ev.symbol, ev.price)
    return mids


def reference_specs(
    paths: list[Path], config: Config, native_map: dict[str, str]
) -> dict[str, SymbolSpec]:
    """What the spec inference gives on a read of its own (the one pass must agree)."""
    overrides = {sym: dict(values) for sym, values in config.replay.specs.items()}
    decoder = StreamDecoder(native_map, clock="recv")
    return infer_specs(paths, decoder, overrides=overrides, max_lines=SPEC_LINES)


def check_market(paths: list[Path]) -> None:
    config = load_config(None)
    market = RecordedMarket(paths, config)
    native_map = discover_symbols(paths, dict(config.replay.symbols))
    assert market.native_map == native_map
    assert market.specs == reference_specs(paths, config, native_map)
    assert market.mids == reference_mids(paths, native_map, set(market.specs))
    # the replay's records: every merged record with what a fresh decoder makes of it
    stats = RecordingStats()
    decoder = StreamDecoder(native_map, clock="recv")
    expected = [(ts, decoder.decode(raw, ts)) for ts, raw in merge_recordings(paths, stats)]
    assert list(market.records()) == expected
    assert as_dict(market.stats) == as_dict(stats)
    assert market.decoder.stats == decoder.stats  # each record decoded once


def test_recorded_market_matches_separate_reads_on_the_fixtures() -> None:
    check_market([BTC, ETH, ETHBTC])


def test_recorded_market_matches_separate_reads_on_spoiled_files(tmp_path: Path) -> None:
    check_market(write_files(tmp_path, seed=3, cut=True))


@pytest.mark.slow
@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="no ../shared/data (fresh checkout)")
def test_recorded_market_matches_separate_reads_on_real_recordings() -> None:
    paths = sorted(SHARED_DATA.glob("*.gz"))
    if len(paths) < 2:
        pytest.skip("real recordings absent")
    check_market(paths)


def test_a_symbol_first_seen_after_the_discovery_lines_is_not_replayed(tmp_path: Path) -> None:
    lines = [line for _, line in zip(range(DISCOVERY_LINES + 200), _cycle(BTC), strict=False)]
    late = [
        line.replace(b"btcusdt@", b"ethbtc@").replace(b"BTCUSDT", b"ETHBTC")
        for line in lines[DISCOVERY_LINES + 50 : DISCOVERY_LINES + 60]
    ]
    path = tmp_path / "late.gz"
    write_raw_lines(path, lines[: DISCOVERY_LINES + 50] + late + lines[DISCOVERY_LINES + 60 :])
    market = RecordedMarket([path], load_config(None))
    assert market.native_map == {"BTCUSDT": "BTC/USDT"}
    feed = ReplayFeed(market)
    feed.add("BTC/USDT", market.mids["BTC/USDT"])
    while (ts := feed.next_ts()) is not None:
        feed.advance(ts)
    assert feed.decoder.stats.unrouted_names == {"ETHBTC": 10}


def _cycle(path: Path) -> Iterator[bytes]:
    """The fixture's good lines again and again, the times going on (a long recording)."""
    good = [line for line in fixture_lines(path) if line.partition(b" ")[0].isdigit()]
    first = int(good[0].partition(b" ")[0])
    span = int(good[-1].partition(b" ")[0]) - first + S
    shift = 0
    while True:
        for line in good:
            ts, _, payload = line.partition(b" ")
            yield b"%d %s" % (int(ts) + shift, payload)
        shift += span


def test_recorded_market_without_streams_names_the_files(tmp_path: Path) -> None:
    path = tmp_path / "none.gz"
    write_raw_lines(path, [b'1 {"stream":"qqqqqq@trade","data":{}}', b"2 {}"])
    with pytest.raises(ReplayError, match="no market-data streams found in .*none.gz.*QQQQQQ"):
        RecordedMarket([path], load_config(None))


def test_replay_market_serves_the_shifted_records() -> None:
    paths = [BTC, ETH]
    feed, specs, mids = replay_market(paths, config_from_dict({}), start_ns=10**18)
    market = RecordedMarket(paths, config_from_dict({}))
    assert (specs, mids) == (market.specs, market.mids)
    for sym in specs:
        feed.add(sym, mids[sym])
    got = []
    while (ts := feed.next_ts()) is not None:
        got.extend(feed.advance(ts))
    shift = 10**18 - feed.first_ts
    expected = [
        msgspec.structs.replace(ev, ts=ev.ts + shift)
        for _, events in market.records()
        for ev in events
        if type(ev) is Quote or type(ev) is Trade
    ]
    assert got == expected and got[0].ts == 10**18


# --------------------------------------------------------------------------- the replay


def test_a_replay_opens_each_file_once_and_decodes_each_record_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    opened: list[str] = []

    def counting_open(file: Any, *args: Any, **kw: Any) -> Any:
        opened.append(str(file))
        return builtins.open(file, *args, **kw)

    decoded = 0
    real_decode = StreamDecoder.decode

    def counting_decode(self: StreamDecoder, raw: Any, recv_ts: int | None = None) -> Any:
        nonlocal decoded
        decoded += 1
        return real_decode(self, raw, recv_ts)

    monkeypatch.setattr(reader_module, "open", counting_open, raising=False)
    monkeypatch.setattr(StreamDecoder, "decode", counting_decode)
    paths = [BTC, ETH, ETHBTC]
    summary = run_replay(paths, load_config(None), progress=None)
    assert sorted(opened) == sorted(map(str, paths))
    assert decoded == summary["replay"]["records"] > 0
