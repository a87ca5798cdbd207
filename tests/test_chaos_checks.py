"""The chaos test's checks catch what they are for (``tests/chaos_checks.py``), and the
harness's read-only view of the store reads what ``StateStore`` writes.

A check that never fails proves nothing: each one is fed records with and without the fault
it looks for.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from mm_trio.store import StateStore
from tests import chaos_checks as cc
from tests.chaos_harness import StoreView

D = Decimal
P = "mmt"
BTC = "BTC/USDT"
RULES = cc.SymbolRules(base="BTC", step_size=D("0.00001"), min_qty=D("0.00001"), min_notional=D(5))


def order(
    cid: str, oid: int, side: str = "BUY", price: str = "100", qty: str = "1", **kw: object
) -> cc.VenueOrder:
    return cc.VenueOrder(BTC, oid, cid, side, D(price), D(qty), **kw)  # type: ignore[arg-type]


def trade(
    tid: int, oid: int, side: str = "BUY", qty: str = "1", cid: str = "", **kw: object
) -> cc.Trade:
    return cc.Trade(BTC, str(tid), str(oid), cid, side, D(100), D(qty), D("0.01"), "USDT", **kw)  # type: ignore[arg-type]


def intent(
    cid: str, rowid: int = 1, side: str = "BUY", price: str = "100", qty: str = "1"
) -> cc.JournalIntent:
    parsed = cc.parse_client_id(cid)
    assert parsed is not None
    return cc.JournalIntent(
        rowid, cid, BTC, parsed.level, side, D(price), D(qty), parsed.generation
    )


B1 = "mmt_BTCUSDT_B-1_100"
B2 = "mmt_BTCUSDT_B-2_101"
S0 = "mmt_BTCUSDT_S0_102"


def test_orphans_are_our_open_orders_only() -> None:
    found = cc.orphans([order(B1, 1), order("manual-1", 2), order(S0, 3, "SELL")], P)
    assert [v.invariant for v in found] == [cc.ORPHAN]
    assert B1 in found[0].detail and S0 in found[0].detail and "manual-1" not in found[0].detail
    assert cc.orphans([order("other_BTCUSDT_B-1_1", 4)], P) == []


def test_unmanaged_names_what_the_journal_does_not_explain() -> None:
    journal = {c: intent(c) for c in (B1, B2)}
    journal[S0] = intent(S0, side="SELL", price="101")
    open_ = [
        order(B1, 1),  # journalled, open: managed
        order(B2, 2),  # journalled but ended
        order("mmt_BTCUSDT_B-3_103", 3),  # never journalled
        order(S0, 4, "SELL", price="102"),  # journalled at another price
        order("manual-1", 5),  # not ours: never judged
    ]
    found = cc.unmanaged(open_, journal, {B2}, P)
    assert [v.invariant for v in found] == [cc.UNMANAGED] * 3
    text = "\n".join(v.detail for v in found)
    assert (
        "mmt_BTCUSDT_B-2_101 (order 2) is open on the venue but the journal says it ended" in text
    )
    assert "mmt_BTCUSDT_B-3_103 (order 3) is open on the venue but not in the journal" in text
    assert "the venue has SELL 1 @ 102, the journal BTC/USDT SELL 1 @ 101" in text
    assert B1 + " " not in text and "manual-1" not in text


def test_duplicate_open_is_two_of_ours_on_one_level_and_side() -> None:
    again = "mmt_BTCUSDT_B-1_200"
    found = cc.duplicate_open(
        [order(B1, 1), order(again, 2), order(B2, 3), order(S0, 4, "SELL")], P
    )
    assert len(found) == 1 and found[0].invariant == cc.DUPLICATE_OPEN
    assert "level -1 BUY: 2 open orders" in found[0].detail
    assert B1 in found[0].detail and again in found[0].detail
    # the buy and the take-profit of one level are different slots
    assert (
        cc.duplicate_open([order("mmt_BTCUSDT_B0_1", 1), order("mmt_BTCUSDT_S0_2", 2, "SELL")], P)
        == []
    )


def test_a_client_id_on_two_venue_orders_is_reuse() -> None:
    seen_twice = [order(B1, 1), order(B1, 1, executed=D("0.5")), order(B2, 2)]
    assert cc.reused_client_ids(seen_twice, P) == []
    found = cc.reused_client_ids([*seen_twice, order(B2, 9, price="99")], P)
    assert len(found) == 1 and found[0].invariant == cc.REUSED_ID
    assert (
        found[0].detail.startswith(f"{B2} names 2 venue orders: 2 (") and "9 (" in found[0].detail
    )


def test_fill_differences_lost_phantom_mismatch_doubled() -> None:
    venue = [trade(1, 10), trade(2, 11, "SELL"), trade(3, 12)]
    client_of = {10: B1, 11: S0, 12: B2}
    ledger_ok = [trade(1, 10, cid=B1), trade(2, 11, "SELL", cid=S0), trade(3, 12, cid=B2)]
    assert cc.fill_differences(venue, ledger_ok, client_of) == []

    ledger = [
        trade(1, 10, cid=B1),
        trade(1, 10, cid=B1),  # doubled
        trade(2, 11, "SELL", qty="0.5", cid=S0),  # another quantity
        trade(4, 13, cid="mmt_BTCUSDT_B-9_1"),  # no such venue trade
    ]  # trade 3 missing
    found = cc.fill_differences(venue, ledger, client_of, describe={(BTC, "3"): "while down"})
    by = {v.invariant: v.detail for v in found}
    assert sorted(by) == sorted([cc.DOUBLED_FILL, cc.FILL_MISMATCH, cc.LOST_FILL, cc.PHANTOM_FILL])
    assert by[cc.LOST_FILL] == (
        f"BTC/USDT trade 3 on {B2} (order 12): BUY 1 @ 100 is not in the ledger (while down)"
    )
    assert "trade 1 is 2 times in the ledger" in by[cc.DOUBLED_FILL]
    assert "trade 2:" in by[cc.FILL_MISMATCH] and "0.5" in by[cc.FILL_MISMATCH]
    assert "trade 4 " in by[cc.PHANTOM_FILL]


@given(st.lists(st.integers(1, 10**6), min_size=1, max_size=30, unique=True), st.data())
def test_dropping_any_fill_from_the_ledger_is_one_lost_fill(
    ids: list[int], data: st.DataObject
) -> None:
    venue = [trade(t, 1000 + t) for t in ids]
    client_of = {1000 + t: f"mmt_BTCUSDT_B{t % 7}_{t}" for t in ids}
    ledger = [trade(t, 1000 + t, cid=client_of[1000 + t]) for t in ids]
    assert cc.fill_differences(venue, ledger, client_of) == []
    drop = data.draw(st.sampled_from(ids))
    found = cc.fill_differences(venue, [f for f in ledger if f.trade_id != str(drop)], client_of)
    assert [(v.invariant, f"trade {drop} " in v.detail) for v in found] == [(cc.LOST_FILL, True)]


def test_inventory_compares_ledger_levels_and_venue() -> None:
    ledger = [
        trade(1, 10, cid=B1),
        trade(2, 11, cid=B2),
        trade(3, 12, "SELL", cid="mmt_BTCUSDT_S-1_5"),
    ]
    levels = {-1: D(0), -2: D(1)}
    venue = [trade(1, 10), trade(2, 11), trade(3, 12, "SELL")]
    assert cc.inventory(BTC, ledger, levels, venue, "BTC") == []
    off_levels = cc.inventory(BTC, ledger, {-2: D(1), -1: D(1)}, venue, "BTC")
    assert [v.invariant for v in off_levels] == [cc.INVENTORY]
    assert "the levels sum to 2" in off_levels[0].detail
    off_venue = cc.inventory(BTC, ledger, levels, venue[:2], "BTC")
    assert [v.detail for v in off_venue] == [
        "BTC/USDT: the ledger's position is 1, the venue's trades on our orders give 2"
    ]


def test_net_position_subtracts_fees_in_the_base_only() -> None:
    buy = cc.Trade(BTC, "1", "1", B1, "BUY", D(100), D(1), D("0.001"), "BTC")
    sell = cc.Trade(BTC, "2", "2", S0, "SELL", D(101), D("0.5"), D("0.05"), "USDT")
    assert cc.net_position([buy, sell], "BTC") == D("0.499")


def _coverage(**kw: object) -> cc.Coverage:
    args: dict[str, object] = {
        "venue_trades": [trade(1, 10, qty="0.002"), trade(2, 11, qty="0.001")],
        "ledger_keys": {(BTC, "1"), (BTC, "2")},
        "open_orders": [
            order("mmt_BTCUSDT_S0_50", 20, "SELL", qty="0.002"),
            order("mmt_BTCUSDT_S1_51", 21, "SELL", qty="0.001"),
        ],
        "in_flight_sells": [],
        "levels": {-1: D("0.002"), 0: D("0.001")},
        "mid": D(100000),
        "prefix": P,
    }
    args.update(kw)
    return cc.coverage(BTC, RULES, **args)  # type: ignore[arg-type]


def test_coverage_holds_when_every_lot_has_its_take_profit() -> None:
    c = _coverage()
    assert (c.held, c.open_tp, c.gap, c.ok) == (D("0.003"), D("0.003"), D(0), True)
    # a partly filled take-profit covers only what it still sells
    part = _coverage(
        venue_trades=[
            trade(1, 10, qty="0.002"),
            trade(2, 11, qty="0.001"),
            trade(3, 21, "SELL", qty="0.0004"),
        ],
        ledger_keys={(BTC, "1"), (BTC, "2"), (BTC, "3")},
        open_orders=[
            order("mmt_BTCUSDT_S0_50", 20, "SELL", qty="0.002"),
            order("mmt_BTCUSDT_S1_51", 21, "SELL", qty="0.001", executed=D("0.0004")),
        ],
    )
    assert (part.held, part.open_tp, part.ok) == (D("0.0026"), D("0.0026"), True)


def test_coverage_allows_what_the_trader_cannot_have_done_yet() -> None:
    missing_tp = [order("mmt_BTCUSDT_S0_50", 20, "SELL", qty="0.002")]
    assert not _coverage(open_orders=missing_tp).ok
    # the take-profit is journalled by this process, not yet on the venue
    flying = intent("mmt_BTCUSDT_S1_51", side="SELL", qty="0.001")
    assert _coverage(open_orders=missing_tp, in_flight_sells=[flying]).ok
    # ... or the buy fill has not reached the trader yet
    assert _coverage(open_orders=missing_tp, ledger_keys={(BTC, "1")}).ok
    # one step of rounding per held level, not more
    short = [
        order("mmt_BTCUSDT_S0_50", 20, "SELL", qty="0.00199"),
        order("mmt_BTCUSDT_S1_51", 21, "SELL", qty="0.001"),
    ]
    assert _coverage(open_orders=short).ok
    shorter = [
        order("mmt_BTCUSDT_S0_50", 20, "SELL", qty="0.00197"),
        order("mmt_BTCUSDT_S1_51", 21, "SELL", qty="0.001"),
    ]
    c = _coverage(open_orders=shorter)
    assert (c.gap, c.allowance, c.ok) == (D("0.00003"), D("0.00002"), False)
    assert "gap 0.00003, allowed 0..0.00002" in c.describe()


def test_coverage_dust_below_the_minimums_needs_no_take_profit() -> None:
    dust = _coverage(
        venue_trades=[trade(1, 10, qty="0.00004")],
        ledger_keys={(BTC, "1")},
        open_orders=[],
        levels={-1: D("0.00004")},
        mid=D(100000),  # 4 USDT: below the 5 USDT min notional
    )
    assert dust.ok and dust.allowance == D("0.00004")


def test_coverage_selling_more_than_held_is_a_gap_too() -> None:
    extra = [
        order("mmt_BTCUSDT_S0_50", 20, "SELL", qty="0.002"),
        order("mmt_BTCUSDT_S1_51", 21, "SELL", qty="0.002"),
    ]
    c = _coverage(open_orders=extra)
    assert c.gap == D("-0.001") and not c.ok


def test_counts_summary_and_digest() -> None:
    counts = cc.ChaosCounts(seed=7, orders_placed=12, fills_checked=5, checks=3)
    counts.kills.update({"fill": 2, "timed/trading": 1})
    counts.violations += [cc.Violation(cc.LOST_FILL, f"trade {i}") for i in range(4)]
    line = counts.summary_line()
    assert line.startswith(
        "chaos: seed=7 kills=3 (fill 2, timed/trading 1); orders placed=12 fills checked=5"
    )
    assert "lost-fill=4" in line and "orphan=0" in line
    assert counts.digest(2).splitlines() == [
        "lost-fill: 4",
        "  trade 0",
        "  trade 1",
        "  ... and 2 more",
    ]


def test_store_view_reads_what_the_state_store_writes(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    view = StoreView(path)
    assert (view.last_intent(), view.intents(), view.fill_keys()) == (None, {}, set())
    assert not path.exists()  # reading never creates the file
    with StateStore.open(path) as store:
        assert (view.last_intent(), view.last_cancel()) == (0, 0)
        store.journal_intent(B1, BTC, -1, "BUY", D(100), D(1), 100, 1)
        store.journal_intent(S0, BTC, 0, "SELL", D(101), D(1), 102, 2)
        first = view.last_intent()
        store.journal_intent(B2, BTC, -2, "BUY", D(99), D(1), 101, 3)
        assert first is not None and (view.last_intent() or 0) > first
        assert view.last_cancel() == 0
        store.journal_event(B1, "cancel", "{}", 4)
        assert (view.last_cancel() or 0) > 0
        store.journal_event(B1, "report", '{"status": "CANCELED", "cum_qty": "0"}', 5)
        store.journal_event(B2, "report", '{"status": "NEW", "cum_qty": "0"}', 6)
        store.add_fill(BTC, "7", "70", S0, "SELL", D(101), D("0.4"), D(0), "USDT", 7)
        store.add_fill(BTC, "8", "71", B2, "BUY", D(99), D(1), D(0), "USDT", 8)
        store.add_fill(BTC, "9", "72", "hand-placed", "BUY", D(99), D(1), D(0), "USDT", 9)
        assert view.intents()[S0] == cc.JournalIntent(
            view.intents()[S0].rowid, S0, BTC, 0, "SELL", D(101), D(1), 102
        )
        assert set(view.intents()) == {B1, B2, S0}
        assert view.ended() == {B1}
        assert view.fill_keys() == {(BTC, "7"), (BTC, "8"), (BTC, "9")}
        assert view.level_inventory() == {BTC: store.level_inventory(BTC)}
    view.close()


def _row(
    cid: str,
    status: str,
    filled: str | None,
    order_id: str,
    reason: str = "",
    *,
    ended: bool = True,
) -> cc.JournalOrder:
    parsed = cc.parse_client_id(cid)
    assert parsed is not None
    qty = None if filled is None else D(filled)
    return cc.JournalOrder(BTC, cid, parsed.side, status, reason, qty, order_id, ended)


def test_journal_differences_after_the_final_stop() -> None:
    venue = [
        order(B1, 1, executed=D(1), status="FILLED"),
        order(B2, 2, status="CANCELED"),
        order("manual-1", 3, status="FILLED"),  # not ours: not judged
    ]
    never = "mmt_BTCUSDT_B-3_103"
    rejected = "mmt_BTCUSDT_B-4_104"
    journal = [
        _row(B1, "FILLED", "1.000", "1"),
        _row(B2, "CANCELED", "0", "2"),
        _row(never, "ENDED", None, "", "never reached the venue"),
        _row(rejected, "REJECTED", None, "", "post_only"),
        _row("mmt_BTCUSDT_B-8_108", "CANCELED", "0", "", "withdrawn before it was sent"),
    ]
    assert cc.journal_differences(venue, journal, P) == []

    late = "mmt_BTCUSDT_B-7_107"
    wrong = [
        _row(B1, "CANCELED", "0.5", "1"),  # the venue filled it
        _row(never, "ENDED", None, "", "never reached the venue"),
        _row("mmt_BTCUSDT_B-5_105", "FILLED", "1", "9"),  # the venue never had it
        _row("mmt_BTCUSDT_B-6_106", "SENT", None, "", ended=False),  # still open
        _row(late, "NEW", "0", "5"),  # ended, then a late NEW report was written
    ]
    # it did reach the venue
    reached = [*venue, order(never, 4, status="CANCELED"), order(late, 5, status="CANCELED")]
    found = cc.journal_differences(reached, wrong, P)
    assert {v.invariant for v in found} == {cc.JOURNAL}
    assert [v.detail for v in found] == [
        f"BTC/USDT {B1}: the venue says (status, filled, order id) = (FILLED, 1, 1), the journal "
        "(CANCELED, 0.5, 1)",
        f"BTC/USDT {B2} (order 2, CANCELED) is on the venue but not in the journal",
        f"BTC/USDT {never}: the venue says (status, filled, order id) = (CANCELED, 0, 4), the "
        "journal (ENDED, None, ) (never reached the venue)",
        "BTC/USDT mmt_BTCUSDT_B-5_105: the journal says FILLED (order 9, filled 1) but the venue "
        "never had such an order",
        "BTC/USDT mmt_BTCUSDT_B-6_106: still SENT (open) in the journal after the final stop; the "
        "venue never had it",
        f"BTC/USDT {late}: the journal ended it but its last report says NEW (a report written "
        "after the one that ended it; `mm-trio orders` shows that); the venue says CANCELED",
    ]
