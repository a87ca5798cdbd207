"""The chaos test's invariants as pure functions over what the venue and the store say.

Each check takes plain records (read by :mod:`tests.chaos_harness` from the paper venue's
REST API, its user-data stream and the trader's state store) and returns the
:class:`Violation` s it finds, each naming the invariant, the symbol and the client ids, so a
failure says exactly what is wrong. No I/O here: ``tests/test_chaos_checks.py`` feeds them
hand-made records to show that every check does catch what it is for.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from mm_trio.domain.ids import parse_client_id

ZERO = Decimal(0)

# invariant names (the keys of the summary's counts)
ORPHAN = "orphan"
"""One of our orders open on the venue after the final stop."""
UNMANAGED = "unmanaged"
"""One of our orders open on the venue at an in-between check that the journal does not
explain: not journalled, or journalled as ended."""
DUPLICATE_OPEN = "duplicate-open"
"""Two of our open orders on the same (symbol, level, side) at one check."""
REUSED_ID = "reused-client-id"
"""One client id on two different venue orders."""
LOST_FILL = "lost-fill"
"""A venue trade on one of our orders that the ledger does not have."""
PHANTOM_FILL = "phantom-fill"
"""A ledger fill that the venue has no trade for."""
FILL_MISMATCH = "fill-mismatch"
"""A ledger fill whose order, side, price, quantity or fee differs from the venue's trade."""
DOUBLED_FILL = "doubled-fill"
"""A venue trade listed more than once in the ledger."""
JOURNAL = "journal"
"""After the final stop, the journal's view of an order (``mm-trio orders``) differs from the
venue's: its outcome, its filled quantity, its venue order id, or whether it reached the venue
at all; or the journal still calls an order open."""
INVENTORY = "inventory"
"""A symbol's ledger position differs from the sum over its levels or from the venue's."""
COVERAGE = "coverage"
"""Held lots not covered by open take-profits (or more take-profit than held)."""
CARRIED = "carried"
"""The last process's position at exit differs from the ledger's: lots it did not carry."""
PROCESS = "process"
"""The trader exited on its own, refused to recover, or did not stop cleanly."""
HARNESS = "harness"
"""The harness could not observe something it needs (its own failure, reported as one)."""

INVARIANTS = (
    ORPHAN,
    UNMANAGED,
    DUPLICATE_OPEN,
    REUSED_ID,
    LOST_FILL,
    PHANTOM_FILL,
    FILL_MISMATCH,
    DOUBLED_FILL,
    JOURNAL,
    INVENTORY,
    COVERAGE,
    CARRIED,
    PROCESS,
    HARNESS,
)


@dataclass(frozen=True, slots=True)
class Violation:
    invariant: str
    detail: str

    def __str__(self) -> str:
        return f"[{self.invariant}] {self.detail}"


@dataclass(frozen=True, slots=True)
class VenueOrder:
    """One order as the venue states it (``openOrders``, ``GET /order``, a NEW report)."""

    symbol: str  # unified
    order_id: int
    client_id: str
    side: str
    price: Decimal
    qty: Decimal
    executed: Decimal = ZERO
    status: str = "NEW"

    @property
    def remaining(self) -> Decimal:
        return self.qty - self.executed


@dataclass(frozen=True, slots=True)
class Trade:
    """One fill: a venue trade (``myTrades``) or a ledger row (``mm-trio trades``)."""

    symbol: str
    trade_id: str
    order_id: str
    client_id: str  # "" for a venue trade (myTrades carries no client id)
    side: str
    price: Decimal
    qty: Decimal
    fee: Decimal
    fee_asset: str
    time_ms: int = 0

    @property
    def key(self) -> tuple[str, str]:
        return (self.symbol, self.trade_id)


@dataclass(frozen=True, slots=True)
class JournalIntent:
    rowid: int
    client_id: str
    symbol: str
    level: int
    side: str
    price: Decimal
    qty: Decimal
    generation: int


@dataclass(frozen=True, slots=True)
class JournalOrder:
    """One row of ``mm-trio orders --csv``: the journal's view of one of our orders."""

    symbol: str
    client_id: str
    side: str
    status: str
    reason: str
    filled: Decimal | None  # None: never reported
    order_id: str
    ended: bool  # a terminal event is journalled (the order needs no resolving)


OPEN_STATUSES = frozenset({"NEW", "PARTIALLY_FILLED", "SENT", "PENDING_NEW", "PENDING_CANCEL"})


@dataclass(frozen=True, slots=True)
class SymbolRules:
    """What coverage needs of a symbol's spec."""

    base: str
    step_size: Decimal
    min_qty: Decimal
    min_notional: Decimal


def is_ours(client_id: str, prefix: str) -> bool:
    parsed = parse_client_id(client_id)
    return parsed is not None and parsed.prefix == prefix


def _ids(orders: Iterable[VenueOrder]) -> str:
    return ", ".join(f"{o.client_id} (order {o.order_id})" for o in orders)


# --------------------------------------------------------------------------- open orders


def orphans(open_orders: Iterable[VenueOrder], prefix: str) -> list[Violation]:
    """After the final stop: every one of our orders still open is an orphan."""
    by_symbol: dict[str, list[VenueOrder]] = defaultdict(list)
    for o in open_orders:
        if is_ours(o.client_id, prefix):
            by_symbol[o.symbol].append(o)
    return [
        Violation(ORPHAN, f"{sym}: {len(os_)} of ours open after the final stop: {_ids(os_)}")
        for sym, os_ in sorted(by_symbol.items())
    ]


def unmanaged(
    open_orders: Iterable[VenueOrder],
    intents: Mapping[str, JournalIntent],
    ended: frozenset[str] | set[str],
    prefix: str,
) -> list[Violation]:
    """Every one of our open orders must be journalled and not journalled as ended.

    Read the venue *before* the journal (or with the trader stopped): an intent is written
    before its order is sent, so an order on the venue is in a journal read after it.
    """
    out: list[Violation] = []
    for o in open_orders:
        if not is_ours(o.client_id, prefix):
            continue
        intent = intents.get(o.client_id)
        if intent is None:
            out.append(
                Violation(
                    UNMANAGED,
                    f"{o.symbol} {o.client_id} (order {o.order_id}) "
                    "is open on the venue but not in the journal",
                )
            )
        elif o.client_id in ended:
            out.append(
                Violation(
                    UNMANAGED,
                    f"{o.symbol} {o.client_id} (order {o.order_id}) "
                    "is open on the venue but the journal says it ended",
                )
            )
        elif (intent.symbol, intent.side) != (o.symbol, o.side) or (
            intent.price,
            intent.qty,
        ) != (o.price, o.qty):
            out.append(
                Violation(
                    UNMANAGED,
                    f"{o.symbol} {o.client_id} (order {o.order_id}): "
                    f"the venue has {o.side} {o.qty} @ {o.price}, the journal "
                    f"{intent.symbol} {intent.side} {intent.qty} @ {intent.price}",
                )
            )
    return out


def duplicate_open(open_orders: Iterable[VenueOrder], prefix: str) -> list[Violation]:
    """At most one of our open orders per (symbol, level, side) (SPEC §4 invariant 1)."""
    slots: dict[tuple[str, int, str], list[VenueOrder]] = defaultdict(list)
    for o in open_orders:
        parsed = parse_client_id(o.client_id)
        if parsed is not None and parsed.prefix == prefix:
            slots[(o.symbol, parsed.level, parsed.side)].append(o)
    return [
        Violation(
            DUPLICATE_OPEN,
            f"{sym} level {level} {side}: {len(os_)} open orders: {_ids(os_)}",
        )
        for (sym, level, side), os_ in sorted(slots.items())
        if len(os_) > 1
    ]


def reused_client_ids(orders: Iterable[VenueOrder], prefix: str) -> list[Violation]:
    """No client id on two different venue orders (compared over the whole run)."""
    by_cid: dict[str, dict[int, VenueOrder]] = defaultdict(dict)
    for o in orders:
        if is_ours(o.client_id, prefix):
            by_cid[o.client_id][o.order_id] = o
    return [
        Violation(
            REUSED_ID,
            f"{cid} names {len(os_)} venue orders: "
            + ", ".join(
                f"{o.order_id} ({o.symbol} {o.side} {o.qty} @ {o.price})"
                for o in sorted(os_.values(), key=lambda o: o.order_id)
            ),
        )
        for cid, os_ in sorted(by_cid.items())
        if len(os_) > 1
    ]


def journal_differences(
    venue_orders: Iterable[VenueOrder], journal: Sequence[JournalOrder], prefix: str
) -> list[Violation]:
    """After the final stop the journal and the venue tell the same story of every order.

    Each venue order of ours is in the journal with the venue's final status, filled quantity
    and order id; a journalled order the venue never had is one the journal says never reached
    it: no venue order id, nothing filled (never sent, withdrawn before it was sent, rejected,
    ended by recovery); no journalled order is still open. At most one finding per order.
    """
    out: list[Violation] = []
    rows = {r.client_id: r for r in journal}
    by_cid = {o.client_id: o for o in venue_orders if is_ours(o.client_id, prefix)}
    for cid in sorted(set(rows) | set(by_cid)):
        o, r = by_cid.get(cid), rows.get(cid)
        if r is None:
            assert o is not None
            out.append(
                Violation(
                    JOURNAL,
                    f"{o.symbol} {cid} (order {o.order_id}, {o.status}) is on the venue but not "
                    "in the journal",
                )
            )
            continue
        venue = "the venue never had it" if o is None else f"the venue says {o.status}"
        if r.status in OPEN_STATUSES:
            if r.ended:
                why = (
                    f"the journal ended it but its last report says {r.status} (a report "
                    "written after the one that ended it; `mm-trio orders` shows that)"
                )
            else:
                why = f"still {r.status} (open) in the journal after the final stop"
            out.append(Violation(JOURNAL, f"{r.symbol} {cid}: {why}; {venue}"))
        elif o is None:
            # never on the venue (never sent, withdrawn, rejected): the journal may say so in
            # any terminal status, but must not name a venue order or a fill
            if r.order_id or (r.filled or ZERO) > 0:
                out.append(
                    Violation(
                        JOURNAL,
                        f"{r.symbol} {cid}: the journal says {r.status} (order "
                        f"{r.order_id or '-'}, filled {r.filled}) but the venue never had "
                        "such an order",
                    )
                )
        elif (o.status, o.executed, str(o.order_id)) != (r.status, r.filled, r.order_id):
            out.append(
                Violation(
                    JOURNAL,
                    f"{o.symbol} {cid}: the venue says (status, filled, order id) = "
                    f"{_fmt((o.status, o.executed, o.order_id))}, the journal "
                    f"{_fmt((r.status, r.filled, r.order_id))}"
                    + (f" ({r.reason})" if r.reason else ""),
                )
            )
    return out


# --------------------------------------------------------------------------- fills


def fill_differences(
    venue_trades: Iterable[Trade],
    ledger: Sequence[Trade],
    client_of_order: Mapping[int, str],
    *,
    describe: Mapping[tuple[str, str], str] | None = None,
) -> list[Violation]:
    """Every venue trade on our orders is in the ledger exactly once, with the same facts.

    ``venue_trades`` are the venue's trades on our orders; ``client_of_order`` maps a venue
    order id to its client id; ``describe`` may add context to a lost fill (e.g. "while the
    trader was down").
    """
    out: list[Violation] = []
    counts = Counter(f.key for f in ledger)
    for key, n in sorted(counts.items()):
        if n > 1:
            out.append(
                Violation(DOUBLED_FILL, f"{key[0]} trade {key[1]} is {n} times in the ledger")
            )
    in_ledger = {f.key: f for f in ledger}
    venue = {t.key: t for t in venue_trades}
    for key, t in sorted(venue.items(), key=lambda kv: (kv[0][0], _num(kv[0][1]))):
        cid = client_of_order.get(int(t.order_id), "?")
        f = in_ledger.get(key)
        if f is None:
            extra = (describe or {}).get(key, "")
            out.append(
                Violation(
                    LOST_FILL,
                    f"{t.symbol} trade {t.trade_id} on {cid} (order {t.order_id}): "
                    f"{t.side} {t.qty} @ {t.price} is not in the ledger"
                    + (f" ({extra})" if extra else ""),
                )
            )
            continue
        theirs = (str(t.order_id), cid, t.side, t.price, t.qty, t.fee, t.fee_asset)
        ours = (str(f.order_id), f.client_id, f.side, f.price, f.qty, f.fee, f.fee_asset)
        if theirs != ours:
            out.append(
                Violation(
                    FILL_MISMATCH,
                    f"{t.symbol} trade {t.trade_id}: venue (order, client id, side, price, "
                    f"qty, fee, asset) = {_fmt(theirs)}, ledger {_fmt(ours)}",
                )
            )
    for key, f in sorted(in_ledger.items(), key=lambda kv: (kv[0][0], _num(kv[0][1]))):
        if key not in venue:
            out.append(
                Violation(
                    PHANTOM_FILL,
                    f"{f.symbol} trade {f.trade_id} on {f.client_id}: {f.side} {f.qty} @ "
                    f"{f.price} is in the ledger but the venue has no such trade of ours",
                )
            )
    return out


def _num(text: str) -> tuple[int, str]:
    return (int(text), "") if text.isdigit() else (0, text)


def _fmt(values: tuple[object, ...]) -> str:
    return "(" + ", ".join(str(v) for v in values) + ")"


def net_position(fills: Iterable[Trade], base: str) -> Decimal:
    """Σ bought − Σ sold − the fees charged in the base asset (exact)."""
    total = ZERO
    for f in fills:
        total += f.qty if f.side == "BUY" else -f.qty
        if f.fee_asset == base:
            total -= f.fee
    return total


def inventory(
    symbol: str,
    ledger: Sequence[Trade],
    levels: Mapping[int, Decimal],
    venue_trades: Sequence[Trade],
    base: str,
) -> list[Violation]:
    """The ledger's position equals the sum over the symbol's levels and the venue's.

    The levels (``StateStore.level_inventory``) sum quantities without fees, so they are
    compared with the ledger's Σ bought − Σ sold; the venue's position (its trades on our
    orders) with the ledger's position after base-asset fees.
    """
    out: list[Violation] = []
    gross = sum((f.qty if f.side == "BUY" else -f.qty for f in ledger), ZERO)
    by_levels = sum(levels.values(), ZERO)
    if gross != by_levels:
        out.append(
            Violation(
                INVENTORY,
                f"{symbol}: ledger Σ bought − Σ sold = {gross} but the levels sum to "
                f"{by_levels} ({dict(sorted(levels.items()))})",
            )
        )
    mine, theirs = net_position(ledger, base), net_position(venue_trades, base)
    if mine != theirs:
        out.append(
            Violation(
                INVENTORY,
                f"{symbol}: the ledger's position is {mine}, the venue's trades on our orders "
                f"give {theirs}",
            )
        )
    return out


# --------------------------------------------------------------------------- coverage


@dataclass(slots=True)
class Coverage:
    """Held base against take-profits at one frozen instant (see :func:`coverage`)."""

    symbol: str
    held: Decimal  # the venue's position from its trades on our orders
    open_tp: Decimal  # remaining quantity of our open sells on the venue
    in_flight: Decimal  # sells this process journalled that the venue has not seen yet
    unprocessed_buys: Decimal  # venue buys on our orders not yet in the ledger
    allowance: Decimal  # step rounding per held level + lots too small to sell
    levels: dict[int, Decimal] = field(default_factory=dict)

    @property
    def gap(self) -> Decimal:
        return self.held - self.open_tp - self.in_flight - self.unprocessed_buys

    @property
    def ok(self) -> bool:
        return ZERO <= self.gap <= self.allowance

    def describe(self) -> str:
        return (
            f"{self.symbol}: held {self.held} − open take-profits {self.open_tp} − in flight "
            f"{self.in_flight} − buys not yet in the ledger {self.unprocessed_buys} = gap "
            f"{self.gap}, allowed 0..{self.allowance} (levels {dict(sorted(self.levels.items()))})"
        )


def coverage(
    symbol: str,
    rules: SymbolRules,
    *,
    venue_trades: Sequence[Trade],
    ledger_keys: set[tuple[str, str]] | frozenset[tuple[str, str]],
    open_orders: Sequence[VenueOrder],
    in_flight_sells: Sequence[JournalIntent],
    levels: Mapping[int, Decimal],
    mid: Decimal,
    prefix: str,
) -> Coverage:
    """How well the held lots are covered by take-profit sells, at one frozen instant.

    Taken with the trader stopped (SIGSTOP), against the venue's own records:

    * ``held`` = the venue's position from its trades on our orders (base fees subtracted);
    * ``open_tp`` = Σ remaining quantity of our open SELL orders on the venue;
    * a lot may be uncovered for a reason the trader cannot help at that instant: its
      take-profit is journalled by this process but not yet on the venue (``in_flight``:
      open SELL intents of this process whose client id the venue does not have open), or its
      buy fill has not reached the trader yet (``unprocessed_buys``: venue BUY trades on our
      orders whose trade id the ledger does not have);
    * ``allowance``: per held level, one step of quantity (a take-profit quantity is rounded
      down to the step), and the whole of any level holding less than the symbol's minimum
      quantity or notional at ``mid`` (dust that cannot be sold, SPEC §4).

    ``gap = held − open_tp − in_flight − unprocessed_buys`` must lie in ``[0, allowance]``:
    below 0 the take-profits sell more than is held (long mode never does); above, some lot
    has no take-profit.
    """
    ours = [o for o in open_orders if o.symbol == symbol and is_ours(o.client_id, prefix)]
    open_ids = {o.client_id for o in ours}
    held = net_position(venue_trades, rules.base)
    open_tp = sum((o.remaining for o in ours if o.side == "SELL"), ZERO)
    in_flight = sum(
        (i.qty for i in in_flight_sells if i.symbol == symbol and i.client_id not in open_ids),
        ZERO,
    )
    unprocessed = sum(
        (t.qty for t in venue_trades if t.side == "BUY" and t.key not in ledger_keys), ZERO
    )
    allowance = ZERO
    for qty in levels.values():
        if qty <= 0:
            continue
        if qty < rules.min_qty or qty * mid < rules.min_notional:
            allowance += qty
        else:
            allowance += rules.step_size
    return Coverage(symbol, held, open_tp, in_flight, unprocessed, allowance, dict(levels))


# --------------------------------------------------------------------------- summary


@dataclass(slots=True)
class ChaosCounts:
    """The numbers of one chaos run (the summary line)."""

    seed: int
    kills: Counter[str] = field(default_factory=Counter)
    orders_placed: int = 0
    fills_checked: int = 0
    checks: int = 0
    violations: list[Violation] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def found(self, invariant: str) -> int:
        return sum(1 for v in self.violations if v.invariant == invariant)

    def digest(self, examples: int) -> str:
        """The violations grouped by invariant: the count, then the first ``examples``."""
        lines = []
        for name in INVARIANTS:
            found = [v for v in self.violations if v.invariant == name]
            if found:
                lines.append(f"{name}: {len(found)}")
                lines.extend(f"  {v.detail}" for v in found[:examples])
                if len(found) > examples:
                    lines.append(f"  ... and {len(found) - examples} more")
        return "\n".join(lines)

    def summary_line(self) -> str:
        kinds = ", ".join(f"{k} {n}" for k, n in sorted(self.kills.items()))
        found = " ".join(f"{name}={self.found(name)}" for name in INVARIANTS)
        return (
            f"chaos: seed={self.seed} kills={sum(self.kills.values())} ({kinds}); "
            f"orders placed={self.orders_placed} fills checked={self.fills_checked} "
            f"in-between checks={self.checks}; found: {found}"
        )
