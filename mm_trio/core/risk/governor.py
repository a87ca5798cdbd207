"""The aggregate risk governor (SPEC §6): exposure caps, reduce-only, kill switch. Pure.

* Exposure of a symbol = ``|position| * mid + open buy notional`` (quote currency) plus the
  notional of buys admitted by :meth:`RiskGovernor.check` since the symbol's last
  :meth:`RiskGovernor.update` (the *reservation*). Total exposure = Σ over symbols.
* A symbol whose exposure exceeds ``max_symbol_exposure`` goes reduce-only; so do all
  symbols when the total exceeds ``max_total_exposure``. Reduce-only clears only once the
  exposure is below ``cap * (1 - hysteresis)`` (the band stops flapping at the cap).
* Σ PnL <= ``-max_total_loss`` trips the kill switch: latched until :meth:`resume`. PnL of
  removed symbols stays in the sum (removing a losing symbol does not reset the loss).
  After a resume the loss allowance restarts from the PnL at that moment, so a resume is
  not undone by the very next update: the switch trips again at
  ``min(-max_total_loss, pnl_at_resume - max_total_loss)``.
* :meth:`check` gates every intent: cancels always pass; when killed every new order is
  refused; buys are refused in reduce-only and whenever their notional would push the
  symbol or the total over its cap. An admitted buy's notional is reserved at once, so a
  batch of buys checked one after another cannot jointly exceed a cap; the next
  ``update`` of that symbol replaces the reservation with the venue-confirmed open buy
  notional. Sells pass unless killed.

Without a known mid (``mid=None`` and none seen before) a symbol's position counts 0.
"""

from __future__ import annotations

from decimal import Decimal

import msgspec

from mm_trio.domain.config import GovernorConfig
from mm_trio.domain.intents import CancelOrder, Intent, PlaceOrder

__all__ = ["ExposureSnapshot", "GovernorChange", "RiskGovernor"]

ZERO = Decimal(0)
TOTAL = "total"
KILL = "kill"


class GovernorChange(msgspec.Struct, frozen=True):
    """``scope`` is "total", a symbol, or "kill"; ``state`` is one of
    "reduce_only", "normal", "killed", "resumed"."""

    scope: str
    state: str
    reason: str


class ExposureSnapshot(msgspec.Struct, frozen=True, kw_only=True):
    total: Decimal
    per_symbol: dict[str, Decimal]
    max_total: Decimal
    max_symbol: Decimal
    reduce_only_total: bool
    reduce_only_symbols: list[str]
    killed: bool
    kill_reason: str
    total_pnl: Decimal


def _m(x: Decimal) -> str:
    """Money for humans: two decimals."""
    return f"{x:.2f}"


class _SymbolState:
    __slots__ = ("position", "mid", "open_buy", "reserved", "pnl", "exposure",
                 "reduce_only", "reason")

    def __init__(self) -> None:
        self.position = ZERO
        self.mid: Decimal | None = None
        self.open_buy = ZERO
        self.reserved = ZERO
        self.pnl = ZERO
        self.exposure = ZERO
        self.reduce_only = False
        self.reason = ""

    def compute(self) -> Decimal:
        held = abs(self.position) * self.mid if self.mid is not None else ZERO
        return held + self.open_buy + self.reserved


class RiskGovernor:
    """Aggregate exposure and loss across all symbols; gates every intent."""

    def __init__(self, config: GovernorConfig) -> None:
        self.config = config
        self._symbols: dict[str, _SymbolState] = {}
        self._total = ZERO
        self._total_ro = False
        self._total_reason = ""
        self._pnl = ZERO  # Σ pnl of live symbols
        self._removed_pnl = ZERO
        self._killed = False
        self.kill_reason = ""
        self._kill_at = -config.max_total_loss
        self.refusals = 0

    # ------------------------------------------------------------------ state
    @property
    def killed(self) -> bool:
        return self._killed

    @property
    def total_exposure(self) -> Decimal:
        return self._total

    @property
    def total_pnl(self) -> Decimal:
        return self._pnl + self._removed_pnl

    def symbol_exposure(self, symbol: str) -> Decimal:
        st = self._symbols.get(symbol)
        return st.exposure if st is not None else ZERO

    def reduce_only(self, symbol: str) -> bool:
        """The symbol may only reduce exposure (its own cap or the total cap)."""
        if self._total_ro:
            return True
        st = self._symbols.get(symbol)
        return st is not None and st.reduce_only

    def exposure(self) -> ExposureSnapshot:
        return ExposureSnapshot(
            total=self._total,
            per_symbol={s: st.exposure for s, st in self._symbols.items()},
            max_total=self.config.max_total_exposure,
            max_symbol=self.config.max_symbol_exposure,
            reduce_only_total=self._total_ro,
            reduce_only_symbols=sorted(s for s, st in self._symbols.items() if st.reduce_only),
            killed=self._killed,
            kill_reason=self.kill_reason,
            total_pnl=self.total_pnl,
        )

    # ------------------------------------------------------------------ helpers
    def _state(self, symbol: str) -> _SymbolState:
        st = self._symbols.get(symbol)
        if st is None:
            st = self._symbols[symbol] = _SymbolState()
        return st

    def _recompute(self, st: _SymbolState) -> None:
        new = st.compute()
        self._total += new - st.exposure
        st.exposure = new

    def _band(self, scope: str, label: str, exposure: Decimal, cap: Decimal, active: bool,
              out: list[GovernorChange]) -> tuple[bool, str] | None:
        """Hysteresis band: the new (reduce_only, reason) when the state flips, else None."""
        clear_below = cap * (1 - self.config.hysteresis)
        if not active and exposure > cap:
            reason = f"{label} {_m(exposure)} above cap {_m(cap)}"
            out.append(GovernorChange(scope, "reduce_only", reason))
            return True, reason
        if active and exposure < clear_below:
            out.append(GovernorChange(scope, "normal", f"{label} {_m(exposure)} below "
                                      f"{_m(clear_below)} (cap {_m(cap)} less "
                                      f"{self.config.hysteresis * 100:f}% hysteresis)"))
            return False, ""
        return None

    def _symbol_band(self, symbol: str, st: _SymbolState, out: list[GovernorChange]) -> None:
        flip = self._band(symbol, f"{symbol} exposure", st.exposure,
                          self.config.max_symbol_exposure, st.reduce_only, out)
        if flip is not None:
            st.reduce_only, st.reason = flip

    def _total_band(self, out: list[GovernorChange]) -> None:
        flip = self._band(TOTAL, "total exposure", self._total, self.config.max_total_exposure,
                          self._total_ro, out)
        if flip is not None:
            self._total_ro, self._total_reason = flip

    def _kill_check(self, out: list[GovernorChange]) -> None:
        pnl = self.total_pnl
        if not self._killed and pnl <= self._kill_at:
            self._killed = True
            self.kill_reason = (f"total PnL {_m(pnl)} reached the loss limit {_m(self._kill_at)} "
                                f"(max_total_loss {_m(self.config.max_total_loss)})")
            out.append(GovernorChange(KILL, "killed", self.kill_reason))

    # ------------------------------------------------------------------ input
    def update(self, symbol: str, *, position: Decimal, mid: Decimal | None,
               open_buy_notional: Decimal, pnl: Decimal) -> list[GovernorChange]:
        """New state of one symbol (replaces its reservation); returns the changes."""
        out: list[GovernorChange] = []
        st = self._state(symbol)
        st.position = position
        if mid is not None and mid > 0:
            st.mid = mid
        st.open_buy = open_buy_notional
        st.reserved = ZERO
        self._pnl += pnl - st.pnl
        st.pnl = pnl
        self._recompute(st)
        self._symbol_band(symbol, st, out)
        self._total_band(out)
        self._kill_check(out)
        return out

    def remove(self, symbol: str) -> list[GovernorChange]:
        """Forget a symbol (its PnL stays in the total); returns the changes."""
        out: list[GovernorChange] = []
        st = self._symbols.pop(symbol, None)
        if st is None:
            return out
        self._total -= st.exposure
        self._pnl -= st.pnl
        self._removed_pnl += st.pnl
        if st.reduce_only:
            out.append(GovernorChange(symbol, "normal", f"{symbol} removed"))
        self._total_band(out)
        return out

    def check(self, symbol: str, intent: Intent) -> str | None:
        """``None`` if the intent may go out (a buy's notional is then reserved), else why not."""
        if isinstance(intent, CancelOrder):
            return None
        assert isinstance(intent, PlaceOrder)
        req = intent.request
        if self._killed:
            return self._refuse(f"kill switch: {self.kill_reason}")
        if req.side == "SELL":
            return None
        st = self._state(symbol)
        if self._total_ro:
            return self._refuse(f"reduce-only: {self._total_reason}")
        if st.reduce_only:
            return self._refuse(f"reduce-only: {st.reason}")
        notional = req.price * req.qty
        cap = self.config.max_symbol_exposure
        if st.exposure + notional > cap:
            return self._refuse(f"buy of {_m(notional)} would raise {symbol} exposure from "
                                f"{_m(st.exposure)} to {_m(st.exposure + notional)} "
                                f"(cap {_m(cap)})")
        total_cap = self.config.max_total_exposure
        if self._total + notional > total_cap:
            return self._refuse(f"buy of {_m(notional)} would raise total exposure from "
                                f"{_m(self._total)} to {_m(self._total + notional)} "
                                f"(cap {_m(total_cap)})")
        st.reserved += notional
        self._recompute(st)
        return None

    def _refuse(self, reason: str) -> str:
        self.refusals += 1
        return reason

    def kill(self, reason: str) -> list[GovernorChange]:
        """Operator kill switch: latched like a loss kill, until :meth:`resume`."""
        if self._killed:
            return []
        self._killed = True
        self.kill_reason = f"operator: {reason}"
        return [GovernorChange(KILL, "killed", self.kill_reason)]

    def resume(self) -> list[GovernorChange]:
        """Operator clears the kill switch; the loss allowance restarts from here."""
        if not self._killed:
            return []
        self._killed = False
        reason = f"operator resumed (was: {self.kill_reason})"
        self.kill_reason = ""
        limit = self.config.max_total_loss
        self._kill_at = min(-limit, self.total_pnl - limit)
        return [GovernorChange(KILL, "resumed", reason)]
