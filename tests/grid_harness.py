"""A small, deterministic venue model that drives :class:`GridStrategy` for property tests.

It generates a random (seeded) price path, acknowledges or rejects places (post-only
crossers are rejected, non-post-only crossers fill as taker), fills resting orders partially
or fully when the market trades through them, cancels (a cancel that arrives after the order
filled is a no-op: the fill report wins) and delivers execution reports late, reordered and
duplicated. Gates and stop/resume are toggled at random. After every call into the strategy
the registered ``checks`` run with the :class:`Run` and the intents the call returned.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal

from hypothesis import strategies as st

from mm_trio.core.grid import GridStrategy
from mm_trio.domain.config import GridConfig
from mm_trio.domain.ids import parse_client_id
from mm_trio.domain.intents import CancelOrder, Intent, PlaceOrder
from mm_trio.domain.model import OrderUpdate, Quote, SymbolSpec, floor_to

D = Decimal
ZERO = Decimal(0)
SYMBOL = "ABC/USDT"


@dataclass(frozen=True)
class Scenario:
    spec: SymbolSpec
    config: GridConfig
    start_position: Decimal
    start_mid_ticks: int
    seed: int
    steps: int
    fee_mode: str  # none | base_on_buy | quote | other
    reject_prob: float
    dup_prob: float
    vol_ticks: int  # typical per-step move of the mid, in ticks


# price scale -> tick sizes that make sense there
_SCALES = {
    D("100"): [D("0.01"), D("0.1"), D("0.5")],
    D("2.5"): [D("0.0001"), D("0.001")],
    D("30000"): [D("0.01"), D("1")],
}


@st.composite
def scenarios(draw: st.DrawFn, *, mode: str | None = None, steps: int = 200) -> Scenario:
    price0 = draw(st.sampled_from(sorted(_SCALES)))
    tick = draw(st.sampled_from(_SCALES[price0]))
    step_size = draw(st.sampled_from([D("0.0001"), D("0.001"), D("0.01"), D("1")]))
    spacing = draw(st.sampled_from(["arithmetic", "geometric"]))
    m = draw(st.sampled_from([1, 2, 3, 5, 10]))
    if spacing == "arithmetic":
        frac = draw(st.sampled_from([D(1), D(1), D("1.5")]))
        gstep = tick * m * frac
    else:
        raw = m * tick / price0
        gstep = (raw * D("1.2")).quantize(D("1e-9"), rounding="ROUND_CEILING")
    min_qty = draw(st.sampled_from([D(0), step_size, step_size * 3]))
    min_notional = draw(st.sampled_from([D(0), D(0), price0 * step_size * 2]))
    max_orders = draw(st.integers(2, 16))
    spec = SymbolSpec(
        symbol=SYMBOL,
        base="ABC",
        quote="USDT",
        tick_size=tick,
        step_size=step_size,
        min_qty=min_qty,
        min_notional=min_notional,
        max_orders=max_orders,
    )
    grid_mode = mode or draw(st.sampled_from(["long", "neutral"]))
    lb = draw(st.integers(0 if grid_mode == "neutral" else 1, 5))
    la = draw(st.integers(0 if lb else 1, 5))
    size_in = draw(st.sampled_from(["quote", "base"]))
    if size_in == "quote":
        order_size = price0 * step_size * draw(st.sampled_from([1, 5, 13, 40]))
    else:
        order_size = step_size * draw(st.sampled_from([1, 5, 13, 40])) + draw(
            st.sampled_from([D(0), step_size / 3])
        )
    start_ticks = int(price0 / tick)
    lower = upper = None
    if draw(st.booleans()):
        lower = price0 - tick * draw(st.integers(0, 40))
    if draw(st.booleans()):
        upper = price0 + tick * draw(st.integers(0, 40))
        if lower is not None and upper <= lower:
            upper = lower + tick
    anchor = None
    if draw(st.booleans()):
        anchor = price0 + tick * draw(st.integers(-10, 10))
        anchor += draw(st.sampled_from([D(0), tick / 3]))
    config = GridConfig(
        spacing=spacing,
        step=gstep,
        levels_below=lb,
        levels_above=la,
        order_size=order_size,
        order_size_in=size_in,
        mode=grid_mode,
        anchor=anchor,
        lower=lower,
        upper=upper,
        inventory_skew=draw(st.sampled_from([D(0), D(0), D("0.5"), D(2)])),
        trail_hysteresis=draw(st.sampled_from([D(0), D("0.25"), D("0.9")])),
    )
    start_position = D(0)
    if draw(st.booleans()):
        start_position = step_size * draw(st.integers(1, 60))
    return Scenario(
        spec=spec,
        config=config,
        start_position=start_position,
        start_mid_ticks=start_ticks,
        seed=draw(st.integers(0, 2**32 - 1)),
        steps=steps,
        fee_mode=draw(st.sampled_from(["none", "base_on_buy", "quote", "other"])),
        reject_prob=draw(st.sampled_from([0.0, 0.0, 0.1])),
        dup_prob=draw(st.sampled_from([0.0, 0.2])),
        vol_ticks=max(2, m * draw(st.sampled_from([1, 2]))),
    )


@dataclass
class VOrder:
    client_id: str
    side: str
    level: int
    price: Decimal
    qty: Decimal
    post_only: bool
    opening: bool
    cum: Decimal = D(0)
    status: str = "NEW"


Check = Callable[["Run", str, list[Intent]], None]


@dataclass
class Run:
    """One scenario: the strategy, the venue model and everything observed so far."""

    scn: Scenario
    checks: list[Check] = field(default_factory=list)
    strategy: GridStrategy = field(init=False)
    rnd: random.Random = field(init=False)
    venue: dict[str, VOrder] = field(default_factory=dict)
    inflight: list[Intent] = field(default_factory=list)
    outbox: list[OrderUpdate] = field(default_factory=list)
    events: list[object] = field(default_factory=list)  # what the strategy was fed, in order
    intents: list[list[Intent]] = field(default_factory=list)  # what each call returned
    quote: Quote | None = None  # last quote the strategy saw
    mid_ticks: int = 0
    spread_ticks: int = 1
    true_position: Decimal = D(0)
    next_trade_id: int = 1
    halt: bool = False
    reduce_only: bool = False
    # from delivered reports: per order max cum, per trade id base fee
    seen_cum: dict[str, Decimal] = field(default_factory=dict)
    seen_fee: dict[int, Decimal] = field(default_factory=dict)
    fills: list[tuple[str, int, str, Decimal, Decimal]] = field(default_factory=list)
    acked: set[str] = field(default_factory=set)  # orders whose ack/fill was delivered

    def __post_init__(self) -> None:
        s = self.scn
        self.strategy = GridStrategy(s.spec, s.config, start_position=s.start_position)
        self.rnd = random.Random(s.seed)
        self.mid_ticks = s.start_mid_ticks
        self.true_position = s.start_position

    # ------------------------------------------------------------------ feeding
    def feed(self, kind: str, event: object, call: Callable[[], list[Intent]]) -> list[Intent]:
        intents = call()
        self.events.append(event)
        self.intents.append(intents)
        for intent in intents:
            self.inflight.append(intent)
        for check in self.checks:
            check(self, kind, intents)
        return intents

    def send_quote(self) -> None:
        tick = self.scn.spec.tick_size
        bid = tick * self.mid_ticks
        ask = bid + tick * self.spread_ticks
        q = Quote(symbol=SYMBOL, bid=bid, bid_qty=D(1), ask=ask, ask_qty=D(1), ts=0)
        self.quote = q
        self.feed("quote", q, lambda: self.strategy.on_quote(q))

    def deliver(self, report: OrderUpdate) -> None:
        self._note_seen(report)
        self.feed("report", report, lambda: self.strategy.on_order_update(report))

    def _note_seen(self, r: OrderUpdate) -> None:
        if r.status != "REJECTED":
            self.acked.add(r.client_id)
        if r.client_id in self.seen_cum or self.strategy_knows(r.client_id):
            self.seen_cum[r.client_id] = max(self.seen_cum.get(r.client_id, D(0)), r.cum_qty)
        if r.trade_id is not None and r.fee_asset == self.scn.spec.base and r.last_qty > 0:
            self.seen_fee[r.trade_id] = r.fee

    def strategy_knows(self, cid: str) -> bool:
        return parse_client_id(cid) is not None

    def set_gates(self, halt: bool, reduce_only: bool) -> None:
        self.halt, self.reduce_only = halt, reduce_only
        self.feed(
            "gates",
            ("gates", halt, reduce_only),
            lambda: self.strategy.set_gates(halt_opening=halt, reduce_only=reduce_only),
        )

    def stop(self) -> None:
        self.feed("stop", ("stop",), self.strategy.stop)

    def resume(self) -> None:
        self.feed("resume", ("resume",), self.strategy.resume)

    # ------------------------------------------------------------------ venue
    @property
    def bid(self) -> Decimal:
        return self.scn.spec.tick_size * self.mid_ticks

    @property
    def ask(self) -> Decimal:
        return self.bid + self.scn.spec.tick_size * self.spread_ticks

    def _report(
        self,
        o: VOrder,
        status: str,
        last_qty: Decimal = ZERO,
        fee: Decimal = ZERO,
        fee_asset: str = "",
        trade_id: int | None = None,
    ) -> None:
        self.outbox.append(
            OrderUpdate(
                symbol=SYMBOL,
                client_id=o.client_id,
                side=o.side,
                price=o.price,
                qty=o.qty,  # type: ignore[arg-type]
                status=status,
                cum_qty=o.cum,
                last_qty=last_qty,  # type: ignore[arg-type]
                last_price=o.price if last_qty else D(0),
                fee=fee,
                fee_asset=fee_asset,
                trade_id=trade_id,
            )
        )

    def _fill(self, o: VOrder, qty: Decimal) -> None:
        o.cum += qty
        o.status = "FILLED" if o.cum == o.qty else "PARTIALLY_FILLED"
        fee, asset = D(0), ""
        mode = self.scn.fee_mode
        if mode == "base_on_buy" and o.side == "BUY":
            fee, asset = (qty * D("0.001")).quantize(D("1e-8")), self.scn.spec.base
        elif mode == "quote" or (mode == "base_on_buy" and o.side == "SELL"):
            fee, asset = (qty * o.price * D("0.001")).quantize(D("1e-8")), "USDT"
        elif mode == "other":
            fee, asset = D("0.00001"), "BNB"
        signed = qty if o.side == "BUY" else -qty
        self.true_position += signed - (fee if asset == self.scn.spec.base else 0)
        tid = self.next_trade_id
        self.next_trade_id += 1
        self.fills.append((o.client_id, o.level, o.side, o.price, qty))
        self._report(o, o.status, qty, fee, asset, tid)

    def process_inflight(self, n: int) -> None:
        for intent in self.inflight[:n]:
            if isinstance(intent, PlaceOrder):
                r = intent.request
                parsed = parse_client_id(r.client_id)
                assert parsed is not None
                o = VOrder(
                    r.client_id, r.side, parsed.level, r.price, r.qty, r.post_only, intent.opening
                )
                assert r.client_id not in self.venue, "duplicate client id"
                self.venue[r.client_id] = o
                crosses = (r.side == "BUY" and r.price >= self.ask) or (
                    r.side == "SELL" and r.price <= self.bid
                )
                if self.rnd.random() < self.scn.reject_prob or (crosses and r.post_only):
                    o.status = "REJECTED"
                    self._report(o, "REJECTED")
                elif crosses:
                    self._report(o, "NEW")
                    self._fill(o, o.qty)
                else:
                    self._report(o, "NEW")
            else:
                assert isinstance(intent, CancelOrder)
                o = self.venue[intent.client_id]
                if o.status in ("NEW", "PARTIALLY_FILLED"):
                    o.status = "CANCELED"
                    self._report(o, "CANCELED")
                elif o.client_id in self.acked and self.rnd.random() < 0.5:
                    # the cancel arrived after the fill: the venue refuses it
                    self._report(o, "REJECTED")
                # else: it already filled/was rejected; the cancel fails silently
        del self.inflight[:n]

    def move_market(self) -> None:
        r = self.rnd.random()
        v = self.scn.vol_ticks
        if r < 0.05:
            delta = self.rnd.randint(-8 * v, 8 * v)
        else:
            delta = self.rnd.randint(-v, v)
        self.mid_ticks = max(5, self.mid_ticks + delta)
        self.spread_ticks = self.rnd.choice([1, 1, 2, 3])
        step = self.scn.spec.step_size
        for o in list(self.venue.values()):
            if o.status not in ("NEW", "PARTIALLY_FILLED"):
                continue
            through = (o.side == "BUY" and self.ask <= o.price) or (
                o.side == "SELL" and self.bid >= o.price
            )
            if not through:
                continue
            rest = o.qty - o.cum
            if self.rnd.random() < 0.5 or rest <= step:
                q = rest
            else:
                q = max(step, floor_to(rest * D(self.rnd.randint(1, 9)) / 10, step))
            self._fill(o, q)

    def deliver_some(self) -> None:
        if not self.outbox:
            return
        k = self.rnd.randint(1, len(self.outbox))
        idx = sorted(self.rnd.sample(range(len(self.outbox)), k))
        batch = [self.outbox[i] for i in idx]
        for i in reversed(idx):
            del self.outbox[i]
        if self.rnd.random() < 0.5:
            self.rnd.shuffle(batch)
        for report in batch:
            self.deliver(report)
            if self.rnd.random() < self.scn.dup_prob:
                self.outbox.append(report)  # a duplicate, delivered later

    # ------------------------------------------------------------------ driver
    def step(self) -> None:
        r = self.rnd.random()
        if r < 0.40:
            self.move_market()
            self.send_quote()
        elif r < 0.65:
            self.process_inflight(self.rnd.randint(0, len(self.inflight)))
        elif r < 0.93:
            self.deliver_some()
        elif r < 0.97:
            self.set_gates(self.rnd.random() < 0.3, self.rnd.random() < 0.3)
        elif self.strategy.stopped:
            self.resume()
        else:
            self.stop()

    def run(self) -> Run:
        self.send_quote()
        for _ in range(self.scn.steps):
            self.step()
        return self

    def drain(self) -> None:
        """Process every request and deliver every report (in order) until quiet."""
        for _ in range(50):
            if not self.inflight and not self.outbox:
                return
            self.process_inflight(len(self.inflight))
            batch, self.outbox = self.outbox, []
            for report in batch:
                self.deliver(report)
        raise AssertionError("venue did not quiesce")

    def snapshot(self) -> tuple[object, ...]:
        s = self.strategy
        return (s.position, s.level_inventory(), s.live_orders(), s.stopped, s.generation)

    def clone_strategy(self) -> GridStrategy:
        return copy.deepcopy(self.strategy)


def replay(scn: Scenario, events: list[object]) -> list[list[Intent]]:
    """Feed a recorded event sequence into a fresh strategy; return each call's intents."""
    s = GridStrategy(scn.spec, scn.config, start_position=scn.start_position)
    out: list[list[Intent]] = []
    for ev in events:
        if isinstance(ev, Quote):
            out.append(s.on_quote(ev))
        elif isinstance(ev, OrderUpdate):
            out.append(s.on_order_update(ev))
        elif ev[0] == "gates":  # type: ignore[index]
            out.append(s.set_gates(halt_opening=ev[1], reduce_only=ev[2]))  # type: ignore[index]
        elif ev[0] == "stop":  # type: ignore[index]
            out.append(s.stop())
        else:
            out.append(s.resume())
    return out
