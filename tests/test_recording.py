"""Recording files: reading (plain/gzip), bad lines, merging, spec inference, fixtures."""

from __future__ import annotations

import gzip
import importlib.util
import sys
from decimal import Decimal
from pathlib import Path
from types import ModuleType

import pytest

from mm_trio.exchange.binance.decode import StreamDecoder
from mm_trio.exchange.recording import (
    RecordingStats,
    infer_specs,
    iter_recording,
    merge_recordings,
    parse_line,
    recording_paths,
    write_raw_lines,
    write_recording,
)

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures"
SHARED_DATA = ROOT.parent / "shared" / "data"
SYMBOLS = {"BTCUSDT": "BTC/USDT", "ETHUSDT": "ETH/USDT", "ETHBTC": "ETH/BTC"}
BTC = FIXTURES / "btcusdt-synth.gz"
ETH = FIXTURES / "ethusdt-synth.gz"
ETHBTC = FIXTURES / "ethbtc-synth.gz"

CONTENT = (
    b'100 {"a":1}\n'
    b"\n"  # empty
    b"no-space-here\n"
    b'12x4 {"a":2}\n'  # non-integer time
    b"-5 {}\n"  # negative time
    b"200 \n"  # empty payload
    b'300 {"a":3} tail with spaces\r\n'
    b'400 {"a":4}'  # no trailing newline
)
GOOD = [(100, b'{"a":1}'), (300, b'{"a":3} tail with spaces'), (400, b'{"a":4}')]


def load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "make_fixtures", ROOT / "scripts/make_fixtures.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["make_fixtures"] = module
    spec.loader.exec_module(module)
    return module


def test_parse_line() -> None:
    assert parse_line(b'1 {"x":1}\n') == (1, b'{"x":1}')
    assert parse_line(b"1") is None
    assert parse_line(b" 1 {}") is None
    assert parse_line(b"+1 {}") is None
    assert parse_line(b"1_0 {}") is None


@pytest.mark.parametrize("compressed", [False, True])
def test_read_plain_and_gzip_by_magic(tmp_path: Path, compressed: bool) -> None:
    path = tmp_path / "rec.txt"  # the name says nothing: the magic bytes decide
    path.write_bytes(gzip.compress(CONTENT) if compressed else CONTENT)
    stats = RecordingStats()
    assert list(iter_recording(path, stats)) == GOOD
    assert (stats.files, stats.lines, stats.records, stats.malformed) == (1, 8, 3, 5)
    assert len(stats.errors) == 5 and "rec.txt:2" in stats.errors[0]


def test_truncated_gzip_is_not_fatal(tmp_path: Path) -> None:
    body = b"".join(b'%d {"n":%d}\n' % (i, i) for i in range(5000))
    blob = gzip.compress(body)
    path = tmp_path / "cut.gz"
    path.write_bytes(blob[: len(blob) // 2])
    stats = RecordingStats()
    got = list(iter_recording(path, stats))
    assert 0 < len(got) < 5000 and stats.truncated == 1
    assert [ts for ts, _ in got] == list(range(len(got)))


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty"
    path.write_bytes(b"")
    assert list(iter_recording(path)) == []


def test_write_read_round_trip(tmp_path: Path) -> None:
    lines = [(1, b'{"a":1}'), (2, '{"b":"x y"}'), (2, b"{}")]
    path = tmp_path / "out.gz"
    assert write_recording(path, lines) == 3
    raw = path.read_bytes()
    assert raw[:2] == b"\x1f\x8b" and raw[4:8] == b"\0\0\0\0"  # mtime 0
    assert list(iter_recording(path)) == [(1, b'{"a":1}'), (2, b'{"b":"x y"}'), (2, b"{}")]
    again = tmp_path / "again.gz"
    write_recording(again, lines)
    assert again.read_bytes() == raw  # byte-deterministic
    with pytest.raises(ValueError, match="newline"):
        write_recording(tmp_path / "bad.gz", [(1, b"a\nb")])
    with pytest.raises(ValueError, match="negative"):
        write_recording(tmp_path / "bad.gz", [(-1, b"{}")])


def test_merge_order_and_stability(tmp_path: Path) -> None:
    a, b, c = tmp_path / "a.gz", tmp_path / "b", tmp_path / "c.gz"
    write_recording(a, [(1, b"a1"), (5, b"a5"), (5, b"a5bis"), (9, b"a9")])
    b.write_bytes(b"5 b5\n2 b2-out-of-order\n7 b7\n")  # plain, one line out of order
    write_raw_lines(c, [b"0 c0", b"garbage", b"5 c5", b"10 c10"])
    stats = RecordingStats()
    merged = list(merge_recordings([a, b, c], stats))
    assert merged == [
        (0, b"c0"),
        (1, b"a1"),
        (5, b"a5"),  # ties: file order first, then line order
        (5, b"a5bis"),
        (5, b"b5"),
        (5, b"b2-out-of-order"),  # 3 ns early: kept at its file's previous time (late)
        (5, b"c5"),
        (7, b"b7"),
        (9, b"a9"),
        (10, b"c10"),
    ]
    assert stats.files == 3 and stats.malformed == 1 and stats.records == 10
    assert stats.late == 1 and stats.out_of_order == stats.time_jumps == 0
    assert list(merge_recordings([a, b, c])) == merged  # deterministic
    assert list(merge_recordings([a])) == list(iter_recording(a))


def test_merge_fixtures_is_sorted_and_complete() -> None:
    paths = recording_paths(FIXTURES)
    assert [p.name for p in paths] == [
        "btcusdt-synth.gz",
        "btcusdt-usdm-synth.gz",
        "ethbtc-synth.gz",
        "ethusdt-synth.gz",
    ]
    stats = RecordingStats()
    merged = list(merge_recordings(paths, stats))
    times = [ts for ts, _ in merged]
    assert times == sorted(times)
    assert len(merged) == sum(len(list(iter_recording(p))) for p in paths)
    assert stats.malformed == 1  # the "not-a-time" line in btcusdt-synth.gz
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert max(gaps) > 5_000_000_000  # the scripted gap of several seconds


def test_fixture_decoder_counts() -> None:
    d = StreamDecoder(SYMBOLS)
    for ts, payload in iter_recording(BTC):
        d.decode(payload, ts)
    assert d.stats.malformed == 1 and d.stats.unknown_stream == 1
    assert d.stats.unknown_names == {"kline": 1}
    for path in (ETH, ETHBTC):
        d2 = StreamDecoder(SYMBOLS)
        for ts, payload in iter_recording(path):
            d2.decode(payload, ts)
        assert d2.stats.malformed == 0 and d2.stats.unknown_stream == 0
        assert d2.stats.book_ticker and d2.stats.trade and d2.stats.depth


def test_infer_specs_on_fixtures() -> None:
    specs = infer_specs(
        [BTC, ETH, ETHBTC], StreamDecoder(SYMBOLS, decode_depth=True), max_lines=100_000
    )
    assert sorted(specs) == ["BTC/USDT", "ETH/BTC", "ETH/USDT"]
    btc, eth, ethbtc = specs["BTC/USDT"], specs["ETH/USDT"], specs["ETH/BTC"]
    assert (btc.base, btc.quote) == ("BTC", "USDT")
    assert (btc.tick_size, btc.step_size, btc.min_qty) == (
        Decimal("0.01"),
        Decimal("0.00001"),
        Decimal("0.00001"),
    )
    assert (eth.tick_size, eth.step_size) == (Decimal("0.01"), Decimal("0.0001"))
    assert (ethbtc.tick_size, ethbtc.step_size) == (Decimal("0.00001"), Decimal("0.0001"))
    assert btc.min_notional == 5 and eth.min_notional == 5 and ethbtc.min_notional == 0
    assert btc.on_tick(Decimal("60000.01")) and not btc.on_tick(Decimal("60000.001"))


def test_infer_specs_overrides_and_limits() -> None:
    specs = infer_specs(
        [BTC],
        StreamDecoder(SYMBOLS),
        max_lines=50,
        overrides={"*": {"max_orders": 10}, "BTC/USDT": {"min_notional": Decimal(10)}},
        min_notional={},
    )
    (btc,) = specs.values()
    assert btc.max_orders == 10 and btc.min_notional == 10
    # a symbol outside the decoder's map is not inferred
    assert infer_specs([BTC], StreamDecoder({"ETHUSDT": "ETH/USDT"})) == {}


@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="no ../shared/data (fresh checkout)")
def test_infer_specs_on_real_recordings() -> None:
    paths = recording_paths(SHARED_DATA)
    if len(paths) < 2:
        pytest.skip("real recordings absent")
    d = StreamDecoder({"BTCUSDT": "BTC/USDT", "ETHUSDT": "ETH/USDT"})
    specs = infer_specs(paths, d)
    assert specs["BTC/USDT"].tick_size == Decimal("0.01")
    assert specs["ETH/USDT"].tick_size == Decimal("0.01")
    stats = RecordingStats()
    times = [ts for ts, _ in merge_recordings(paths, stats)]
    assert times == sorted(times) and stats.malformed == 0
    assert len(times) == 41_249 + 33_618


def test_fixture_generator_is_deterministic(tmp_path: Path) -> None:
    gen = load_generator()
    first = gen.make_fixtures(tmp_path / "one")
    second = gen.make_fixtures(tmp_path / "two")
    assert [p.name for p in first] == [p.name for p in second]
    for p, q in zip(first, second, strict=True):
        assert p.read_bytes() == q.read_bytes()
        assert p.stat().st_size < 150_000
    # the committed fixtures are what the generator produces
    for p in first:
        assert p.read_bytes() == (FIXTURES / p.name).read_bytes(), p.name
    assert gen.main(["--check", "--out", str(FIXTURES)]) == 0
    other = gen.make_fixtures(tmp_path / "seed8", seed=8)
    assert other[0].read_bytes() != first[0].read_bytes()


def test_the_recording_package_exports_each_name_from_its_module() -> None:
    import importlib

    import mm_trio.exchange.recording as pkg

    homes = {
        "merge_recordings": "merge",
        "merge_streams": "merge",
        "RecordingPass": "onepass",
        "SpecGuesser": "specs",
        "iter_recording": "reader",
        "parse_line": "reader",
        "recording_paths": "reader",
        "infer_specs": "specs",
        "DEFAULT_MIN_NOTIONAL": "specs",
        "FileDamage": "stats",
        "RecordingStats": "stats",
        "TimeGuard": "timeguard",
        "MAX_TIME_GAP_NS": "timeguard",
        "MAX_TIME_JITTER_NS": "timeguard",
        "TIME_WINDOW_HALF": "timeguard",
        "write_raw_lines": "writer",
        "write_recording": "writer",
    }
    assert sorted(pkg.__all__) == sorted(homes)
    for name, module in homes.items():
        home = importlib.import_module(f"mm_trio.exchange.recording.{module}")
        assert getattr(pkg, name) is getattr(home, name), name


# --------------------------------------------------------------------------- markers
# (at the end, so the lines above are left as they are)
# about a second each or more: left out of the fast unit pass, pytest -m "not slow"
for _test in (test_infer_specs_on_real_recordings, test_fixture_generator_is_deterministic):
    pytest.mark.slow(_test)
