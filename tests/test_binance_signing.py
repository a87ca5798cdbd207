"""Binance request signing (HMAC-SHA256 and Ed25519), Decimal wire formatting and the
exchangeInfo -> SymbolSpec conversion (all sans-I/O)."""

from __future__ import annotations

import base64
from decimal import Decimal
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mm_trio.exchange.binance.signing import (
    MASK,
    Ed25519Signer,
    HmacSigner,
    encode_params,
    signed_query,
    ws_payload,
)
from mm_trio.exchange.binance.specs import (
    balances_from_account,
    fmt_decimal,
    open_order_from_json,
    parse_exchange_info,
)

D = Decimal

# The worked example of Binance's REST API documentation ("SIGNED Endpoint Examples").
DOC_SECRET = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j"
DOC_QUERY = (
    "symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=0.1"
    "&recvWindow=5000&timestamp=1499827319559"
)
DOC_SIGNATURE = "c8db56825ae71d6d79447849e617115f4a920fa2acdcab2b053c4b2838bd6b71"


def test_hmac_known_vector_from_binance_docs() -> None:
    signer = HmacSigner(DOC_SECRET)
    assert signer.sign(DOC_QUERY) == DOC_SIGNATURE
    assert signed_query(DOC_QUERY, signer) == f"{DOC_QUERY}&signature={DOC_SIGNATURE}"


def test_encode_params_keeps_order_and_matches_doc_query() -> None:
    params = {
        "symbol": "LTCBTC",
        "side": "BUY",
        "type": "LIMIT",
        "timeInForce": "GTC",
        "quantity": "1",
        "price": "0.1",
        "recvWindow": 5000,
        "timestamp": 1499827319559,
    }
    assert encode_params(params) == DOC_QUERY


def ed_key(tmp_path: Path, password: bytes | None = None) -> tuple[Path, Ed25519PrivateKey]:
    key = Ed25519PrivateKey.generate()
    enc: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password)
        if password
        else serialization.NoEncryption()
    )
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, enc)
    path = tmp_path / "key.pem"
    path.write_bytes(pem)
    return path, key


def test_ed25519_sign_verify(tmp_path: Path) -> None:
    path, key = ed_key(tmp_path)
    signer = Ed25519Signer.from_file(path)
    sig = signer.sign(DOC_QUERY)
    key.public_key().verify(base64.b64decode(sig), DOC_QUERY.encode())  # raises if invalid
    # the query sent carries the base64 signature percent-encoded
    q = signed_query(DOC_QUERY, signer)
    tail = q.rsplit("&signature=", 1)[1]
    assert "+" not in tail and "/" not in tail and "=" not in tail
    from urllib.parse import unquote

    assert unquote(tail) == sig
    assert b"PUBLIC KEY" in signer.public_key_pem()


def test_ed25519_encrypted_pem(tmp_path: Path) -> None:
    path, key = ed_key(tmp_path, password=b"pw")
    signer = Ed25519Signer.from_file(path, b"pw")
    key.public_key().verify(base64.b64decode(signer.sign("a=1")), b"a=1")
    with pytest.raises(ValueError) as err:
        Ed25519Signer.from_file(path, b"wrong")
    assert "BEGIN" not in str(err.value)


def test_ed25519_bad_inputs(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot read key file"):
        Ed25519Signer.from_file(tmp_path / "missing.pem")
    bad = tmp_path / "bad.pem"
    bad.write_text("-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n")
    with pytest.raises(ValueError) as err:
        Ed25519Signer.from_file(bad)
    assert "not a key" not in str(err.value)


def test_signers_mask_their_keys(tmp_path: Path) -> None:
    h = HmacSigner(DOC_SECRET)
    assert DOC_SECRET not in repr(h) and DOC_SECRET not in str(h) and MASK in repr(h)
    path, _ = ed_key(tmp_path)
    e = Ed25519Signer.from_file(path)
    assert "BEGIN" not in repr(e) and MASK in repr(e)
    with pytest.raises(ValueError):
        HmacSigner("")


def test_ws_payload_sorted_without_signature() -> None:
    params = {"timestamp": 1649729878532, "apiKey": "KEY", "signature": "x", "recvWindow": 100}
    assert ws_payload(params) == "apiKey=KEY&recvWindow=100&timestamp=1649729878532"


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (D("0.10000000"), "0.1"),
        (D("1E-8"), "0.00000001"),
        (D("1E+1"), "10"),
        (D("12345.6789"), "12345.6789"),
        (D("100"), "100"),
        (D("0E-8"), "0"),
        (D("-0"), "0"),
        (D("2.5E+3"), "2500"),
        (D("0.000000000123"), "0.000000000123"),
    ],
)
def test_fmt_decimal_plain(value: Decimal, text: str) -> None:
    assert fmt_decimal(value) == text
    assert "E" not in fmt_decimal(value).upper()


def test_fmt_decimal_rejects_non_finite_and_float() -> None:
    with pytest.raises(ValueError):
        fmt_decimal(D("NaN"))
    with pytest.raises(ValueError):
        fmt_decimal(D("Infinity"))
    with pytest.raises(TypeError):
        fmt_decimal(0.1)  # type: ignore[arg-type]


EXCHANGE_INFO = {
    "timezone": "UTC",
    "serverTime": 1700000000000,
    "rateLimits": [],
    "symbols": [
        {
            "symbol": "BTCUSDT",
            "status": "TRADING",
            "baseAsset": "BTC",
            "quoteAsset": "USDT",
            "baseAssetPrecision": 8,
            "quotePrecision": 8,
            "filters": [
                {
                    "filterType": "PRICE_FILTER",
                    "minPrice": "0.01000000",
                    "maxPrice": "1000000.00000000",
                    "tickSize": "0.01000000",
                },
                {
                    "filterType": "LOT_SIZE",
                    "minQty": "0.00001000",
                    "maxQty": "9000.00000000",
                    "stepSize": "0.00001000",
                },
                {"filterType": "ICEBERG_PARTS", "limit": 10},
                {
                    "filterType": "MARKET_LOT_SIZE",
                    "minQty": "0.00000000",
                    "maxQty": "100.00000000",
                    "stepSize": "0.00000000",
                },
                {
                    "filterType": "NOTIONAL",
                    "minNotional": "5.00000000",
                    "applyMinToMarket": True,
                    "maxNotional": "9000000.00000000",
                    "applyMaxToMarket": False,
                    "avgPriceMins": 5,
                },
                {"filterType": "MAX_NUM_ORDERS", "maxNumOrders": 200},
            ],
            "permissions": [],
            "permissionSets": [["SPOT"]],
        },
        {
            "symbol": "SHIBUSDT",
            "status": "TRADING",
            "baseAsset": "SHIB",
            "quoteAsset": "USDT",
            "filters": [
                {
                    "filterType": "PRICE_FILTER",
                    "minPrice": "0.00000001",
                    "maxPrice": "0",
                    "tickSize": "0.00000001",
                },
                {"filterType": "LOT_SIZE", "minQty": "1.00", "maxQty": "0", "stepSize": "10.00"},
                {"filterType": "MIN_NOTIONAL", "minNotional": "10.0"},
            ],
        },
        {
            "symbol": "OLDUSDT",
            "status": "BREAK",
            "baseAsset": "OLD",
            "quoteAsset": "USDT",
            "filters": [
                {
                    "filterType": "PRICE_FILTER",
                    "minPrice": "0.01",
                    "maxPrice": "10",
                    "tickSize": "0.01",
                },
                {"filterType": "LOT_SIZE", "minQty": "1", "maxQty": "10", "stepSize": "1"},
            ],
        },
        {
            "symbol": "NOFILTERS",
            "status": "TRADING",
            "baseAsset": "NO",
            "quoteAsset": "FILTERS",
            "filters": [],
        },
    ],
}


def test_parse_exchange_info() -> None:
    import msgspec

    for raw in (EXCHANGE_INFO, msgspec.json.encode(EXCHANGE_INFO)):
        specs, names = parse_exchange_info(raw)
        assert sorted(specs) == ["BTC/USDT", "SHIB/USDT"]
        btc = specs["BTC/USDT"]
        assert (btc.base, btc.quote) == ("BTC", "USDT")
        assert btc.tick_size == D("0.01") and str(btc.tick_size) == "0.01"
        assert btc.step_size == D("0.00001")
        assert (btc.min_price, btc.max_price) == (D("0.01"), D("1000000"))
        assert (btc.min_qty, btc.max_qty) == (D("0.00001"), D("9000"))
        assert btc.min_notional == D("5") and btc.max_orders == 200
        for v in (btc.tick_size, btc.step_size, btc.max_price, btc.max_qty):
            assert isinstance(v, Decimal) and "E" not in str(v)
        shib = specs["SHIB/USDT"]
        assert shib.step_size == D("10") and str(shib.step_size) == "10"
        assert shib.max_price == D("1e12") and shib.max_qty == D("1e12")  # "0" = no limit
        assert shib.min_notional == D("10")
        assert names.native("BTC/USDT") == "BTCUSDT" and names.unified("SHIBUSDT") == "SHIB/USDT"
        assert names.unified("OLDUSDT") is None
    specs, _ = parse_exchange_info(EXCHANGE_INFO, trading_only=False)
    assert "OLD/USDT" in specs


def test_order_and_account_json() -> None:
    result = {
        "symbol": "BTCUSDT",
        "orderId": 28,
        "orderListId": -1,
        "clientOrderId": "6gCrw2kRUAF9CvJDGP16IP",
        "transactTime": 1507725176595,
        "price": "0.10000000",
        "origQty": "10.00000000",
        "executedQty": "2.00000000",
        "cummulativeQuoteQty": "0.20000000",
        "status": "PARTIALLY_FILLED",
        "timeInForce": "GTC",
        "type": "LIMIT_MAKER",
        "side": "SELL",
    }
    o = open_order_from_json(result, "BTC/USDT")
    assert (o.client_id, o.order_id, o.side, o.status) == (
        "6gCrw2kRUAF9CvJDGP16IP",
        "28",
        "SELL",
        "PARTIALLY_FILLED",
    )
    assert (o.price, o.qty, o.cum_qty) == (D("0.1"), D("10"), D("2"))
    assert o.ts == 1507725176595 * 1_000_000
    cancel = {
        **result,
        "clientOrderId": "cancelAbc",
        "origClientOrderId": "mine_1",
        "status": "CANCELED",
    }
    assert open_order_from_json(cancel, "BTC/USDT").client_id == "mine_1"
    assert (
        open_order_from_json({**result, "status": "EXPIRED_IN_MATCH"}, "BTC/USDT").status
        == "EXPIRED"
    )
    with pytest.raises(ValueError):
        open_order_from_json({**result, "status": "WEIRD"}, "BTC/USDT")
    acct = {
        "makerCommission": 15,
        "balances": [
            {"asset": "BTC", "free": "4723846.89208129", "locked": "0.00000000"},
            {"asset": "LTC", "free": "4763368.68006011", "locked": "1.5"},
        ],
    }
    bal = balances_from_account(acct)
    assert bal["LTC"].locked == D("1.5") and bal["BTC"].free == D("4723846.89208129")
