"""`mm-trio venue --replay`: recorded market data served in real time over the Binance API."""

from __future__ import annotations

from decimal import Decimal

import httpx
import trio

from mm_trio.apps.paper.config import PaperConfig
from mm_trio.apps.paper.server import open_paper_venue
from mm_trio.domain.model import Quote
from mm_trio.exchange.binance.decode import StreamDecoder
from mm_trio.exchange.recording import iter_recording
from tests.conftest import ROOT

ETHBTC = ROOT / "fixtures" / "ethbtc-synth.gz"


def recorded_bids(limit_s: float) -> set[Decimal]:
    """Best bids the fixture records in its first ``limit_s`` seconds."""
    decoder = StreamDecoder({"ETHBTC": "ETH/BTC"}, clock="recv")
    bids: set[Decimal] = set()
    first = None
    for ts, raw in iter_recording(ETHBTC):
        first = ts if first is None else first
        if ts - first > limit_s * 1e9:
            break
        bids.update(ev.bid for ev in decoder.decode(raw, ts) if isinstance(ev, Quote))
    return bids


async def test_venue_serves_a_recording_as_its_market() -> None:
    cfg = PaperConfig(replay=(str(ETHBTC),))
    async with open_paper_venue(cfg) as server, httpx.AsyncClient(base_url=server.http_url) as http:
        info = (await http.get("/api/v3/exchangeInfo", params={"symbol": "ETHBTC"})).json()
        filters = {f["filterType"]: f for f in info["symbols"][0]["filters"]}
        # the recorded symbol's spec is the one inferred from the recording
        assert Decimal(filters["PRICE_FILTER"]["tickSize"]) > 0
        seen: set[Decimal] = set()
        with trio.fail_after(20):
            while len(seen) < 3:
                await trio.sleep(0.2)
                r = await http.get("/api/v3/ticker/bookTicker", params={"symbol": "ETHBTC"})
                if r.status_code == 200 and Decimal(r.json()["bidPrice"]) > 0:
                    seen.add(Decimal(r.json()["bidPrice"]))
        # every bid served is one the recording holds (played from its start, in real time)
        assert seen <= recorded_bids(60)
        # symbols that are not in the recording have no market data
        other = await http.get("/api/v3/ticker/bookTicker", params={"symbol": "BTCUSDT"})
        assert other.status_code != 200 or Decimal(other.json()["bidPrice"]) == 0


# --------------------------------------------------------------------------- markers
# (at the end, so the lines above are left as they are)
# every test here starts a real server on loopback (the paper venue or a local
# stream server): left out of the fast unit pass, pytest -m "not slow"
import pytest  # noqa: E402

pytestmark = pytest.mark.slow
