"""The aggregate risk governor (SPEC §6): exposure caps, reduce-only, kill switch. Pure.

Time is passed in (``now`` on :meth:`RiskGovernor.update`, :meth:`~RiskGovernor.remove` and
:meth:`~RiskGovernor.tick`); the governor reads no clock.

Exposure
    Exposure of a symbol = ``|position| * mid + open buy notional`` (quote currency) plus the
    notional of buys admitted by :meth:`RiskGovernor.check` since the symbol's last
    :meth:`RiskGovernor.update` (the *reservation*). Total exposure = Σ over symbols. Buys
    whose cancel is under way are still open (the venue holds them until it confirms); the
    shell reports their notional as ``cancelling_buy_notional`` so trimming never asks for
    the same notional twice. Without a known mid (``mid=None`` and none seen before) a
    symbol's position counts 0.

Admission: a budget that never overshoots, shared fairly
    :meth:`check` gates every intent: cancels always pass; when killed every new order is
    refused; sells pass otherwise. A buy is refused in reduce-only and whenever its notional
    would push the symbol over ``max_symbol_exposure`` or the total over
    ``max_total_exposure``: admitted buys never raise the total above the cap, so our own
    opening orders cannot trip reduce-only; only the value of held inventory can (price
    moves, fills). An admitted buy's notional is reserved at once, so a batch of buys
    checked one after another cannot jointly exceed a cap; the next ``update`` of that
    symbol replaces the reservation with the venue-confirmed open buy notional.

    When the total cap binds, the room is shared: every symbol the governor knows (see
    :meth:`add`) is guaranteed its *fair share* ``min(max_total_exposure / N,
    max_symbol_exposure)``. A buy that takes a symbol above its share is admitted only if
    the symbol was within its share before it (one order beyond the share at most) and only
    into room no other symbol *claims*. A symbol claims ``max(exposure, share)`` until its
    share no longer fits its own last buy (``exposure + last buy > share``: a remainder
    smaller than its order size is released to the others) and its exposure after that. So
    whoever asks first, every symbol gets its share to its own order granularity, and room
    nobody can use is spread one order per symbol.

Reduce-only: hysteresis in value and in time
    A symbol whose exposure exceeds ``max_symbol_exposure`` goes reduce-only; so do all
    symbols when the total exceeds ``max_total_exposure``. Reduce-only lasts at least
    ``reduce_only_min_hold`` seconds and until the exposure is below ``cap * (1 -
    hysteresis)``; the shell calls :meth:`tick` so a release is not left waiting for a
    report. Reduce-only admits no buy but does not empty the book: resting buys that fit
    within the cap stay; only the excess is trimmed. :meth:`buy_allowance` tells a symbol
    how much open buy notional (cancels under way excluded) it may keep: a symbol over its
    own cap gives up its own excess; the total's excess is taken from the symbols with the
    largest exposure first (ties by name). The shell cancels the farthest buys first.

Kill switch
    Σ PnL <= ``-max_total_loss`` trips the kill switch: latched until :meth:`resume`. PnL of
    removed symbols stays in the sum (removing a losing symbol does not reset the loss).
    After a resume the loss allowance restarts from the PnL at that moment, so a resume is
    not undone by the very next update: the switch trips again at ``min(-max_total_loss,
    pnl_at_resume - max_total_loss)``.
"""

from __future__ import annotations

import math
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
    fair_share: Decimal = ZERO  # each known symbol's guaranteed part of max_total


def _m(x: Decimal) -> str:
    """Money for humans: two decimals."""
    return f"{x:.2f}"


class _SymbolState:
    __slots__ = (
        "position",
        "mid",
        "open_buy",
        "cancelling",
        "reserved",
        "pnl",
        "exposure",
        "claim",
        "last_ask",
        "reduce_only",
        "reason",
        "since",
    )

    def __init__(self) -> None:
        self.position = ZERO
        self.mid: Decimal | None = None
        self.open_buy = ZERO
        self.cancelling = ZERO  # part of open_buy whose cancel is under way
        self.reserved = ZERO
        self.pnl = ZERO
        self.exposure = ZERO
        self.claim = ZERO  # the part of the total cap this symbol claims (see the docstring)
        self.last_ask: Decimal | None = None  # notional of its last buy that asked for room
        self.reduce_only = False
        self.reason = ""
        self.since = -math.inf  # when it last went reduce-only

    def compute(self) -> Decimal:
        held = abs(self.position) * self.mid if self.mid is not None else ZERO
        return held + self.open_buy + self.reserved

    @property
    def kept(self) -> Decimal:
        """Open buy notional that stays open (no cancel under way)."""
        kept = self.open_buy + self.reserved - self.cancelling
        return kept if kept > 0 else ZERO

    @property
    def kept_exposure(self) -> Decimal:
        return self.exposure - self.cancelling


class RiskGovernor:
    """Aggregate exposure and loss across all symbols; gates every intent."""

    def __init__(self, config: GovernorConfig) -> None:
        self.config = config
        self._symbols: dict[str, _SymbolState] = {}
        self._total = ZERO
        self._claims = ZERO  # Σ claim (read it through _claimed)
        self._claims_stale = False  # the share changed since the claims were summed
        self._cancelling = ZERO  # Σ cancelling
        self._share = config.max_symbol_exposure
        self._total_ro = False
        self._total_reason = ""
        self._total_since = -math.inf
        self._now = -math.inf
        self._pnl = ZERO  # Σ pnl of live symbols
        self._removed_pnl = ZERO
        self._killed = False
        self.kill_reason = ""
        self._kill_at = -config.max_total_loss
        self.refusals = 0
        self._version = 0  # bumped on every exposure change (keys the trim plan cache)
        self._plan: tuple[int, dict[str, Decimal]] = (-1, {})

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

    @property
    def fair_share(self) -> Decimal:
        """Each known symbol's guaranteed part of ``max_total_exposure``."""
        return self._share

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
            fair_share=self._share,
        )

    # ------------------------------------------------------------------ helpers
    def _state(self, symbol: str) -> _SymbolState:
        st = self._symbols.get(symbol)
        if st is None:
            st = self._symbols[symbol] = _SymbolState()
            self._reshare()
            if not self._claims_stale:  # the same share: only its own claim is new
                st.claim = self._claim(st)
                self._claims += st.claim
        return st

    def _reshare(self) -> None:
        """The number of symbols changed, so may the fair share: when it did, every claim
        follows it, at the next read (:meth:`_claimed`). Adding or removing many symbols in
        a row then costs O(1) each instead of O(symbols) each."""
        cfg = self.config
        n = len(self._symbols)
        share = cfg.max_total_exposure / n if n else cfg.max_total_exposure
        share = min(share, cfg.max_symbol_exposure)
        if share != self._share:
            self._share = share
            self._claims_stale = True
        self._version += 1

    def _claimed(self) -> Decimal:
        """Σ claim, every claim at the current fair share (recomputed once after the share
        changed; kept up to date symbol by symbol otherwise)."""
        if self._claims_stale:
            claims = ZERO
            for st in self._symbols.values():
                st.claim = self._claim(st)
                claims += st.claim
            self._claims = claims
            self._claims_stale = False
        return self._claims

    def _claim(self, st: _SymbolState) -> Decimal:
        e, share = st.exposure, self._share
        if e >= share:
            return e
        if st.last_ask is not None and e + st.last_ask > share:
            return e  # what is left of its share is smaller than its own orders
        return share

    def _recompute(self, st: _SymbolState) -> None:
        new = st.compute()
        self._total += new - st.exposure
        st.exposure = new
        if not self._claims_stale:  # else every claim is recomputed at the next read
            claim = self._claim(st)
            self._claims += claim - st.claim
            st.claim = claim
        self._version += 1

    def _advance(self, now: float) -> None:
        if now > self._now:
            self._now = now

    def _band(
        self,
        scope: str,
        label: str,
        exposure: Decimal,
        cap: Decimal,
        active: bool,
        since: float,
        out: list[GovernorChange],
    ) -> tuple[bool, str, float] | None:
        """Hysteresis band in value and time: the new (reduce_only, reason, since) when the
        state flips, else None."""
        cfg = self.config
        clear_below = cap * (1 - cfg.hysteresis)
        if not active and exposure > cap:
            reason = f"{label} {_m(exposure)} above cap {_m(cap)}"
            out.append(GovernorChange(scope, "reduce_only", reason))
            return True, reason, self._now
        if active and exposure < clear_below:
            held = self._now - since
            if held < cfg.reduce_only_min_hold:
                return None  # below the band, but not reduce-only long enough yet
            out.append(
                GovernorChange(
                    scope,
                    "normal",
                    f"{label} {_m(exposure)} below "
                    f"{_m(clear_below)} (cap {_m(cap)} less "
                    f"{cfg.hysteresis * 100:f}% hysteresis) after "
                    f"{held:.1f}s reduce-only (at least "
                    f"{cfg.reduce_only_min_hold:g}s)",
                )
            )
            return False, "", since
        return None

    def _symbol_band(self, symbol: str, st: _SymbolState, out: list[GovernorChange]) -> None:
        flip = self._band(
            symbol,
            f"{symbol} exposure",
            st.exposure,
            self.config.max_symbol_exposure,
            st.reduce_only,
            st.since,
            out,
        )
        if flip is not None:
            st.reduce_only, st.reason, st.since = flip

    def _total_band(self, out: list[GovernorChange]) -> None:
        flip = self._band(
            TOTAL,
            "total exposure",
            self._total,
            self.config.max_total_exposure,
            self._total_ro,
            self._total_since,
            out,
        )
        if flip is not None:
            self._total_ro, self._total_reason, self._total_since = flip

    def _kill_check(self, out: list[GovernorChange]) -> None:
        pnl = self.total_pnl
        if not self._killed and pnl <= self._kill_at:
            self._killed = True
            self.kill_reason = (
                f"total PnL {_m(pnl)} reached the loss limit {_m(self._kill_at)} "
                f"(max_total_loss {_m(self.config.max_total_loss)})"
            )
            out.append(GovernorChange(KILL, "killed", self.kill_reason))

    # ------------------------------------------------------------------ input
    def add(self, symbol: str) -> None:
        """A symbol starts: it gets its fair share of the total cap from now on, before its
        first report (so symbols asking early cannot take the room of those still starting)."""
        self._state(symbol)

    def update(
        self,
        symbol: str,
        *,
        position: Decimal,
        mid: Decimal | None,
        open_buy_notional: Decimal,
        pnl: Decimal,
        now: float,
        cancelling_buy_notional: Decimal = ZERO,
    ) -> list[GovernorChange]:
        """New state of one symbol (replaces its reservation); returns the changes.

        ``cancelling_buy_notional`` is the part of ``open_buy_notional`` whose cancel is under
        way."""
        self._advance(now)
        out: list[GovernorChange] = []
        st = self._state(symbol)
        st.position = position
        if mid is not None and mid > 0:
            st.mid = mid
        st.open_buy = open_buy_notional
        st.reserved = ZERO
        self._cancelling += cancelling_buy_notional - st.cancelling
        st.cancelling = cancelling_buy_notional
        self._pnl += pnl - st.pnl
        st.pnl = pnl
        self._recompute(st)
        self._symbol_band(symbol, st, out)
        self._total_band(out)
        self._kill_check(out)
        return out

    def remove(self, symbol: str, *, now: float) -> list[GovernorChange]:
        """Forget a symbol (its PnL stays in the total); returns the changes."""
        self._advance(now)
        out: list[GovernorChange] = []
        st = self._symbols.pop(symbol, None)
        if st is None:
            return out
        self._total -= st.exposure
        self._cancelling -= st.cancelling
        self._pnl -= st.pnl
        self._removed_pnl += st.pnl
        if not self._claims_stale:
            self._claims -= st.claim
        self._reshare()
        if st.reduce_only:
            out.append(GovernorChange(symbol, "normal", f"{symbol} removed"))
        self._total_band(out)
        return out

    def tick(self, now: float) -> list[GovernorChange]:
        """Time passed: release reduce-only whose hold time is over (no report needed)."""
        self._advance(now)
        out: list[GovernorChange] = []
        for symbol, st in self._symbols.items():
            if st.reduce_only:
                self._symbol_band(symbol, st, out)
        if self._total_ro:
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
        after = st.exposure + notional
        if after > cap:
            return self._refuse(
                f"buy of {_m(notional)} would raise {symbol} exposure from "
                f"{_m(st.exposure)} to {_m(after)} (cap {_m(cap)})"
            )
        st.last_ask = notional  # it asks for room: its claim follows (see _claim)
        total_cap = self.config.max_total_exposure
        reason: str | None = None
        if self._total + notional > total_cap:
            reason = (
                f"buy of {_m(notional)} would raise total exposure from "
                f"{_m(self._total)} to {_m(self._total + notional)} "
                f"(cap {_m(total_cap)})"
            )
        elif after > self._share:
            others = self._claimed() - st.claim
            if st.exposure > self._share:
                reason = (
                    f"{symbol} exposure {_m(st.exposure)} is already above its fair "
                    f"share {_m(self._share)} of the total cap {_m(total_cap)}"
                )
            elif others + after > total_cap:
                reason = (
                    f"buy of {_m(notional)} would raise {symbol} exposure to "
                    f"{_m(after)}, above its fair share {_m(self._share)} of the total "
                    f"cap {_m(total_cap)}, into room other symbols claim "
                    f"({_m(others)})"
                )
        if reason is None:
            st.reserved += notional
        self._recompute(st)
        return None if reason is None else self._refuse(reason)

    def buy_allowance(self, symbol: str) -> Decimal | None:
        """Open buy notional (cancels under way excluded) ``symbol`` may keep, or ``None``
        when nothing of it needs trimming. Trim the farthest buys first down to it."""
        st = self._symbols.get(symbol)
        if st is None:
            return None
        if self._total - self._cancelling > self.config.max_total_exposure:
            take = self._trim_plan().get(symbol)
        else:
            take = self._own_excess(st)
        if not take:
            return None
        return st.kept - take

    def _own_excess(self, st: _SymbolState) -> Decimal:
        """What a symbol over its own cap must trim (at most what it keeps open)."""
        excess = st.kept_exposure - self.config.max_symbol_exposure
        return min(excess, st.kept) if excess > 0 else ZERO

    def _trim_plan(self) -> dict[str, Decimal]:
        """symbol -> open buy notional to cancel: each symbol's own excess, then the rest of
        the total's excess from the largest exposures first (ties by name)."""
        version, plan = self._plan
        if version == self._version:
            return plan
        plan = {}
        excess = self._total - self._cancelling - self.config.max_total_exposure
        for symbol, st in self._symbols.items():
            own = self._own_excess(st)
            if own:
                plan[symbol] = own
                excess -= own
        if excess > 0:
            ranked = sorted(
                self._symbols.items(),
                key=lambda kv: (-(kv[1].kept_exposure - plan.get(kv[0], ZERO)), kv[0]),
            )
            for symbol, st in ranked:
                planned = plan.get(symbol, ZERO)
                room = st.kept - planned
                if room <= 0:
                    continue
                take = min(room, excess)
                plan[symbol] = planned + take
                excess -= take
                if excess <= 0:
                    break
        self._plan = (self._version, plan)
        return plan

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
