"""``StreamDecoder`` against a plain reference decoding (issue 12's faster decode): the
market-data events it makes (Quote, Trade; fields and types) are what ``json`` and
``Decimal`` make of the same lines, on the real recordings, on hand-made lines and on
generated ones; its per-name dispatch cache follows ``decode_depth`` and stays bounded."""

from __future__ import annotations

import gzip
import json
import re
from decimal import Decimal
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mm_trio.domain.model import Quote, Trade
from mm_trio.exchange.binance import decode as decode_module
from mm_trio.exchange.binance.decode import MAX_EXPONENT, DepthUpdate, StreamDecoder
from tests.conftest import SHARED_DATA

SYMBOLS = {"BTCUSDT": "BTC/USDT", "ETHUSDT": "ETH/USDT"}
_NUMBER = re.compile(r"[0-9]*\.?[0-9]*")
MS = 1_000_000


def number(text: Any) -> Decimal | None:
    """A Binance decimal string as the spec allows it (digits, one point), else None."""
    if not isinstance(text, str) or not _NUMBER.fullmatch(text) or not re.search("[0-9]", text):
        return None
    value = Decimal(text)
    if value and abs(value.adjusted()) > MAX_EXPONENT:
        return None
    return value


def reference(raw: bytes, recv_ts: int, clock: str) -> list[Any] | None:
    """What a combined bookTicker / trade / aggTrade line decodes to; ``[]`` for one that
    carries no event; None when the line is none of those three (not compared here)."""
    try:
        msg = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(msg, dict) or not isinstance(msg.get("stream"), str):
        return None
    kind = msg["stream"].split("@")[1] if "@" in msg["stream"] else ""
    data = msg.get("data")
    if kind not in ("bookTicker", "trade", "aggTrade") or not isinstance(data, dict):
        return None
    venue_ms = data.get("E") if data.get("E") is not None else data.get("T")
    ts = recv_ts if clock == "recv" or venue_ms is None else venue_ms * MS
    if kind == "bookTicker":
        values = [number(data.get(k)) for k in ("b", "B", "a", "A")]
        if None in values:
            return []  # malformed: no event
        sym = SYMBOLS.get(data["s"])
        if sym is None:
            return []
        bid, bid_qty, ask, ask_qty = values
        return [Quote(symbol=sym, bid=bid, bid_qty=bid_qty, ask=ask, ask_qty=ask_qty, ts=ts)]
    price, qty = number(data.get("p")), number(data.get("q"))
    if price is None or qty is None:
        return []
    sym = SYMBOLS.get(data["s"])
    if sym is None:
        return []
    trade_id = data["t"] if kind == "trade" else data["a"]
    return [
        Trade(symbol=sym, price=price, qty=qty, buyer_maker=data["m"], trade_id=trade_id, ts=ts)
    ]


def exact(events: list[Any]) -> bytes:
    """Events as bytes: equal only with equal types, fields and Decimal digits."""
    return msgspec.json.encode([(type(e).__name__, e) for e in events])


@pytest.mark.slow
@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="no ../shared/data (fresh checkout)")
@pytest.mark.parametrize("clock", ["recv", "venue"])
def test_agrees_with_the_reference_on_every_real_line(clock: str) -> None:
    paths = sorted(SHARED_DATA.glob("*.gz"))
    if not paths:
        pytest.skip("real recordings absent")
    decoder = StreamDecoder(SYMBOLS, clock=clock)  # type: ignore[arg-type]
    compared = skipped = 0
    for path in paths:
        for line in gzip.decompress(path.read_bytes()).splitlines():
            ts_raw, _, raw = line.partition(b" ")
            ts = int(ts_raw)
            got = decoder.decode(raw, ts)
            want = reference(raw, ts, clock)
            if want is None:  # depth diffs and REST snapshots: validated, counted, skipped
                assert got == []
                skipped += 1
                continue
            assert exact(got) == exact(want), raw
            compared += 1
    stats = decoder.stats
    assert stats.malformed == 0 and stats.depth_skipped + stats.snapshot == skipped
    assert stats.depth_skipped > 0
    assert compared == stats.book_ticker + stats.trade > 60_000


BOOK = '{{"stream":"{stream}","data":{{"u":1,"s":"{s}","b":{b},"B":{B},"a":{a},"A":{A}{extra}}}}}'
TRADE = (
    '{{"stream":"{stream}","data":{{"e":"trade","E":{E},"s":"{s}","t":{t},"p":{p},"q":{q},'
    '"T":5,"m":{m}}}}}'
)
HAND_MADE = [
    # (line, events expected as (kind, fields) or "malformed")
    (BOOK.format(stream="btcusdt@bookTicker", s="BTCUSDT", b='"1.50"', B='"2"', a='"1.6"',
                 A='"0.00000000"', extra=""), "event"),
    (BOOK.format(stream="btcusdt@bookTicker", s="BTCUSDT", b='".5"', B='"5."', a='"1"',
                 A='"1"', extra=',"E":7,"T":6'), "event"),
    (BOOK.format(stream="ethusdt@bookTicker", s="ETHUSDT", b='"1"', B='"1"', a='"1"',
                 A='"1"', extra=""), "event"),
    (BOOK.format(stream="xrpusdt@bookTicker", s="XRPUSDT", b='"1"', B='"1"', a='"1"',
                 A='"1"', extra=""), "unrouted"),
    *[
        (BOOK.format(stream="btcusdt@bookTicker", s="BTCUSDT", b=bad, B='"1"', a='"1"',
                     A='"1"', extra=""), "malformed")
        for bad in ['""', '"."', '"1.2.3"', '"1e5"', '"-1"', '"+1"', '" 1"', '"1_0"', '"NaN"',
                    '"\\u0661"', '"1' + "0" * 40 + '"', "1.5", "null"]
    ],
    (TRADE.format(stream="btcusdt@trade", s="BTCUSDT", E=9, t=3, p='"2.5"', q='"0.1"',
                  m="true"), "event"),
    (TRADE.format(stream="btcusdt@trade", s="BTCUSDT", E=9, t=3, p='"2,5"', q='"0.1"',
                  m="true"), "malformed"),
    (TRADE.format(stream="btcusdt@trade", s="BTCUSDT", E=9, t='"x"', p='"2"', q='"1"',
                  m="false"), "malformed"),
    ('{"stream":"btcusdt@bookTicker","data":{"s":"BTCUSDT","b":"1"', "malformed"),  # cut
]  # fmt: skip


@pytest.mark.parametrize("clock", ["recv", "venue"])
@pytest.mark.parametrize(("line", "outcome"), HAND_MADE)
def test_agrees_with_the_reference_on_hand_made_lines(clock: str, line: str, outcome: str) -> None:
    decoder = StreamDecoder(SYMBOLS, clock=clock)  # type: ignore[arg-type]
    raw = line.encode()
    got = decoder.decode(raw, 42)
    stats = decoder.stats
    if outcome == "malformed":
        assert got == [] and stats.malformed == 1, stats.last_error
        return
    want = reference(raw, 42, clock)
    assert want is not None and exact(got) == exact(want)
    assert stats.malformed == 0
    assert (stats.unrouted == 1) == (outcome == "unrouted") and bool(got) == (outcome == "event")


number_text = st.one_of(
    st.from_regex(r"\A[0-9]{1,8}(\.[0-9]{0,8})?\Z"),  # what Binance sends
    st.text(alphabet="0123456789.-+eE _ \u0661", max_size=8),  # what it must not
)


@settings(max_examples=200)
@given(
    kind=st.sampled_from(["bookTicker", "trade"]),
    native=st.sampled_from(["BTCUSDT", "ETHUSDT", "XRPUSDT"]),
    numbers=st.lists(number_text, min_size=4, max_size=4),
    venue_ms=st.one_of(st.none(), st.integers(0, 2**40)),
    recv_ts=st.integers(0, 2**62),
    clock=st.sampled_from(["recv", "venue"]),
)
def test_agrees_with_the_reference_on_generated_lines(
    kind: str,
    native: str,
    numbers: list[str],
    venue_ms: int | None,
    recv_ts: int,
    clock: str,
) -> None:
    data: dict[str, Any] = {"s": native}
    if kind == "bookTicker":
        data.update(zip("bBaA", numbers, strict=True), u=1)
    else:
        data.update(e="trade", t=7, p=numbers[0], q=numbers[1], m=True)
    if venue_ms is not None:
        data["E"] = venue_ms
    raw = json.dumps({"stream": f"{native.lower()}@{kind}", "data": data}).encode()
    decoder = StreamDecoder(SYMBOLS, clock=clock)  # type: ignore[arg-type]
    got = decoder.decode(raw, recv_ts)
    want = reference(raw, recv_ts, clock)
    assert want is not None and exact(got) == exact(want)
    used = numbers if kind == "bookTicker" else numbers[:2]
    bad = any(number(n) is None for n in used)
    assert decoder.stats.malformed == int(bad)


def test_the_dispatch_follows_decode_depth_set_later() -> None:
    depth = (
        b'{"stream":"btcusdt@depth@100ms","data":{"e":"depthUpdate","E":1,"s":"BTCUSDT",'
        b'"U":1,"u":2,"b":[["1.5","2"]],"a":[]}}'
    )
    decoder = StreamDecoder(SYMBOLS)
    assert decoder.decode(depth) == []  # the stream name's handler is learnt: skip depth
    decoder.decode_depth = True
    (update,) = decoder.decode(depth)
    assert isinstance(update, DepthUpdate) and update.bids == ((Decimal("1.5"), Decimal(2)),)
    decoder.decode_depth = False
    assert decoder.decode(depth) == []
    assert decoder.stats.depth == 3 and decoder.stats.depth_skipped == 2


def test_many_stream_names_all_decode_and_the_name_cache_stays_bounded() -> None:
    limit = decode_module._MAX_STREAM_NAMES
    names = [f"s{i}usdt" for i in range(limit + 50)]
    decoder = StreamDecoder({n.upper(): f"S{i}/USDT" for i, n in enumerate(names)})
    for i, name in enumerate(names * 2):
        raw = BOOK.format(stream=f"{name}@bookTicker", s=name.upper(), b='"1"', B='"2"',
                          a='"3"', A='"4"', extra="").encode()  # fmt: skip
        (quote,) = decoder.decode(raw, i)
        assert quote.symbol == f"S{i % len(names)}/USDT"
    assert len(decoder._routes) == limit
    assert decoder.stats.book_ticker == 2 * len(names) and decoder.stats.malformed == 0


def test_a_long_stream_name_decodes_but_is_not_remembered() -> None:
    name = "x" * decode_module._MAX_STREAM_NAME_BYTES + "usdt"
    decoder = StreamDecoder({name.upper(): "X/USDT"})
    for i in range(3):
        raw = BOOK.format(stream=f"{name}@bookTicker", s=name.upper(), b='"1"', B='"2"',
                          a='"3"', A='"4"', extra="").encode()  # fmt: skip
        (quote,) = decoder.decode(raw, i)
        assert quote.symbol == "X/USDT"
    assert decoder._routes == {}  # garbage-length names cannot fill the table
