"""The Binance REST client's clock: after a -1021 (timestamp outside recvWindow) it syncs
with the server's time again, so a local clock that drifts after start-up recovers."""

from __future__ import annotations

from urllib.parse import parse_qsl

import httpx
import msgspec
import pytest

from mm_trio.exchange.binance.rest import BinanceRest
from mm_trio.exchange.binance.signing import HmacSigner
from tests.test_binance_rest import RecordingLimiter


async def test_rest_resyncs_clock_after_1021() -> None:
    server_ms = 2_000_000_000_000
    local = {"ms": server_ms}
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        if request.url.path == "/api/v3/time":
            return httpx.Response(200, content=msgspec.json.encode({"serverTime": server_ms}))
        params = dict(parse_qsl(request.url.query.decode()))
        if abs(int(params["timestamp"]) - server_ms) > 1000:
            return httpx.Response(
                400,
                content=msgspec.json.encode(
                    {
                        "code": -1021,
                        "msg": "Timestamp for this request is outside of the recvWindow.",
                    }
                ),
            )
        return httpx.Response(200, content=b"{}")

    client = BinanceRest(
        "https://api.test",
        api_key="k",
        signer=HmacSigner("s"),
        limiter=RecordingLimiter(),
        transport=httpx.MockTransport(handler),
        now_ms=lambda: local["ms"],
    )
    await client.sync_time()
    local["ms"] -= 7000  # the local clock drifts 7 s behind after start-up
    for _ in range(3):
        try:
            await client.request("GET", "/api/v3/account", weight=20, signed=True)
            break
        except Exception:  # noqa: BLE001 - the first -1021 is expected
            continue
    else:
        pytest.fail(f"never recovered from -1021; calls: {calls}")
    await client.aclose()
