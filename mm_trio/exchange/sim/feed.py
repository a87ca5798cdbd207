"""Pure, seeded synthetic market data for the simulated venue (SPEC §7).

Per symbol an independent ``random.Random`` is seeded from ``blake2b(seed, symbol)`` (stable
across processes, unlike ``hash()``), so adding or removing one symbol never changes another
symbol's path. Every ``tick_interval_ms`` (on a global grid of multiples of the interval) each
symbol emits one :class:`Quote` and a Poisson number of :class:`Trade` s:

* the mid follows a geometric random walk with ``volatility`` relative vol per sqrt-second
  (plus ``drift`` per second, which also moves the mean-reversion centre) and
  a mild mean reversion (time constant :data:`MEAN_REVERSION_S`) to the start price;
* the spread is 1-3 ticks; top-of-book quantities are log-normal around
  :data:`TOP_NOTIONAL_MIN_NOTIONALS` × the symbol's min notional;
* trades arrive at :data:`TRADE_RATE_PER_S` per second on average, on a random side (a sell
  aggressor prints at the bid with ``buyer_maker=True``), smaller than the displayed size.

No trio, no clock reads: :meth:`SyntheticFeed.advance` is given the time to advance to.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Mapping
from decimal import Decimal

from mm_trio.domain.config import SimVenueConfig
from mm_trio.domain.model import Event, Quote, SymbolSpec, Trade

MEAN_REVERSION_S = 3600.0
"""Time constant (seconds) of the pull of the mid back to its start price."""
TRADE_RATE_PER_S = 3.0
"""Average public trades per second per symbol."""
TOP_NOTIONAL_MIN_NOTIONALS = 2000.0
"""Typical top-of-book size, in multiples of the min notional (10000 USDT for USDT pairs)."""
_DEFAULT_TOP_STEPS = 1000.0  # typical top size in steps when a symbol has no min notional


def symbol_seed(seed: int, symbol: str) -> int:
    """A stable 64-bit seed for ``symbol`` derived from the venue ``seed``."""
    digest = hashlib.blake2b(f"{seed}/{symbol}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


class _SymState:
    """Random-walk state of one symbol."""

    __slots__ = (
        "symbol",
        "rng",
        "start",
        "x",
        "center",
        "tick",
        "tick_f",
        "step",
        "mu_top",
        "mu_trade",
        "trade_id",
    )

    def __init__(self, symbol: str, seed: int, start: float, spec: SymbolSpec) -> None:
        self.symbol = symbol
        self.rng = random.Random(symbol_seed(seed, symbol))
        self.start = start
        self.x = 0.0  # log(mid / start)
        self.center = 0.0  # where mean reversion pulls x; moves with the configured drift
        self.tick = spec.tick_size
        self.tick_f = float(spec.tick_size)
        self.step = spec.step_size
        step_f = float(spec.step_size)
        if spec.min_notional > 0:
            top_steps = TOP_NOTIONAL_MIN_NOTIONALS * float(spec.min_notional) / start / step_f
        else:
            top_steps = _DEFAULT_TOP_STEPS
        self.mu_top = math.log(max(top_steps, 1.0))
        self.mu_trade = self.mu_top - 2.0
        self.trade_id = 0


class SyntheticFeed:
    """Deterministic synthetic quotes and trades for any number of symbols.

    ``specs`` maps symbol → spec; it is read when a symbol is added (a live mapping such as the
    matching engine's registry is fine).
    """

    def __init__(self, config: SimVenueConfig, specs: Mapping[str, SymbolSpec]) -> None:
        self.seed = config.seed
        self.specs = specs
        self.interval_ns = max(1, round(config.tick_interval_ms * 1_000_000))
        dt = self.interval_ns / 1e9
        self._sigma = float(config.volatility) * math.sqrt(dt)
        self._revert = min(1.0, dt / MEAN_REVERSION_S)
        self._drift = float(config.drift) * dt  # log-drift per tick
        self._poisson_l = math.exp(-TRADE_RATE_PER_S * dt)
        self._symbols: dict[str, _SymState] = {}
        self._next_ts: int | None = None  # next grid time to emit

    @property
    def symbols(self) -> list[str]:
        return list(self._symbols)

    def add(self, symbol: str, start_price: Decimal | float) -> None:
        """Start generating ``symbol`` around ``start_price`` from the next tick (idempotent)."""
        if symbol in self._symbols:
            return
        spec = self.specs.get(symbol)
        if spec is None:
            raise KeyError(f"no spec for symbol {symbol!r}")
        start = float(start_price)
        if not start > 0:
            raise ValueError(f"start price of {symbol} must be > 0, got {start_price}")
        self._symbols[symbol] = _SymState(symbol, self.seed, start, spec)

    def remove(self, symbol: str) -> None:
        """Stop generating ``symbol`` (idempotent)."""
        self._symbols.pop(symbol, None)

    def advance(self, to_ts: int) -> list[Event]:
        """Every event with ``last < ts <= to_ts``, in time order, symbols in the order added.

        The first call emits only the grid tick at or before ``to_ts``.
        """
        interval = self.interval_ns
        nxt = self._next_ts
        if nxt is None:
            nxt = to_ts - to_ts % interval
        if nxt > to_ts:
            self._next_ts = nxt
            return []
        out: list[Event] = []
        states = list(self._symbols.values())
        if not states:
            self._next_ts = to_ts - to_ts % interval + interval
            return out
        while nxt <= to_ts:
            for st in states:
                self._tick(st, nxt, out)
            nxt += interval
        self._next_ts = nxt
        return out

    def mid(self, symbol: str) -> float:
        """Current model mid of ``symbol`` (for summaries)."""
        st = self._symbols[symbol]
        return st.start * math.exp(st.x)

    def _tick(self, st: _SymState, ts: int, out: list[Event]) -> None:
        rng = st.rng
        st.center += self._drift
        st.x += self._drift + self._sigma * rng.gauss(0.0, 1.0) - self._revert * (st.x - st.center)
        mid_ticks = st.start * math.exp(st.x) / st.tick_f
        u = rng.random()
        spread = 1 if u < 0.6 else (2 if u < 0.9 else 3)
        bid_t = math.floor(mid_ticks - spread / 2.0 + 0.5)
        if bid_t < 1:
            bid_t = 1
        ask_t = bid_t + spread
        bid_q = max(1, int(rng.lognormvariate(st.mu_top, 0.8)))
        ask_q = max(1, int(rng.lognormvariate(st.mu_top, 0.8)))
        tick, step, symbol = st.tick, st.step, st.symbol
        bid = tick * bid_t
        ask = tick * ask_t
        out.append(
            Quote(
                symbol=symbol, bid=bid, bid_qty=step * bid_q, ask=ask, ask_qty=step * ask_q, ts=ts
            )
        )
        # Poisson number of trades (Knuth), almost always 0 or 1
        limit = self._poisson_l
        p = rng.random()
        while p > limit:
            seller = rng.random() < 0.5
            top = bid_q if seller else ask_q
            size = int(rng.lognormvariate(st.mu_trade, 1.0))
            size = 1 if size < 1 else (top if size > top else size)
            st.trade_id += 1
            out.append(
                Trade(
                    symbol=symbol,
                    price=bid if seller else ask,
                    qty=step * size,
                    buyer_maker=seller,
                    trade_id=st.trade_id,
                    ts=ts,
                )
            )
            p *= rng.random()
