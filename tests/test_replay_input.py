"""Replay input problems (issue 7, items 3-4): absurd or disordered receive times, damaged
gzip, numeric prices, unknown symbols. Each is counted in the summary's ``replay`` section
and skipped; none stalls, jumps or aborts the replay."""

from __future__ import annotations

import gzip
import itertools
import random
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mm_trio.apps.config_file import load_config
from mm_trio.apps.replay import ReplayError, run_replay
from mm_trio.exchange.binance.decode import StreamDecoder
from mm_trio.exchange.recording import (
    MAX_TIME_GAP_NS,
    MAX_TIME_JITTER_NS,
    TIME_WINDOW_HALF,
    RecordingStats,
    iter_recording,
    merge_recordings,
    write_raw_lines,
)
from tests.conftest import ROOT

BTC = ROOT / "fixtures" / "btcusdt-synth.gz"
ETH = ROOT / "fixtures" / "ethusdt-synth.gz"
OUTPUTS = ["orders.jsonl", "fills.csv", "equity.csv"]
S = 1_000_000_000
DAY = 86_400 * S
YEARS_10 = 10 * 365 * DAY


def fixture_lines(path: Path = BTC) -> list[bytes]:
    """The raw lines of a fixture recording (its deliberately bad lines included)."""
    return [line for line in gzip.decompress(path.read_bytes()).split(b"\n") if line]


def retime(line: bytes, ts: int) -> bytes:
    return b"%d %s" % (ts, line.partition(b" ")[2])


def time_of(line: bytes) -> int:
    return int(line.partition(b" ")[0])


def good(lines: list[bytes]) -> list[tuple[int, bytes]]:
    """What a reader must yield for ``lines`` that hold no time problem."""
    out = []
    for line in lines:
        ts, _, payload = line.partition(b" ")
        if ts.isdigit():
            out.append((int(ts), payload))
    return out


def replay(paths: list[Path], out: Path) -> dict[str, Any]:
    return run_replay(paths, load_config(None), out=out, progress=None)


def same_outputs(a: Path, b: Path) -> None:
    for name in OUTPUTS:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


# --------------------------------------------------------------------------- item 3: time


@pytest.mark.slow
@pytest.mark.parametrize("shift", [YEARS_10, DAY, -DAY], ids=["+10y", "+1d", "-1d"])
@pytest.mark.parametrize("where", [0, 1500, -1], ids=["first", "middle", "last"])
def test_one_absurd_time_is_skipped_wherever_it_is(tmp_path: Path, shift: int, where: int) -> None:
    lines = fixture_lines()
    idx = where % len(lines)
    bad = list(lines)
    bad[idx] = retime(lines[idx], time_of(lines[idx]) + shift)
    path = tmp_path / "bad.gz"
    write_raw_lines(path, bad)
    stats = RecordingStats()
    assert list(iter_recording(path, stats)) == good(lines[:idx] + lines[idx + 1 :])
    assert stats.time_jumps == 1 and stats.out_of_order == 0 and stats.late == 0
    assert any(f"bad.gz:{idx + 1}: receive time" in e for e in stats.errors), stats.errors


def test_a_line_near_the_epoch_at_the_start_is_skipped(tmp_path: Path) -> None:
    lines = fixture_lines()
    path = tmp_path / "bad.gz"
    write_raw_lines(path, [retime(lines[0], 1), *lines[1:]])
    stats = RecordingStats()
    assert list(iter_recording(path, stats)) == good(lines[1:])
    assert stats.time_jumps == 1


@pytest.mark.slow
def test_a_day_ahead_line_does_not_stall_the_replay(tmp_path: Path) -> None:
    """The +1 day line used to be followed: the replay idled a day of market time (172,817
    equity rows) and traded on a different market; now it replays as if the line were not
    there, and the summary counts it."""
    lines = fixture_lines()
    bad = list(lines)
    bad[1500] = retime(lines[1500], time_of(lines[1500]) + DAY)
    write_raw_lines(tmp_path / "bad.gz", bad)
    write_raw_lines(tmp_path / "without.gz", lines[:1500] + lines[1501:])
    got = replay([tmp_path / "bad.gz", ETH], tmp_path / "bad")
    ref = replay([tmp_path / "without.gz", ETH], tmp_path / "without")
    same_outputs(tmp_path / "bad", tmp_path / "without")
    assert got["replay"]["time_jumps_skipped"] == 1
    assert ref["replay"]["time_jumps_skipped"] == 0
    assert got["replay"]["duration_s"] == ref["replay"]["duration_s"] < 200
    assert any("bad.gz:1501: receive time" in p for p in got["replay"]["problems"])


def test_jitter_is_kept_at_the_previous_time_a_big_step_back_is_skipped(tmp_path: Path) -> None:
    t0 = 1_767_225_600 * S
    times = [t0 + i * S // 10 for i in range(60)]
    times[20] = times[19] - S // 5  # 0.2 s back: normal jitter between merged streams
    times[40] = times[39] - 50 * S  # 50 s back: not jitter
    path = tmp_path / "rec.txt"
    path.write_bytes(b"".join(b'%d {"n":%d}\n' % (t, i) for i, t in enumerate(times)))
    stats = RecordingStats()
    got = list(iter_recording(path, stats))
    assert [p for _, p in got] == [b'{"n":%d}' % i for i in range(60) if i != 40]
    out_times = [t for t, _ in got]
    assert out_times == sorted(out_times)
    assert out_times[20] == times[19]  # the late line plays at its predecessor's time
    # one line far back is far from its neighbours' times: a time jump (out_of_order is for
    # lines that agree with their neighbours but not with the previous good line)
    assert (stats.late, stats.time_jumps, stats.out_of_order) == (1, 1, 0)
    assert any("rec.txt:41: receive time" in e and "-50." in e for e in stats.errors)


@pytest.mark.slow
def test_reversed_block_is_counted(tmp_path: Path) -> None:
    lines = fixture_lines()
    bad = lines[:1000] + lines[1000:1100][::-1] + lines[1100:]
    write_raw_lines(tmp_path / "rev.gz", bad)
    stats = RecordingStats()
    got = list(iter_recording(tmp_path / "rev.gz", stats))
    times = [t for t, _ in got]
    assert times == sorted(times)
    # the block's first line (its latest) plays; the 99 after it are all earlier: counted
    assert stats.late + stats.out_of_order == 99 and stats.out_of_order > 0
    assert len(got) == len(good(lines)) - stats.out_of_order
    summary = replay([tmp_path / "rev.gz"], tmp_path / "out")
    rp = summary["replay"]
    assert (rp["late_lines_kept"], rp["out_of_order_skipped"]) == (stats.late, stats.out_of_order)


def test_a_confirmed_jump_is_still_not_followed(tmp_path: Path) -> None:
    t0 = 1_767_225_600 * S
    times = [t0 + i * S for i in range(100)] + [t0 + 3600 * S + i * S for i in range(100)]
    path = tmp_path / "rec.txt"
    path.write_bytes(b"".join(b"%d {}\n" % t for t in times))
    stats = RecordingStats()
    assert [t for t, _ in iter_recording(path, stats)] == times[:100]
    assert stats.time_jumps == 100
    notes = [e for e in stats.errors if "rec.txt:101" in e]
    assert len(notes) == 1 and "rec.txt:101-200: 100 lines skipped" in notes[0], notes
    assert "jumps +3501.000 s after line 100" in notes[0]


def test_real_pauses_are_followed(tmp_path: Path) -> None:
    t0 = 1_767_225_600 * S
    gap = MAX_TIME_GAP_NS - S
    # pauses right after the first line and before the last three, and one of almost the
    # limit in the middle (at a file's ends the limit applies from the median of its first
    # or last lines, so there a pause may be shorter by those lines' own span)
    times = (
        [t0]
        + [t0 + gap // 2 + i * S for i in range(1, 50)]
        + [t0 + gap // 2 + gap + i * S for i in range(50, 100)]
        + [t0 + 2 * gap + i * S for i in range(100, 103)]
    )
    path = tmp_path / "rec.txt"
    path.write_bytes(b"".join(b"%d {}\n" % t for t in times))
    stats = RecordingStats()
    assert [t for t, _ in iter_recording(path, stats)] == times
    assert stats.time_jumps == stats.out_of_order == stats.late == 0


@pytest.mark.slow
def test_files_that_do_not_meet_in_time_are_not_bridged(tmp_path: Path) -> None:
    later = tmp_path / "later.gz"
    write_raw_lines(later, [retime(x, time_of(x) + DAY) for x in fixture_lines(ETH)])
    stats = RecordingStats()
    merged = list(merge_recordings([BTC, later], stats))
    assert merged == list(iter_recording(BTC))
    assert stats.time_jumps == len(fixture_lines(ETH))
    assert stats.records == len(merged)


def test_clean_recordings_have_nothing_to_count() -> None:
    for path in (BTC, ETH):
        stats = RecordingStats()
        assert list(iter_recording(path, stats)) == good(fixture_lines(path))
        assert stats.time_jumps == stats.out_of_order == stats.late == 0
        assert stats.damage == [] and stats.truncated == stats.corrupt == 0


def run_guard(times: list[int]) -> tuple[list[tuple[int, bytes]], RecordingStats]:
    """Read a plain recording of ``times`` (payload: the line's index)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "rec.txt"
        path.write_bytes(b"".join(b"%d %d\n" % (t, i) for i, t in enumerate(times)))
        stats = RecordingStats()
        return list(iter_recording(path, stats)), stats


T0 = 1_767_225_600 * S
steps = st.lists(st.integers(0, 60 * S), min_size=0, max_size=120)


@pytest.mark.slow
@given(steps)
def test_guard_passes_any_clean_recording_unchanged(gaps: list[int]) -> None:
    times = [T0]
    for g in gaps:
        times.append(times[-1] + g)
    out, stats = run_guard(times)
    assert out == [(t, b"%d" % i) for i, t in enumerate(times)]
    assert stats.time_jumps == stats.out_of_order == stats.late == 0


@pytest.mark.slow
@given(st.lists(st.integers(0, 60 * S), min_size=2 * TIME_WINDOW_HALF + 1, max_size=120), st.data())
def test_guard_skips_exactly_the_absurd_lines(gaps: list[int], data: st.DataObject) -> None:
    times = [T0]
    for g in gaps:
        times.append(times[-1] + g)
    # isolated absurd lines, a window apart, anywhere (the first and last lines included)
    slots = list(range(0, len(times), 2 * TIME_WINDOW_HALF + 1))
    chosen = data.draw(st.lists(st.sampled_from(slots), unique=True, max_size=4))
    far = 2 * MAX_TIME_GAP_NS + 2 * TIME_WINDOW_HALF * 60 * S
    bad = list(times)
    for i in chosen:
        bad[i] += data.draw(st.sampled_from([1, -1])) * data.draw(st.integers(far, YEARS_10))
    out, stats = run_guard(bad)
    assert out == [(t, b"%d" % i) for i, t in enumerate(times) if i not in chosen]
    assert stats.time_jumps == len(chosen) and stats.out_of_order == stats.late == 0


@pytest.mark.slow
@given(st.lists(st.integers(0, YEARS_10), max_size=80))
def test_guard_output_never_goes_back_and_counts_every_line(times: list[int]) -> None:
    out, stats = run_guard(times)
    assert [t for t, _ in out] == sorted(t for t, _ in out)
    payloads = [p for _, p in out]
    assert payloads == sorted(payloads, key=lambda p: int(p))  # file order, a subsequence
    assert len(out) + stats.time_jumps + stats.out_of_order == len(times)
    for t, p in out:  # a line keeps its time, or plays a little later (late: jitter)
        assert 0 <= t - times[int(p)] <= MAX_TIME_JITTER_NS


# --------------------------------------------------------------------------- item 4: gzip


def lines_before_byte(blob: bytes, cut: int) -> int:
    """Complete lines a gzip file holds in its first ``cut`` compressed bytes."""
    return zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(blob[:cut]).count(b"\n")


@pytest.mark.slow
def test_truncated_gzip_replays_every_good_line_and_says_so(tmp_path: Path) -> None:
    blob = BTC.read_bytes()
    cut = len(blob) // 2
    path = tmp_path / "cut.gz"
    path.write_bytes(blob[:cut])
    n = lines_before_byte(blob, cut)
    stats = RecordingStats()
    assert list(iter_recording(path, stats)) == good(fixture_lines()[:n])  # no cut fragment
    assert stats.truncated == 1 and stats.corrupt == 0
    (dmg,) = stats.damage
    assert (dmg.problem, dmg.after_line, dmg.at_byte) == ("truncated", n, cut)
    rp = replay([path], tmp_path / "out")["replay"]
    assert rp["truncated_files"] == 1 and rp["corrupt_files"] == 0
    assert rp["damage"][0]["after_line"] == n and rp["damage"][0]["file"] == str(path)


def corrupt_at(blob: bytes, at: int, seed: int = 1) -> bytes:
    rng = random.Random(seed)
    damaged = bytearray(blob)
    damaged[at : at + 100] = bytes(rng.randrange(256) for _ in range(100))
    return bytes(damaged)


def test_corrupt_gzip_keeps_the_lines_before_the_damage(tmp_path: Path) -> None:
    """Corruption at byte 5000 used to lose every line (the whole first read failed) and the
    replay then said only "no market-data streams found"."""
    blob = BTC.read_bytes()
    path = tmp_path / "bad.gz"
    path.write_bytes(corrupt_at(blob, 5000))
    n = lines_before_byte(blob, 5000)
    assert n > 100
    stats = RecordingStats()
    got = list(iter_recording(path, stats))
    assert got[:n] == good(fixture_lines()[:n])
    assert stats.corrupt == 1
    (dmg,) = stats.damage
    assert dmg.problem == "corrupt" and dmg.at_byte >= 5000 and dmg.after_line >= n
    summary = replay([path], tmp_path / "out")
    rp = summary["replay"]
    assert rp["corrupt_files"] == 1 and rp["records"] >= n
    assert summary["symbols"]["BTC/USDT"]["events"] > 0


def test_checksum_failure_is_reported_as_corrupt(tmp_path: Path) -> None:
    blob = bytearray(BTC.read_bytes())
    blob[-6] ^= 0xFF  # inside the gzip trailer's CRC-32: every line decompresses fine
    path = tmp_path / "crc.gz"
    path.write_bytes(bytes(blob))
    stats = RecordingStats()
    assert list(iter_recording(path, stats)) == good(fixture_lines())
    assert stats.corrupt == 1 and "incorrect data check" in stats.damage[0].detail


def test_multi_member_gzip_and_padding_read_in_full(tmp_path: Path) -> None:
    lines = fixture_lines()
    body = [b"\n".join(lines[:100]) + b"\n", b"\n".join(lines[100:]) + b"\n"]
    path = tmp_path / "two.gz"
    path.write_bytes(gzip.compress(body[0]) + gzip.compress(body[1]) + b"\0" * 512)
    stats = RecordingStats()
    assert list(iter_recording(path, stats)) == good(lines)
    assert stats.damage == []


@pytest.mark.slow
def test_cli_says_the_file_was_truncated(tmp_path: Path) -> None:
    blob = BTC.read_bytes()
    path = tmp_path / "cut.gz"
    path.write_bytes(blob[: len(blob) // 2])
    proc = subprocess.run(
        [sys.executable, "-m", "mm_trio.cli", "replay", str(path), "--no-progress"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "truncated files 1, corrupt files 0" in proc.stdout
    assert f"warning: {path} is truncated at byte {len(blob) // 2}" in proc.stderr
    assert "Traceback" not in proc.stderr


# --------------------------------------------------------------------------- item 4: content


def test_numeric_prices_are_malformed() -> None:
    d = StreamDecoder({"BTCUSDT": "BTC/USDT"}, decode_depth=True)
    bad = [
        b'{"stream":"btcusdt@bookTicker","data":{"u":1,"s":"BTCUSDT","b":60000.1,'
        b'"B":"1","a":"60000.2","A":"1"}}',
        b'{"stream":"btcusdt@trade","data":{"e":"trade","E":1,"s":"BTCUSDT","t":1,'
        b'"p":"60000.1","q":0.5,"T":1,"m":true}}',
        b'{"stream":"btcusdt@depth@100ms","data":{"e":"depthUpdate","E":1,"s":"BTCUSDT",'
        b'"U":1,"u":2,"b":[[60000.1,"1"]],"a":[]}}',
        b'{"u":1,"s":"BTCUSDT","b":"60000.1","B":1,"a":"60000.2","A":"1"}',  # raw stream
        b'{"stream":"btcusdt@bookTicker","data":{"u":1,"s":"BTCUSDT","b":"-1",'
        b'"B":"1","a":"60000.2","A":"1"}}',  # a sign: not a Binance decimal string either
        b'{"stream":"btcusdt@bookTicker","data":{"u":1,"s":"BTCUSDT","b":"6_0",'
        b'"B":"1","a":"60000.2","A":"1"}}',
    ]
    for raw in bad:
        assert d.decode(raw, 1) == [], raw
    assert d.stats.malformed == len(bad) and d.stats.book_ticker == 0
    ok = (
        b'{"stream":"btcusdt@bookTicker","data":{"u":1,"s":"BTCUSDT","b":"60000.10000000",'
        b'"B":"1.5","a":"60000.2","A":"0"}}'
    )
    (quote,) = d.decode(ok, 1)
    assert str(quote.bid) == "60000.10000000" and quote.ask_qty == 0


@pytest.mark.slow
def test_numeric_price_line_is_counted_in_the_replay(tmp_path: Path) -> None:
    lines = fixture_lines()
    idx = next(i for i in range(1500, 2000) if b"@bookTicker" in lines[i])
    bad = list(lines)
    bad[idx] = lines[idx].replace(b'"b":"', b'"b":', 1).replace(b'","B"', b',"B"', 1)
    assert bad[idx] != lines[idx]
    write_raw_lines(tmp_path / "bad.gz", bad)
    got = replay([tmp_path / "bad.gz"], tmp_path / "bad")["replay"]
    ref = replay([BTC], tmp_path / "ref")["replay"]
    assert got["malformed_lines"] == ref["malformed_lines"] + 1


@pytest.mark.slow
def test_a_line_of_an_unknown_symbol_is_counted_and_skipped(tmp_path: Path) -> None:
    """One line whose symbol replay cannot name used to abort the whole replay."""
    lines = fixture_lines()
    quote = next(x for x in lines[1500:] if b"@bookTicker" in x)
    stranger = quote.replace(b"btcusdt@", b"qqqqqq@").replace(b'"BTCUSDT"', b'"QQQQQQ"')
    # stamped like its neighbour: the line must not move the file's time (that is tested
    # apart), only name a symbol nobody trades
    stranger = lines[1499].split(b" ", 1)[0] + b" " + stranger.split(b" ", 1)[1]
    write_raw_lines(tmp_path / "bad.gz", [*lines[:1500], stranger, *lines[1500:]])
    got = replay([tmp_path / "bad.gz", ETH], tmp_path / "bad")
    replay([BTC, ETH], tmp_path / "ref")
    same_outputs(tmp_path / "bad", tmp_path / "ref")
    assert got["replay"]["unknown_symbols"] == 1
    assert got["replay"]["unknown_symbol_names"] == {"QQQQQQ": 1}


def test_only_unknown_symbols_is_refused_naming_them(tmp_path: Path) -> None:
    lines = [
        x.replace(b"btcusdt@", b"qqqqqq@").replace(b'"BTCUSDT"', b'"QQQQQQ"')
        for x in fixture_lines()[:50]
    ]
    write_raw_lines(tmp_path / "q.gz", lines)
    with pytest.raises(ReplayError, match=r"QQQQQQ.*\[replay\] symbols"):
        replay([tmp_path / "q.gz"], tmp_path / "out")


@pytest.mark.slow
def test_clean_fixture_summary_has_every_count(tmp_path: Path) -> None:
    rp = replay([BTC, ETH], tmp_path / "out")["replay"]
    assert (rp["malformed_lines"], rp["unknown_streams"]) == (2, 1)  # the fixture's own
    assert rp["unknown_symbols"] == 0 and rp["unknown_symbol_names"] == {}
    assert rp["time_jumps_skipped"] == rp["out_of_order_skipped"] == 0
    assert rp["late_lines_kept"] == 0
    assert rp["truncated_files"] == rp["corrupt_files"] == 0 and rp["damage"] == []
    assert any("btcusdt-synth.gz:378: malformed line" in p for p in rp["problems"])


# --------------------------------------------------------------------------- out-of-range numbers

HUGE_TRADE = (
    b'{"stream":"btcusdt@trade","data":{"e":"trade","E":1,"s":"BTCUSDT","t":1,'
    b'"p":"1e999999999","q":"0.001","T":1,"m":true}}'
)


def test_decoder_counts_out_of_range_decimal_as_malformed() -> None:
    """A decimal string too large for ordinary arithmetic is a malformed line, not an event."""
    d = StreamDecoder({"BTCUSDT": "BTC/USDT"})
    quote = (
        b'{"stream":"btcusdt@bookTicker","data":{"u":1,"s":"BTCUSDT",'
        b'"b":"1e999999999","B":"1","a":"2","A":"1"}}'
    )
    events = d.decode(quote, 5) + d.decode(HUGE_TRADE, 6)
    # every event the decoder lets through must be usable in ordinary arithmetic
    for ev in events:
        _ = ev.mid if hasattr(ev, "mid") else ev.price * ev.qty
    assert events == []
    assert d.stats.malformed == 2


@pytest.mark.slow
def test_replay_survives_out_of_range_number(tmp_path: Path) -> None:
    """A line with an out-of-range price is counted as malformed; the replay goes on."""
    lines = [b"%d %s" % rec for rec in itertools.islice(iter_recording(BTC), 2000)]
    t0 = int(lines[0].split(b" ", 1)[0])
    bad = tmp_path / "bad.gz"
    write_raw_lines(bad, [lines[0], b"%d %s" % (t0 + 1, HUGE_TRADE), *lines[1:]])
    summary = run_replay([bad], load_config(None), progress=None)
    assert summary["replay"]["malformed_lines"] >= 1
