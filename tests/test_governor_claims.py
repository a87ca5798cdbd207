"""The governor's claims follow the fair share exactly however symbols come and go.

Adding or removing a symbol changes the share, and with it every claim; the governor
recomputes them at the next read instead of at every add and remove (so adding 1,000
symbols is not O(n^2)). These tests hold it to a from-scratch recomputation and to an eager
twin that recomputes every claim at each add and remove, as the governor used to.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from mm_trio.core.risk.governor import RiskGovernor, _SymbolState
from mm_trio.domain.config import GovernorConfig
from mm_trio.domain.intents import PlaceOrder
from mm_trio.domain.model import OrderRequest

D = Decimal
# divisible by 1..16: every share is exact, so sums in any order agree to the last digit
CAP = D(720720)
SYMBOLS = [f"S{i}/USDT" for i in range(16)]


def cfg(max_symbol: Decimal = CAP) -> GovernorConfig:
    return GovernorConfig(
        max_total_exposure=CAP,
        max_symbol_exposure=max_symbol,
        max_total_loss=D(10) ** 12,
        hysteresis=D("0.1"),
        reduce_only_min_hold=0.0,
    )


class EagerGovernor(RiskGovernor):
    """The reference: every claim recomputed at once whenever the symbol count changes."""

    def _state(self, symbol: str) -> _SymbolState:
        st = self._symbols.get(symbol)
        if st is None:
            st = self._symbols[symbol] = _SymbolState()
            self._reshare()
        return st

    def _reshare(self) -> None:
        n = len(self._symbols)
        c = self.config
        share = c.max_total_exposure / n if n else c.max_total_exposure
        self._share = min(share, c.max_symbol_exposure)
        for s in self._symbols.values():
            s.claim = self._claim(s)
        self._claims = summed(s.claim for s in self._symbols.values())
        self._claims_stale = False
        self._version += 1


def summed(values: Iterable[Decimal]) -> Decimal:
    return sum(values, D(0))


def expected_claim(s: _SymbolState, share: Decimal) -> Decimal:
    """The docstring's rule: ``max(exposure, share)`` until the share no longer fits the
    symbol's own last buy, its exposure after that."""
    if s.exposure >= share:
        return s.exposure
    if s.last_ask is not None and s.exposure + s.last_ask > share:
        return s.exposure
    return share


def buy(symbol: str, notional: int) -> PlaceOrder:
    req = OrderRequest(
        symbol=symbol, client_id="x", side="BUY", price=D(notional), qty=D(1), post_only=True
    )
    return PlaceOrder(req, opening=True)


op = st.one_of(
    st.tuples(st.just("add"), st.sampled_from(SYMBOLS)),
    st.tuples(st.just("remove"), st.sampled_from(SYMBOLS)),
    st.tuples(st.just("buy"), st.sampled_from(SYMBOLS), st.integers(1, 200_000)),
    st.tuples(
        st.just("update"),
        st.sampled_from(SYMBOLS),
        st.integers(0, 5),  # position
        st.integers(0, 200_000),  # open buy notional
    ),
)


@settings(max_examples=300, deadline=None)
@given(ops=st.lists(op, max_size=60), max_symbol=st.sampled_from([CAP, D(90090), D(45045)]))
def test_claims_equal_a_recomputation_after_any_adds_and_removes(
    ops: list[tuple[Any, ...]], max_symbol: Decimal
) -> None:
    lazy, eager = RiskGovernor(cfg(max_symbol)), EagerGovernor(cfg(max_symbol))
    now = 0.0
    for o in ops:
        now += 1.0
        kind, sym = o[0], o[1]
        for g in (lazy, eager):
            if kind == "add":
                g.add(sym)
            elif kind == "remove":
                g.remove(sym, now=now)
        if kind == "buy":
            # the same admission and the same reason, whatever was added or removed before
            assert lazy.check(sym, buy(sym, o[2])) == eager.check(sym, buy(sym, o[2]))
        elif kind == "update":
            pos, buys = D(o[2]), D(o[3])
            assert lazy.update(
                sym, position=pos, mid=D(1000), open_buy_notional=buys, pnl=D(0), now=now
            ) == eager.update(
                sym, position=pos, mid=D(1000), open_buy_notional=buys, pnl=D(0), now=now
            )
        assert lazy.fair_share == eager.fair_share
        # every claim read is the rule applied afresh at the current share
        total = lazy._claimed()
        states = lazy._symbols
        assert {s: x.claim for s, x in states.items()} == {
            s: expected_claim(x, lazy.fair_share) for s, x in states.items()
        }
        assert total == summed(expected_claim(x, lazy.fair_share) for x in states.values())
        assert total == eager._claims
        assert lazy.exposure() == eager.exposure()


def test_a_thousand_symbols_added_and_removed_keep_the_share_and_the_claims() -> None:
    g = RiskGovernor(cfg())
    many = [f"M{i:04d}/USDT" for i in range(1000)]
    for s in many:
        g.add(s)
    assert g.fair_share == CAP / 1000
    assert g.check(many[0], buy(many[0], 700)) is None  # within its share 720.72
    # above the share, into room the 999 others claim: refused
    assert g.check(many[0], buy(many[0], 100)) is not None
    for s in many[500:]:
        g.remove(s, now=1.0)
    assert g.fair_share == CAP / 500
    assert g._claimed() == summed(expected_claim(x, CAP / 500) for x in g._symbols.values())
    # with half the symbols gone the share doubled: the same buy fits now
    assert g.check(many[0], buy(many[0], 100)) is None
