"""Balances of the simulated venue's account: free and locked amounts per asset.

A BUY locks ``price * qty`` of the quote asset, a SELL ``qty`` of the base asset; locks are
released exactly on fill and cancel. Fees are paid in the quote asset from the free balance
at fill time (only the notional is locked, as on Binance), so a quote balance whose free part
is used up can go slightly negative by fees.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal

from mm_trio.domain.model import ZERO, Balance, BalanceUpdate


class Balances:
    """Free and locked amount of every asset the venue knows (mutable)."""

    __slots__ = ("_bal",)

    def __init__(self, start: Mapping[str, Decimal]) -> None:
        # asset -> [free, locked]
        self._bal: dict[str, list[Decimal]] = {a: [v, ZERO] for a, v in start.items()}

    def open(self, asset: str) -> None:
        """Know ``asset`` (at zero unless it is known already)."""
        self._bal.setdefault(asset, [ZERO, ZERO])

    def all(self) -> dict[str, Balance]:
        return {a: Balance(asset=a, free=fl[0], locked=fl[1]) for a, fl in self._bal.items()}

    def get(self, asset: str) -> Balance:
        fl = self._bal.get(asset, [ZERO, ZERO])
        return Balance(asset=asset, free=fl[0], locked=fl[1])

    def event(self, asset: str, ts: int) -> BalanceUpdate:
        fl = self._bal[asset]
        return BalanceUpdate(asset=asset, free=fl[0], locked=fl[1], ts=ts)

    def set(self, asset: str, free: Decimal, locked: Decimal) -> None:
        """Put ``asset`` at exactly these amounts (a saved state being restored)."""
        self._bal[asset] = [free, locked]

    def lock(self, asset: str, amount: Decimal) -> bool:
        """Move ``amount`` from free to locked; ``False`` (nothing moved) if not free."""
        fl = self._bal.get(asset)
        if fl is None or fl[0] < amount:
            return False
        fl[0] -= amount
        fl[1] += amount
        return True

    def release(self, asset: str, amount: Decimal) -> None:
        """Move ``amount`` back from locked to free (a cancel)."""
        fl = self._bal[asset]
        fl[0] += amount
        fl[1] -= amount

    def settle_buy(
        self, base: str, quote: str, qty: Decimal, locked: Decimal, notional: Decimal, fee: Decimal
    ) -> None:
        """A BUY filled ``qty`` for ``notional`` (``locked`` of its lock), paying ``fee``."""
        b, q = self._bal[base], self._bal[quote]
        b[0] += qty
        q[1] -= locked
        q[0] += locked - notional - fee

    def settle_sell(
        self, base: str, quote: str, qty: Decimal, notional: Decimal, fee: Decimal
    ) -> None:
        """A SELL filled ``qty`` (locked base) for ``notional``, paying ``fee``."""
        self._bal[base][1] -= qty
        self._bal[quote][0] += notional - fee
