"""Binance payload decoding: every message kind, counters, encoders, fuzzing, real data."""

from __future__ import annotations

import gzip
from collections import Counter
from decimal import Decimal
from pathlib import Path

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mm_trio.domain.model import BalanceUpdate, OrderUpdate, Quote, Trade
from mm_trio.exchange.binance.decode import DepthUpdate, StreamDecoder
from mm_trio.exchange.binance.encode import (
    encode_account_position,
    encode_book_ticker,
    encode_depth_update,
    encode_execution_report,
    encode_trade,
)

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures"
SHARED_DATA = ROOT.parent / "shared" / "data"
MS = 1_000_000
SYMBOLS = {"BTCUSDT": "BTC/USDT", "ETHUSDT": "ETH/USDT", "ETHBTC": "ETH/BTC"}
D = Decimal

SPOT_BOOK_TICKER = (
    b'{"stream":"btcusdt@bookTicker","data":{"u":50093239212,"s":"BTCUSDT",'
    b'"b":"61837.63000000","B":"3.78826000","a":"61837.64000000","A":"1.54698000"}}'
)
FUT_BOOK_TICKER = (
    b'{"stream":"btcusdt@bookTicker","data":{"e":"bookTicker","u":400900217,'
    b'"E":1568014460893,"T":1568014460891,"s":"BTCUSDT","b":"25.35190000",'
    b'"B":"31.21000000","a":"25.36520000","A":"40.66000000"}}'
)
SPOT_TRADE = (
    b'{"stream":"btcusdt@trade","data":{"e":"trade","E":1723161255343,"s":"BTCUSDT",'
    b'"t":3735683259,"p":"61837.63000000","q":"0.02000000","T":1723161255342,'
    b'"m":true,"M":true}}'
)
FUT_AGG_TRADE = (
    b'{"stream":"btcusdt@aggTrade","data":{"e":"aggTrade","E":123456789,"s":"BTCUSDT",'
    b'"a":5933014,"p":"0.001","q":"100","nq":"100","f":100,"l":105,"T":123456785,"m":false}}'
)
SPOT_DEPTH = (
    b'{"stream":"btcusdt@depth@100ms","data":{"e":"depthUpdate","E":1723161255308,'
    b'"s":"BTCUSDT","U":50093239203,"u":50093239207,"b":[["55653.87000000","0.00000000"]],'
    b'"a":[["61838.04000000","0.32332000"],["61844.30000000","0.40163000"]]}}'
)
FUT_DEPTH = (
    b'{"stream":"btcusdt@depth@500ms","data":{"e":"depthUpdate","E":123456789,'
    b'"T":123456788,"s":"BTCUSDT","U":157,"u":160,"pu":149,'
    b'"b":[["0.0024","10"]],"a":[["0.0026","100"]]}}'
)


def execution_report(**over: object) -> dict[str, object]:
    report: dict[str, object] = {
        "e": "executionReport",
        "E": 1499405658658,
        "s": "ETHBTC",
        "c": "mm1_ETHBTC_B3_7",
        "S": "BUY",
        "o": "LIMIT_MAKER",
        "f": "GTC",
        "q": "1.00000000",
        "p": "0.10264410",
        "P": "0.00000000",
        "F": "0.00000000",
        "g": -1,
        "C": "",
        "x": "NEW",
        "X": "NEW",
        "r": "NONE",
        "i": 4293153,
        "l": "0.00000000",
        "z": "0.00000000",
        "L": "0.00000000",
        "n": "0",
        "N": None,
        "T": 1499405658657,
        "t": -1,
        "v": 3,
        "I": 8641984,
        "w": True,
        "m": False,
        "M": False,
        "O": 1499405658657,
        "Z": "0.00000000",
        "Y": "0.00000000",
        "Q": "0.00000000",
        "W": 1499405658657,
        "V": "NONE",
    }
    report.update(over)
    return report


ACCOUNT_POSITION = {
    "e": "outboundAccountPosition",
    "E": 1564034571105,
    "u": 1564034571073,
    "B": [
        {"a": "ETH", "f": "10000.000000", "l": "0.000000"},
        {"a": "BTC", "f": "0.50000000", "l": "0.10000000"},
    ],
}


def dec() -> StreamDecoder:
    return StreamDecoder(SYMBOLS)


# --------------------------------------------------------------------------- market data


def test_spot_book_ticker_uses_receive_time() -> None:
    d = dec()
    (q,) = d.decode(SPOT_BOOK_TICKER, 1723161254087891268)
    assert q == Quote(
        symbol="BTC/USDT",
        bid=D("61837.63"),
        bid_qty=D("3.78826"),
        ask=D("61837.64"),
        ask_qty=D("1.54698"),
        ts=1723161254087891268,
    )
    assert isinstance(q.bid, Decimal)
    assert str(q.bid) == "61837.63000000"  # exact string, no float on the way
    assert d.stats.book_ticker == 1 and d.stats.decoded == 1


def test_futures_book_ticker_uses_event_time() -> None:
    (q,) = dec().decode(FUT_BOOK_TICKER, 5)
    assert isinstance(q, Quote)
    assert q.ts == 1568014460893 * MS
    assert q.ask == D("25.3652")


def test_clock_recv_overrides_event_time() -> None:
    d = StreamDecoder(SYMBOLS, clock="recv")
    (q,) = d.decode(FUT_BOOK_TICKER, 42)
    (t,) = d.decode(SPOT_TRADE, 43)
    assert (q.ts, t.ts) == (42, 43)
    with pytest.raises(ValueError):
        StreamDecoder(SYMBOLS, clock="wall")  # type: ignore[arg-type]


def test_raw_book_ticker_without_envelope() -> None:
    raw = msgspec.json.decode(SPOT_BOOK_TICKER)["data"]
    (q,) = dec().decode(msgspec.json.encode(raw), 7)
    assert isinstance(q, Quote) and q.ts == 7 and q.symbol == "BTC/USDT"


def test_trade_and_str_input() -> None:
    d = dec()
    (t,) = d.decode(SPOT_TRADE.decode(), 1)
    assert t == Trade(
        symbol="BTC/USDT",
        price=D("61837.63"),
        qty=D("0.02"),
        buyer_maker=True,
        trade_id=3735683259,
        ts=1723161255343 * MS,
    )
    assert d.stats.trade == 1


def test_futures_agg_trade() -> None:
    d = dec()
    (t,) = d.decode(FUT_AGG_TRADE, 1)
    assert isinstance(t, Trade)
    assert t.trade_id == 5933014 and t.buyer_maker is False and t.qty == D(100)
    assert t.ts == 123456789 * MS
    assert d.stats.agg_trade == 1
    raw = msgspec.json.encode(msgspec.json.decode(FUT_AGG_TRADE)["data"])
    (t2,) = d.decode(raw, 1)  # raw (non-combined) payload dispatched by "e"
    assert t2 == t


def test_depth_skipped_by_default_but_counted() -> None:
    d = dec()
    assert d.decode(SPOT_DEPTH, 1) == []
    assert d.stats.depth == 1 and d.stats.depth_skipped == 1 and d.stats.malformed == 0
    assert d.decode(SPOT_DEPTH[:-5], 1) == []  # truncated depth is still caught
    assert d.stats.malformed == 1


def test_depth_decoded_spot_and_futures() -> None:
    d = StreamDecoder(SYMBOLS, decode_depth=True)
    (s,) = d.decode(SPOT_DEPTH, 1)
    assert s == DepthUpdate(
        symbol="BTC/USDT",
        first_id=50093239203,
        last_id=50093239207,
        bids=((D("55653.87"), D(0)),),
        asks=((D("61838.04"), D("0.32332")), (D("61844.30"), D("0.40163"))),
        ts=1723161255308 * MS,
    )
    (f,) = d.decode(FUT_DEPTH, 1)
    assert isinstance(f, DepthUpdate)
    assert (f.first_id, f.last_id, f.prev_last_id) == (157, 160, 149)
    assert f.bids == ((D("0.0024"), D(10)),)
    assert d.stats.depth == 2 and d.stats.depth_skipped == 0


def test_all_market_book_ticker_stream_name() -> None:
    msg = SPOT_BOOK_TICKER.replace(b"btcusdt@bookTicker", b"!bookTicker")
    (q,) = dec().decode(msg, 1)
    assert isinstance(q, Quote)


def test_unrouted_symbol_counted_and_add_symbol() -> None:
    d = StreamDecoder({})
    assert d.decode(SPOT_BOOK_TICKER, 1) == []
    assert d.stats.unrouted == 1 and d.stats.malformed == 0
    d.add_symbol("BTCUSDT", "BTC/USDT")
    assert len(d.decode(SPOT_BOOK_TICKER, 1)) == 1
    d.remove_symbol("BTCUSDT")
    assert d.decode(SPOT_TRADE, 1) == []
    assert d.stats.unrouted == 2


# --------------------------------------------------------------------------- user data


def test_execution_report_new() -> None:
    d = dec()
    (u,) = d.decode(msgspec.json.encode(execution_report()), 9)
    assert u == OrderUpdate(
        symbol="ETH/BTC",
        client_id="mm1_ETHBTC_B3_7",
        side="BUY",
        price=D("0.1026441"),
        qty=D(1),
        status="NEW",
        trade_id=None,  # t = -1
        order_id="4293153",
        maker=False,
        ts=1499405658658 * MS,
    )
    assert u.reason == "" and u.fee_asset == ""
    assert d.stats.execution_report == 1


def test_execution_report_fill() -> None:
    msg = execution_report(
        x="TRADE",
        X="PARTIALLY_FILLED",
        l="0.40000000",
        z="0.40000000",
        L="0.10264400",
        n="0.00004000",
        N="BNB",
        t=12345,
        m=True,
    )
    (u,) = dec().decode(msgspec.json.encode(msg))
    assert u.status == "PARTIALLY_FILLED"
    assert (u.last_qty, u.cum_qty, u.last_price) == (D("0.4"), D("0.4"), D("0.102644"))
    assert (u.fee, u.fee_asset, u.trade_id, u.maker) == (D("0.00004"), "BNB", 12345, True)


def test_execution_report_canceled_uses_original_client_id() -> None:
    msg = execution_report(x="CANCELED", X="CANCELED", c="cancelReq123", C="mm1_ETHBTC_B3_7")
    (u,) = dec().decode(msgspec.json.encode(msg))
    assert u.status == "CANCELED" and u.client_id == "mm1_ETHBTC_B3_7"
    # a non-canceled report keeps "c" even if "C" is set
    (n,) = dec().decode(msgspec.json.encode(execution_report(C="other")))
    assert n.client_id == "mm1_ETHBTC_B3_7"


def test_execution_report_reject_reason_and_expired_in_match() -> None:
    (r,) = dec().decode(msgspec.json.encode(execution_report(X="REJECTED", r="INSUFFICIENT")))
    assert (r.status, r.reason) == ("REJECTED", "INSUFFICIENT")
    (e,) = dec().decode(msgspec.json.encode(execution_report(X="EXPIRED_IN_MATCH")))
    assert e.status == "EXPIRED"


def test_execution_report_bad_side_or_status_is_malformed() -> None:
    d = dec()
    assert d.decode(msgspec.json.encode(execution_report(S="HOLD"))) == []
    assert d.decode(msgspec.json.encode(execution_report(X="WHATEVER"))) == []
    assert d.decode(msgspec.json.encode(execution_report(p="NaN"))) == []
    assert d.decode(msgspec.json.encode(execution_report(q="-1"))) == []
    assert d.stats.malformed == 4 and d.stats.execution_report == 0


def test_account_position() -> None:
    d = dec()
    out = d.decode(msgspec.json.encode(ACCOUNT_POSITION))
    assert out == [
        BalanceUpdate(asset="ETH", free=D(10000), locked=D(0), ts=1564034571105 * MS),
        BalanceUpdate(asset="BTC", free=D("0.5"), locked=D("0.1"), ts=1564034571105 * MS),
    ]
    assert d.stats.account_position == 1 and d.stats.events == 2


@pytest.mark.parametrize("payload", [execution_report(), ACCOUNT_POSITION])
def test_ws_api_and_listen_key_wrapping(payload: dict[str, object]) -> None:
    plain = dec().decode(msgspec.json.encode(payload))
    wrapped = dec().decode(msgspec.json.encode({"subscriptionId": 0, "event": payload}))
    combined = dec().decode(msgspec.json.encode({"stream": "pqia91ma19a5s61", "data": payload}))
    assert plain and plain == wrapped == combined


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"   ",
        b"null",
        b"[1,2,3]",
        b"{",
        b'{"stream":"btcusdt@bookTicker","data":{"s":"BTCUSDT"}}',
        b'{"stream":"btcusdt@bookTicker","data":{"u":1,"s":"BTCUSDT","b":"x","B":"1",'
        b'"a":"1","A":"1"}}',
        b'{"stream":"btcusdt@bookTicker","data":{"u":1,"s":"BTCUSDT","b":"Infinity",'
        b'"B":"1","a":"1","A":"1"}}',
        b'{"stream":"btcusdt@trade","data":{"e":"trade","s":"BTCUSDT","t":1,"p":"1",'
        b'"q":"1","m":"yes"}}',
        b'{"stream":"btcusdt@trade","data":[]}',
        b'{"stream":"btcusdt@trade"}',
        b"\xff\xfe\x00garbage",
        b'{"stream":"\xff@trade","data":{}}',
        b'{"e":"executionReport"}',
    ],
)
def test_malformed_is_counted(raw: bytes) -> None:
    d = dec()
    assert d.decode(raw, 1) == []
    assert d.stats.malformed + d.stats.unknown_stream == 1
    assert d.stats.last_error


def test_unknown_streams_and_control_counted() -> None:
    d = dec()
    kline = b'{"stream":"btcusdt@kline_1m","data":{"e":"kline","E":1,"s":"BTCUSDT","k":{}}}'
    partial = b'{"stream":"btcusdt@depth5@100ms","data":{"lastUpdateId":1,"bids":[],"asks":[]}}'
    assert d.decode(kline) == [] and d.decode(partial) == []
    assert d.decode(b'{"e":"24hrTicker","s":"BTCUSDT"}') == []
    assert d.decode(b'{"subscriptionId":1,"event":{"e":"listenKeyExpired"}}') == []
    assert d.decode(b'{"foo":1}') == []
    assert d.decode(b'{"result":null,"id":1}') == []
    assert d.decode(b'{"id":"x","status":200,"result":{"subscriptionId":0}}') == []
    assert d.decode(b'{"lastUpdateId":5,"bids":[],"asks":[]}') == []
    s = d.stats
    assert (s.unknown_stream, s.control, s.snapshot, s.malformed) == (5, 2, 1, 0)
    assert s.unknown_names["kline"] == 1 and s.unknown_names["24hrTicker"] == 1


def test_unknown_names_are_bounded() -> None:
    d = dec()
    for i in range(500):
        d.decode(b'{"e":"x%d"}' % i)
    assert d.stats.unknown_stream == 500
    assert len(d.stats.unknown_names) <= 64


# --------------------------------------------------------------------------- encoders


def test_encode_round_trips() -> None:
    d = StreamDecoder(SYMBOLS, decode_depth=True)
    q = Quote(symbol="BTC/USDT", bid=D("1.5"), bid_qty=D("2"), ask=D("1.6"), ask_qty=D("3"), ts=77)
    raw = encode_book_ticker(q, update_id=5)
    assert raw.startswith(b'{"stream":"btcusdt@bookTicker","data":{"u":5,"s":"BTCUSDT"')
    assert b'"b":"1.50000000"' in raw
    assert d.decode(raw, 77) == [q]
    assert d.decode(encode_book_ticker(q, combined=False), 77) == [q]

    t = Trade(
        symbol="ETH/USDT", price=D("2600.01"), qty=D("0.0001"), buyer_maker=False,
        trade_id=9, ts=1_700_000_000_123 * MS,
    )  # fmt: skip
    assert d.decode(encode_trade(t), 1) == [t]
    assert d.decode(encode_trade(t, combined=False), 1) == [t]

    dep = DepthUpdate(
        symbol="ETH/BTC", first_id=3, last_id=9, bids=((D("0.04330"), D("1E-8")),),
        asks=(), ts=1_700_000_000_000 * MS,
    )  # fmt: skip
    raw = encode_depth_update(dep)
    assert b'"0.00000001"' in raw and b"ethbtc@depth@100ms" in raw
    assert d.decode(raw, 1) == [dep]

    for status in ("NEW", "PARTIALLY_FILLED", "FILLED", "CANCELED", "REJECTED", "EXPIRED"):
        u = OrderUpdate(
            symbol="ETH/BTC", client_id="mm1_x", side="SELL", price=D("0.0433"),
            qty=D("1.2345"), status=status, cum_qty=D("0.5"), last_qty=D("0.5"),
            last_price=D("0.0433"), fee=D("0.00001"), fee_asset="BTC", trade_id=17,
            order_id="123", reason="" if status != "REJECTED" else "BAD", maker=True,
            ts=1_700_000_000_001 * MS,
        )  # fmt: skip
        assert d.decode(encode_execution_report(u), 1) == [u]
        raw = encode_execution_report(u, cancel_client_id="cxl1", ws_api_subscription=3)
        assert d.decode(raw, 1) == [u]
        if status == "CANCELED":
            assert b'"c":"cxl1"' in raw and b'"C":"mm1_x"' in raw
    no_fill = OrderUpdate(
        symbol="BTC/USDT", client_id="a", side="BUY", price=D(1), qty=D(1), status="NEW",
        order_id="abc",
    )  # fmt: skip
    assert d.decode(encode_execution_report(no_fill), 1) == [no_fill]
    assert b'"t":-1' in encode_execution_report(no_fill)

    bals = [
        BalanceUpdate(asset="BTC", free=D("0.1"), locked=D(0), ts=1_700_000_000_002 * MS),
        BalanceUpdate(asset="USDT", free=D("1000"), locked=D("5.5"), ts=1_700_000_000_002 * MS),
    ]
    assert d.decode(encode_account_position(bals), 1) == bals
    assert d.decode(encode_account_position(bals, ws_api_subscription=0), 1) == bals
    assert d.stats.malformed == 0


# --------------------------------------------------------------------------- fuzz


def _sample_lines() -> list[bytes]:
    lines = [
        SPOT_BOOK_TICKER,
        FUT_BOOK_TICKER,
        SPOT_TRADE,
        FUT_AGG_TRADE,
        SPOT_DEPTH,
        FUT_DEPTH,
        msgspec.json.encode(execution_report()),
        msgspec.json.encode({"subscriptionId": 0, "event": ACCOUNT_POSITION}),
    ]
    sources = sorted(FIXTURES.glob("*.gz"))
    if SHARED_DATA.is_dir():
        sources += sorted(SHARED_DATA.glob("*.gz"))
    for path in sources:
        with gzip.open(path, "rb") as fh:
            for i, line in enumerate(fh):
                if i >= 40:
                    break
                lines.append(line.rstrip(b"\n").partition(b" ")[2])
    return lines


SAMPLES = _sample_lines()


@settings(max_examples=300)
@given(st.binary(max_size=300))
def test_fuzz_random_bytes_never_raise(raw: bytes) -> None:
    d = StreamDecoder(SYMBOLS, decode_depth=True)
    out = d.decode(raw, 1)
    assert isinstance(out, list)
    assert d.stats.messages == 1


@settings(max_examples=500)
@given(
    st.sampled_from(SAMPLES),
    st.lists(
        st.tuples(st.integers(0, 10_000), st.integers(0, 6), st.binary(min_size=0, max_size=4)),
        min_size=1,
        max_size=4,
    ),
    st.booleans(),
)
def test_fuzz_mutated_lines_never_raise(
    base: bytes, edits: list[tuple[int, int, bytes]], depth: bool
) -> None:
    raw = bytearray(base)
    for pos, cut, insert in edits:
        pos %= len(raw) + 1
        raw[pos : pos + cut] = insert
    d = StreamDecoder(SYMBOLS, decode_depth=depth)
    out = d.decode(bytes(raw), 1)
    assert all(
        isinstance(e, Quote | Trade | OrderUpdate | BalanceUpdate | DepthUpdate) for e in out
    )
    for e in out:  # whatever got through carries sane numbers
        for name in ("bid", "ask", "price", "qty", "free", "locked"):
            v = getattr(e, name, None)
            if v is not None:
                assert v.is_finite() and not v.is_signed()


@settings(max_examples=200)
@given(
    st.sampled_from(SAMPLES),
    st.text(max_size=20),
    st.sampled_from(["s", "b", "a", "p", "q", "e", "stream", "data", "X", "S", "B", "t"]),
)
def test_fuzz_field_values_never_raise(base: bytes, value: str, key: str) -> None:
    try:
        obj = msgspec.json.decode(base)
    except msgspec.DecodeError:
        return
    target = obj.get("data", obj.get("event", obj)) if isinstance(obj, dict) else obj
    if isinstance(target, dict):
        target[key] = value
    StreamDecoder(SYMBOLS).decode(msgspec.json.encode(obj), 1)


# --------------------------------------------------------------------------- real data


README_COUNTS = {
    "binance-spot-btcusdt-20240808.gz": {
        "btcusdt@bookTicker": 28_040,
        "btcusdt@trade": 9_757,
        "btcusdt@depth@100ms": 3_451,
    },
    "binance-spot-ethusdt-20240808.gz": None,
}


@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="no ../shared/data (fresh checkout)")
@pytest.mark.parametrize("name", sorted(README_COUNTS))
def test_real_recordings_decode_cleanly(name: str) -> None:
    path = SHARED_DATA / name
    if not path.exists():
        pytest.skip(f"{name} absent")
    d = StreamDecoder({"BTCUSDT": "BTC/USDT", "ETHUSDT": "ETH/USDT"}, decode_depth=True)
    streams: Counter[str] = Counter()
    kinds: Counter[str] = Counter()
    envelope = msgspec.json.Decoder(dict[str, msgspec.Raw])
    with gzip.open(path, "rb") as fh:
        for line in fh:
            ts_raw, _, payload = line.rstrip(b"\n").partition(b" ")
            stream = envelope.decode(payload).get("stream")
            if stream is not None:
                streams[msgspec.json.decode(stream)] += 1
            for ev in d.decode(payload, int(ts_raw)):
                kinds[type(ev).__name__] += 1
    s = d.stats
    assert s.malformed == 0 and s.unknown_stream == 0 and s.unrouted == 0
    assert s.snapshot <= 1  # hftbacktest records one REST depth snapshot up front
    expected = README_COUNTS[name]
    if expected is not None:
        assert dict(streams) == expected
    sym = name.split("-")[2]
    assert kinds["Quote"] == s.book_ticker == streams[f"{sym}@bookTicker"]
    assert kinds["Trade"] == s.trade == streams[f"{sym}@trade"]
    assert kinds["DepthUpdate"] == s.depth == streams[f"{sym}@depth@100ms"]
    assert s.messages == sum(streams.values()) + s.snapshot


# --------------------------------------------------------------------------- markers
# (at the end, so the lines above are left as they are)
# about a second each or more: left out of the fast unit pass, pytest -m "not slow"
for _test in (test_fuzz_mutated_lines_never_raise, test_real_recordings_decode_cleanly):
    pytest.mark.slow(_test)
