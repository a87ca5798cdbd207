"""The report's metrics on small hand-made series, each expected value worked out by hand."""

from __future__ import annotations

import math
from decimal import Decimal as D

from hypothesis import given, settings
from hypothesis import strategies as st

from mm_trio.apps.report.metrics import (
    FillRec,
    OrderRec,
    Sample,
    drawdowns,
    durations,
    fill_rate,
    inventory,
    match_fills,
    max_drawdown,
    metrics,
    quote_fee,
    rejects_by_class,
    round_trips_per_level,
    sampling_interval,
    sharpe,
    sortino,
)
from mm_trio.core.position import Fill, PositionManager

S = 1_000_000_000
YEAR_S = 365 * 24 * 3600  # 31,536,000


def _fill(ts: int, side: str, price: str, qty: str, cid: str, fee: str = "0.1") -> FillRec:
    return FillRec(ts * S, "BTC/USDT", side, D(price), D(qty), D(fee), "USDT", cid)  # type: ignore[arg-type]


def test_sharpe_of_a_four_change_curve() -> None:
    # changes 1, 2, -1, 2: mean 1; squared deviations 0 + 1 + 4 + 1 = 6, / (4 - 1) = 2
    curve = [D(0), D(1), D(3), D(2), D(4)]
    expected = 1 / math.sqrt(2) * math.sqrt(YEAR_S / 60)  # sampled every 60 s
    assert sharpe(curve, 60.0) == expected
    assert math.isclose(expected, 512.6402247, rel_tol=1e-9)  # sqrt(262,800)


def test_sortino_counts_only_the_falls() -> None:
    # changes 1, 2, -1, 2: downside sqrt((-1)^2 / 4) = 0.5, mean 1 -> 2 per period
    curve = [D(0), D(1), D(3), D(2), D(4)]
    assert sortino(curve, 60.0) == 2 * math.sqrt(YEAR_S / 60)


def test_ratios_are_undefined_without_variation_or_falls() -> None:
    assert sharpe([D(1), D(1), D(1)], 1.0) is None  # no variation
    assert sharpe([D(0), D(1)], 1.0) is None  # one change: no sample deviation
    assert sortino([D(0), D(1), D(3)], 1.0) is None  # never falls
    assert sharpe([], 1.0) is None and sortino([], 1.0) is None


def test_drawdown_from_a_peak_that_starts_at_zero() -> None:
    # peaks 0, 2, 2, 3, 3, 3 (the start, 0, is the first peak: an early loss is a drawdown)
    curve = [D(-1), D(2), D(1), D(3), D(0), D(1)]
    assert drawdowns(curve) == [D(1), D(0), D(1), D(0), D(3), D(2)]
    assert max_drawdown(curve) == D(3)
    assert max_drawdown([]) == D(0)


def test_round_trips_fifo_per_level_long_partial_and_neutral() -> None:
    fills = [
        _fill(1, "BUY", "100", "1", "mmt_BTCUSDT_B0_1"),  # opens level 0
        _fill(2, "BUY", "99", "1", "mmt_BTCUSDT_B-1_2"),  # opens level -1: stays open
        _fill(3, "SELL", "101", "1", "mmt_BTCUSDT_S0_3"),  # closes level 0
        _fill(4, "BUY", "98", "2", "mmt_BTCUSDT_B-2_4", fee="0.2"),
        _fill(5, "SELL", "99", "1", "mmt_BTCUSDT_S-2_5"),  # one take-profit, two fills
        _fill(6, "SELL", "99", "1", "mmt_BTCUSDT_S-2_5"),
        _fill(7, "SELL", "105", "1", "mmt_BTCUSDT_S3_6"),  # neutral: opens a short lot
        _fill(8, "BUY", "104", "1", "mmt_BTCUSDT_B3_7"),  # its buy-back
    ]
    m = match_fills(fills)
    assert m.opening == [True, True, False, True, False, False, True, False]
    trips = {t.client_id: t for t in m.round_trips}
    assert set(trips) == {"mmt_BTCUSDT_S0_3", "mmt_BTCUSDT_S-2_5", "mmt_BTCUSDT_B3_7"}
    # level 0: (101 - 100) x 1 = 1 gross; fees 0.1 + 0.1
    assert (trips["mmt_BTCUSDT_S0_3"].gross, trips["mmt_BTCUSDT_S0_3"].fees) == (D(1), D("0.2"))
    # level -2: (99 - 98) x 2 = 2 gross; fees 0.2 (the buy) + 0.1 + 0.1; qty 2 in one trip
    t = trips["mmt_BTCUSDT_S-2_5"]
    assert (t.qty, t.gross, t.fees, t.net) == (D(2), D(2), D("0.4"), D("1.6"))
    # short lot at level 3: (105 - 104) x 1
    assert trips["mmt_BTCUSDT_B3_7"].net == D("0.8")
    assert round_trips_per_level(m.round_trips) == {-2: 1, 0: 1, 3: 1}


def test_a_partial_close_charges_the_opening_fee_pro_rata() -> None:
    fills = [
        _fill(1, "BUY", "100", "4", "mmt_BTCUSDT_B0_1", fee="0.4"),  # 0.1 per unit
        _fill(2, "SELL", "102", "1", "mmt_BTCUSDT_S0_2", fee="0.05"),
    ]
    (trip,) = match_fills(fills).round_trips
    assert (trip.qty, trip.gross, trip.fees) == (D(1), D(2), D("0.15"))


def test_quote_fee_values_a_base_fee_at_the_fill_price() -> None:
    f = FillRec(0, "BTC/USDT", "BUY", D("100"), D("1"), D("0.001"), "BTC", "x")
    assert quote_fee(f) == D("0.1")
    assert quote_fee(FillRec(0, "BTC/USDT", "BUY", D(100), D(1), D(3), "BNB", "x")) == 0


def test_fill_rate_counts_opening_orders_with_a_fill() -> None:
    orders = [
        OrderRec(0, "BTC/USDT", f"mmt_BTCUSDT_B{k}_{k}", "BUY", D(100 - k), D(1), True)
        for k in range(4)
    ] + [OrderRec(0, "BTC/USDT", "mmt_BTCUSDT_S0_9", "SELL", D(101), D(1), False)]
    fills = [
        _fill(1, "BUY", "100", "1", "mmt_BTCUSDT_B0_0"),
        _fill(2, "BUY", "99", "0.5", "mmt_BTCUSDT_B1_1"),  # partly filled counts
        _fill(3, "SELL", "101", "1", "mmt_BTCUSDT_S0_9"),  # a take-profit: not counted
    ]
    assert fill_rate(orders, fills) == 2 / 4
    assert fill_rate([], fills) is None


def test_durations_weight_each_sample_by_the_time_to_the_next() -> None:
    samples = [
        Sample(0, D(0), state="RUNNING"),
        Sample(1 * S, D(0), state="HALTED", reduce_only=True),
        Sample(3 * S, D(0), state="HALTED"),
        Sample(6 * S, D(0), state="RUNNING", reduce_only=True),  # the last lasts 0
    ]
    assert durations(samples, lambda s: s.state == "HALTED") == 5.0  # (3-1) + (6-3)
    assert durations(samples, lambda s: s.reduce_only) == 2.0
    assert sampling_interval(samples) == 2.0  # gaps 1, 2, 3: median 2


def test_inventory_peak_its_value_and_time() -> None:
    samples = [
        Sample(k * S, D(0), position=D(p), mid=D(m))
        for k, (p, m) in enumerate([(0, 10), (1, 10), (2, 11), (2, 12), (1, 12)])
    ]
    inv = inventory(samples)
    assert inv.max_qty == D(2)
    assert inv.max_value == D(24)  # 2 x 12 at the fourth sample
    assert inv.time_at_max_s == 2.0  # samples 2 and 3, one second each
    assert inv.time_holding_s == 3.0  # samples 1, 2, 3


def test_rejects_by_class_reads_the_kind_before_the_colon() -> None:
    reasons = ["filter: PRICE_FILTER", "balance: short", "filter: LOT_SIZE", "rejected",
               "governor: total cap"]  # fmt: skip
    assert rejects_by_class(reasons) == {"balance": 1, "filter": 2, "governor": 1, "unknown": 1}


def test_metrics_of_a_hand_made_run() -> None:
    samples = [
        Sample(k * S, D(t), exposure=D(e), position=D(p), mid=D(100))
        for k, (t, e, p) in enumerate([(0, 100, 0), (-2, 300, 2), (1, 400, 3), (3, 200, 1)])
    ]
    fills = [
        _fill(1, "BUY", "100", "1", "mmt_BTCUSDT_B0_1"),
        _fill(2, "SELL", "101", "1", "mmt_BTCUSDT_S0_2"),
    ]
    orders = [OrderRec(0, "BTC/USDT", "mmt_BTCUSDT_B0_1", "BUY", D(100), D(1), True)]
    m = metrics(samples, fills, orders, reject_reasons=["filter: x"], breaker_trips=2)
    assert m.net_pnl == D(3)
    assert m.capital_used == D(400)
    assert m.return_on_capital == 3 / 400
    assert m.max_drawdown == D(2)  # 0 -> -2
    assert m.pnl_per_drawdown == 1.5
    assert (m.round_trips, m.avg_round_trip_net) == (1, D("0.8"))
    assert m.turnover == D(201)
    assert m.fill_rate == 1.0 and m.opening_orders == 1
    assert (m.max_inventory, m.max_inventory_value) == (D(3), D(300))
    assert m.rejects == {"filter": 1} and m.breaker_trips == 2
    assert m.duration_s == 3.0 and m.interval_s == 1.0


_OPS = st.lists(
    st.tuples(
        st.integers(-3, 3),  # level
        st.booleans(),  # True: buy at the level, False: sell what it holds (or part)
        st.integers(1, 5),  # qty
        st.integers(90, 110),  # price
    ),
    max_size=40,
)


@given(_OPS)
@settings(max_examples=200, deadline=None)
def test_round_trip_gross_equals_the_position_managers_realized_pnl(ops: list) -> None:
    """The report's FIFO matching agrees with the engine's PositionManager, exactly."""
    pm = PositionManager("BTC/USDT", "BTC", "USDT")
    held: dict[int, int] = {}
    fills = []
    for n, (level, buy, qty, price) in enumerate(ops):
        if not buy:
            qty = min(qty, held.get(level, 0))
            if not qty:
                continue
        held[level] = held.get(level, 0) + (qty if buy else -qty)
        side = "BUY" if buy else "SELL"
        cid = f"mmt_BTCUSDT_{side[0]}{level}_{n}"
        fills.append(_fill(n, side, str(price), str(qty), cid, fee="0"))
        pm.on_fill(Fill(n, "BTC/USDT", side, D(price), D(qty), D(0), "USDT", level, n))  # type: ignore[arg-type]
    gross = sum((t.gross for t in match_fills(fills).round_trips), D(0))
    assert gross == pm.realized_pnl
