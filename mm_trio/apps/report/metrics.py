"""The report's metrics: pure functions of a run's equity samples, fills and orders.

No I/O, no clock: the loaders (:mod:`mm_trio.apps.report.load`) turn a replay directory or a
state store into :class:`Sample`, :class:`FillRec` and :class:`OrderRec` lists, and
everything here is computed from those. Money is ``Decimal`` (exact sums); ratios are
``float``.

Definitions
-----------
* **Equity** is the PnL curve ``realized + unrealized - fees`` (quote), sampled every
  ``interval_s`` seconds (a replay's ``replay.equity_interval``, 1 s by default). Its start
  value is 0: nothing traded, nothing earned.
* **Sharpe** = ``mean(d) / stdev(d) * sqrt(SECONDS_PER_YEAR / interval_s)`` where ``d`` are
  the equity's changes from one sample to the next and ``stdev`` is the sample standard
  deviation (n - 1). It is annualised over a 365-day year of trading every second (crypto
  venues never close), with no risk-free rate. The changes are in quote, not in percent:
  the ratio is the same for returns on any fixed capital.
* **Sortino** = ``mean(d) / downside(d) * sqrt(SECONDS_PER_YEAR / interval_s)`` with
  ``downside(d) = sqrt(sum(min(x, 0)^2) / n)`` (target 0, all n changes counted).
* **Drawdown** at a sample = the highest equity so far (0 before the first sample) minus
  the equity; **max drawdown** is its largest value (quote, >= 0).
* **Capital used** = the largest governor exposure seen (``|position| x mid + open buy
  notional``); **return on capital** = net PnL / capital used.
* **Round trip**: fills are matched FIFO per (symbol, grid slot level) -- the level in our
  client id; a take-profit carries its buy's level -- as in
  :class:`mm_trio.core.position.PositionManager`. A fill that reduces the level's open lot
  is *closing*; one that opens or adds to it is *opening*. Each closing order (client id)
  is one round trip; its profit is ``(exit - entry) x matched qty`` (reversed for a short
  lot) minus the closing fills' fees and the opening fills' fees pro rata to the matched
  quantity.
* **Fill rate** = opening orders with at least one fill / opening orders placed.
* **Turnover** = sum of ``price x qty`` over all fills (quote).
* **Times** (halted, reduce-only, holding inventory) weight each sample by the time to the
  next one: a state seen at sample ``i`` lasted ``ts[i+1] - ts[i]``.
"""

from __future__ import annotations

import math
from collections import Counter, deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from mm_trio.domain.ids import parse_client_id
from mm_trio.domain.model import ZERO, Side

SECONDS_PER_YEAR = 365 * 24 * 3600
"""Annualisation base: a crypto venue trades every second of a 365-day year."""
NS_PER_S = 1_000_000_000
HALTED_STATES = frozenset({"HALTED", "STOPPED", "FAILED", "KILLED"})
"""Lifecycle states in which a symbol places no opening order (KILLED: the total's, while
the kill switch is on)."""
UNCLASSIFIED_REJECT = "unknown"


@dataclass(frozen=True, slots=True)
class Sample:
    """One equity sample of one symbol (or of the total: ``position`` then unused)."""

    ts_ns: int
    total: Decimal
    realized: Decimal = ZERO
    unrealized: Decimal = ZERO
    fees: Decimal = ZERO
    mid: Decimal | None = None
    position: Decimal = ZERO
    exposure: Decimal | None = None
    state: str = ""
    reduce_only: bool = False
    breakers: str = ""


@dataclass(frozen=True, slots=True)
class FillRec:
    ts_ns: int
    symbol: str
    side: Side
    price: Decimal
    qty: Decimal
    fee: Decimal
    fee_asset: str
    client_id: str
    trade_id: str = ""


@dataclass(frozen=True, slots=True)
class OrderRec:
    """An order we sent: placed at ``ts_ns``, ended at ``end_ns`` (``None``: still live at the
    end of the data)."""

    ts_ns: int
    symbol: str
    client_id: str
    side: Side
    price: Decimal
    qty: Decimal
    opening: bool
    end_ns: int | None = None
    status: str = ""


@dataclass(frozen=True, slots=True)
class RoundTrip:
    symbol: str
    level: int | None
    client_id: str  # the closing order
    qty: Decimal
    gross: Decimal
    fees: Decimal
    open_ns: int
    close_ns: int

    @property
    def net(self) -> Decimal:
        return self.gross - self.fees


# --------------------------------------------------------------------------- equity


def changes(values: Sequence[Decimal]) -> list[float]:
    return [float(b - a) for a, b in zip(values, values[1:], strict=False)]


def annualisation(interval_s: float) -> float:
    return math.sqrt(SECONDS_PER_YEAR / interval_s)


def sharpe(values: Sequence[Decimal], interval_s: float) -> float | None:
    """Annualised Sharpe ratio of an equity curve (see the module docstring); ``None`` with
    fewer than two changes or when the curve never varies."""
    d = changes(values)
    if len(d) < 2 or interval_s <= 0:
        return None
    mean = sum(d) / len(d)
    var = sum((x - mean) ** 2 for x in d) / (len(d) - 1)
    if var <= 0:
        return None
    return mean / math.sqrt(var) * annualisation(interval_s)


def sortino(values: Sequence[Decimal], interval_s: float) -> float | None:
    """Annualised Sortino ratio (target 0); ``None`` when the curve never falls."""
    d = changes(values)
    if not d or interval_s <= 0:
        return None
    downside = math.sqrt(sum(min(x, 0.0) ** 2 for x in d) / len(d))
    if downside == 0:
        return None
    return sum(d) / len(d) / downside * annualisation(interval_s)


def drawdowns(values: Sequence[Decimal], start: Decimal = ZERO) -> list[Decimal]:
    """Peak so far (``start`` before the first value) minus each value."""
    peak = start
    out = []
    for v in values:
        peak = max(peak, v)
        out.append(peak - v)
    return out


def max_drawdown(values: Sequence[Decimal]) -> Decimal:
    return max(drawdowns(values), default=ZERO)


def durations(samples: Sequence[Sample], holds: Callable[[Sample], bool]) -> float:
    """Seconds during which ``holds`` was true, each sample lasting until the next one."""
    total = 0
    for a, b in zip(samples, samples[1:], strict=False):
        if holds(a):
            total += b.ts_ns - a.ts_ns
    return total / NS_PER_S


def sampling_interval(samples: Sequence[Sample]) -> float:
    """The median time between samples, in seconds (0 with fewer than two)."""
    gaps = sorted(b.ts_ns - a.ts_ns for a, b in zip(samples, samples[1:], strict=False))
    return gaps[len(gaps) // 2] / NS_PER_S if gaps else 0.0


# --------------------------------------------------------------------------- fills


def quote_fee(fill: FillRec) -> Decimal:
    """The fill's fee in the quote asset (a base-asset fee valued at the fill price)."""
    base, _, quote = fill.symbol.partition("/")
    if fill.fee_asset in ("", quote):
        return fill.fee
    if fill.fee_asset == base:
        return fill.fee * fill.price
    return ZERO  # a third asset (e.g. BNB): no price for it here


def turnover(fills: Iterable[FillRec]) -> Decimal:
    return sum((f.price * f.qty for f in fills), ZERO)


def fill_level(client_id: str) -> int | None:
    parsed = parse_client_id(client_id)
    return None if parsed is None else parsed.level


@dataclass(slots=True)
class _Lot:
    qty: Decimal  # signed, remaining
    price: Decimal
    fee_per_qty: Decimal
    ts_ns: int


@dataclass(slots=True)
class _Closing:
    symbol: str
    level: int | None
    qty: Decimal = ZERO
    gross: Decimal = ZERO
    fees: Decimal = ZERO
    open_ns: int = 0
    close_ns: int = 0


@dataclass(slots=True)
class Matched:
    """:func:`match_fills`' result: the round trips and, per fill, whether it was opening."""

    round_trips: list[RoundTrip] = field(default_factory=list)
    opening: list[bool] = field(default_factory=list)


def match_fills(fills: Sequence[FillRec]) -> Matched:
    """Match fills FIFO per (symbol, level) into round trips (module docstring)."""
    lots: dict[tuple[str, int | None], deque[_Lot]] = {}
    closing: dict[str, _Closing] = {}
    out = Matched()
    for f in sorted(fills, key=lambda f: f.ts_ns):
        level = fill_level(f.client_id)
        queue = lots.setdefault((f.symbol, level), deque())
        signed = f.qty if f.side == "BUY" else -f.qty
        fee_per_qty = quote_fee(f) / f.qty if f.qty else ZERO
        closes = bool(queue) and (queue[0].qty > 0) != (signed > 0)
        out.opening.append(not closes)
        remaining = signed
        while remaining and queue and (queue[0].qty > 0) != (remaining > 0):
            lot = queue[0]
            qty = min(abs(remaining), abs(lot.qty))
            trip = closing.get(f.client_id)
            if trip is None:
                trip = closing[f.client_id] = _Closing(f.symbol, level, open_ns=lot.ts_ns)
            direction = 1 if lot.qty > 0 else -1
            trip.qty += qty
            trip.gross += (f.price - lot.price) * qty * direction
            trip.fees += (lot.fee_per_qty + fee_per_qty) * qty
            trip.close_ns = f.ts_ns
            lot.qty -= qty * direction
            remaining += qty * direction
            if not lot.qty:
                queue.popleft()
        if remaining:
            queue.append(_Lot(remaining, f.price, fee_per_qty, f.ts_ns))
    out.round_trips = [
        RoundTrip(t.symbol, t.level, cid, t.qty, t.gross, t.fees, t.open_ns, t.close_ns)
        for cid, t in closing.items()
    ]
    return out


def round_trips_per_level(trips: Iterable[RoundTrip]) -> dict[int | None, int]:
    counts = Counter(t.level for t in trips)
    return dict(sorted(counts.items(), key=lambda kv: (kv[0] is None, kv[0] or 0)))


def fill_rate(orders: Iterable[OrderRec], fills: Iterable[FillRec]) -> float | None:
    """Opening orders with a fill / opening orders placed (``None`` if none was placed)."""
    filled = {f.client_id for f in fills}
    opening = [o.client_id for o in orders if o.opening]
    if not opening:
        return None
    return sum(1 for cid in opening if cid in filled) / len(opening)


def reject_class(reason: str) -> str:
    """``"filter: PRICE_FILTER ..."`` -> ``"filter"`` (the classified kind before ``:``)."""
    head, sep, _ = reason.partition(":")
    head = head.strip()
    return head if sep and head and " " not in head else UNCLASSIFIED_REJECT


def rejects_by_class(reasons: Iterable[str]) -> dict[str, int]:
    return dict(sorted(Counter(reject_class(r) for r in reasons).items()))


# --------------------------------------------------------------------------- inventory


@dataclass(frozen=True, slots=True)
class Inventory:
    max_qty: Decimal | None  # base; None for a total over several bases
    max_value: Decimal  # quote, |position| x mid at its largest
    time_at_max_s: float
    time_holding_s: float


def inventory(samples: Sequence[Sample]) -> Inventory:
    """Largest inventory (by base quantity) and its value, the time spent at it, and the
    time any inventory was held."""
    if not samples:
        return Inventory(ZERO, ZERO, 0.0, 0.0)
    peak = max(abs(s.position) for s in samples)
    value = max((abs(s.position) * s.mid for s in samples if s.mid is not None), default=ZERO)
    at_max = durations(samples, lambda s: peak > 0 and abs(s.position) == peak)
    holding = durations(samples, lambda s: s.position != 0)
    return Inventory(peak, value, at_max, holding)


def inventory_value_total(per_symbol: Iterable[Sequence[Sample]]) -> list[Sample]:
    """Per timestamp, Σ |position| x mid over symbols, as ``position`` of a total sample
    whose ``mid`` is 1 (so :func:`inventory` gives the quote value)."""
    totals: dict[int, Decimal] = {}
    for samples in per_symbol:
        for s in samples:
            value = abs(s.position) * s.mid if s.mid is not None else ZERO
            totals[s.ts_ns] = totals.get(s.ts_ns, ZERO) + value
    return [Sample(ts, ZERO, position=v, mid=Decimal(1)) for ts, v in sorted(totals.items())]


# --------------------------------------------------------------------------- summary


@dataclass(frozen=True, slots=True)
class Metrics:
    net_pnl: Decimal
    realized_pnl: Decimal
    unrealized_pnl: Decimal
    fees: Decimal
    capital_used: Decimal | None
    return_on_capital: float | None
    max_drawdown: Decimal
    pnl_per_drawdown: float | None
    sharpe: float | None
    sortino: float | None
    interval_s: float
    duration_s: float
    round_trips: int
    round_trips_per_level: dict[int | None, int]
    avg_round_trip_net: Decimal | None
    fills: int
    opening_orders: int
    fill_rate: float | None
    turnover: Decimal
    max_inventory: Decimal | None
    max_inventory_value: Decimal
    time_at_max_inventory_s: float | None  # None for a total over several bases
    time_holding_s: float
    time_halted_s: float
    time_reduce_only_s: float
    breaker_trips: int
    rejects: dict[str, int]


def pnl_per_drawdown(net: Decimal, dd: Decimal) -> float | None:
    """Net PnL over max drawdown (return over max drawdown); ``None`` without a drawdown."""
    return float(net / dd) if dd > 0 else None


def metrics(
    samples: Sequence[Sample],
    fills: Sequence[FillRec],
    orders: Sequence[OrderRec],
    *,
    reject_reasons: Iterable[str] = (),
    breaker_trips: int = 0,
    inventory_samples: Sequence[Sample] | None = None,
    per_base: bool = True,
) -> Metrics:
    """The metrics of one symbol, or of a total (``inventory_samples`` from
    :func:`inventory_value_total`, ``per_base`` false)."""
    equity = [s.total for s in samples]
    last = samples[-1] if samples else Sample(0, ZERO)
    interval = sampling_interval(samples)
    exposures = [s.exposure for s in samples if s.exposure is not None]
    capital = max(exposures) if exposures else None
    dd = max_drawdown(equity)
    trips = match_fills(fills).round_trips
    inv = inventory(samples if inventory_samples is None else inventory_samples)
    net = last.total
    return Metrics(
        net_pnl=net,
        realized_pnl=last.realized,
        unrealized_pnl=last.unrealized,
        fees=last.fees,
        capital_used=capital,
        return_on_capital=float(net / capital) if capital else None,
        max_drawdown=dd,
        pnl_per_drawdown=pnl_per_drawdown(net, dd),
        sharpe=sharpe(equity, interval),
        sortino=sortino(equity, interval),
        interval_s=interval,
        duration_s=(samples[-1].ts_ns - samples[0].ts_ns) / NS_PER_S if samples else 0.0,
        round_trips=len(trips),
        round_trips_per_level=round_trips_per_level(trips),
        avg_round_trip_net=sum((t.net for t in trips), ZERO) / len(trips) if trips else None,
        fills=len(fills),
        opening_orders=sum(1 for o in orders if o.opening),
        fill_rate=fill_rate(orders, fills),
        turnover=turnover(fills),
        max_inventory=inv.max_qty if per_base else None,
        max_inventory_value=inv.max_value,
        time_at_max_inventory_s=inv.time_at_max_s if per_base else None,
        time_holding_s=inv.time_holding_s,
        time_halted_s=durations(samples, lambda s: s.state in HALTED_STATES),
        time_reduce_only_s=durations(samples, lambda s: s.reduce_only),
        breaker_trips=breaker_trips,
        rejects=rejects_by_class(reject_reasons),
    )
