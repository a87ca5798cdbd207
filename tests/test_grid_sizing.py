"""Unit tests of the grid's order sizing (core/grid/sizing.py) and of one reconcile pass
(core/grid/reconcile.py) driven directly."""

from __future__ import annotations

from decimal import Decimal

from mm_trio.core.grid.book import OrderBook
from mm_trio.core.grid.inventory import Inventory
from mm_trio.core.grid.levels import LevelGrid
from mm_trio.core.grid.reconcile import Gates, Reconcile
from mm_trio.core.grid.sizing import FEE_RESERVE, Sizing
from mm_trio.core.grid.slots import OrderState, SlotState
from mm_trio.core.grid.window import TrailingWindow
from mm_trio.domain.config import GridConfig
from mm_trio.domain.intents import CancelOrder, PlaceOrder
from mm_trio.domain.model import OrderRequest, Side, SymbolSpec

D = Decimal
SPEC = SymbolSpec(
    symbol="BTC/USDT",
    base="BTC",
    quote="USDT",
    tick_size=D("0.01"),
    step_size=D("0.01"),
    min_notional=D(50),
)
GRID = LevelGrid(spacing="arithmetic", step=D(1), anchor=D(100), tick=D("0.01"))


def sizing(**kw: object) -> Sizing:
    base: dict[str, object] = dict(
        spacing="arithmetic", step=D(1), order_size=D(60), order_size_in="quote"
    )
    base.update(kw)
    return Sizing(SPEC, GridConfig(**base))  # type: ignore[arg-type]


def test_opening_qty_in_quote_floored_to_step_and_bounded() -> None:
    s = sizing(lower=D(98), upper=D(101))
    assert s.opening_qty(GRID, 0, "BUY") == D("0.60")  # 60 / 100
    assert s.opening_qty(GRID, -3, "BUY") == 0  # 97 is below lower
    assert s.opening_qty(GRID, 2, "SELL") == 0  # 102 is above upper
    assert sizing(order_size=D(40)).opening_qty(GRID, 0, "BUY") == 0  # below min notional


def test_opening_qty_needs_a_distinct_closing_price() -> None:
    # far below a geometric anchor one step is less than a tick: levels collide
    tiny = LevelGrid(spacing="geometric", step=D("0.001"), anchor=D(100), tick=D("0.1"))
    spec = SymbolSpec(
        symbol="BTC/USDT", base="BTC", quote="USDT", tick_size=D("0.1"), step_size=D("0.01")
    )
    s = Sizing(spec, GridConfig(order_size=D(1), order_size_in="base"))
    k = next(k for k in range(-1, -2000, -1) if tiny.price(k + 1) == tiny.price(k))
    assert s.opening_qty(tiny, k, "BUY") == 0  # its take-profit would be at its own price
    assert s.opening_qty(tiny, k + 1, "SELL") == 0  # and its buy-back
    assert s.opening_qty(tiny, 0, "BUY") == 1


def test_closing_qty_keeps_a_fee_reserve_on_unconfirmed_fills() -> None:
    s = sizing()
    assert s.closing_price(GRID, 0, D(1)) == 101 and s.closing_price(GRID, 0, D(-1)) == 99
    assert s.closing_qty(GRID, 0, D("0.60"), D(0)) == D("0.60")
    # 0.60 unconfirmed: 1 % of it is kept back, the rest floors to 0.59
    assert s.closing_qty(GRID, 0, D("0.60"), D("0.60")) == D("0.60") - D("0.01")
    assert FEE_RESERVE * D("0.60") == D("0.0060")
    assert s.closing_qty(GRID, 0, D("0.30"), D(0)) == 0  # 30.3 notional: dust
    assert s.closing_qty(None, 0, D(1), D(0)) == 0


def test_a_reconcile_pass_places_closing_orders_first() -> None:
    book, inv = OrderBook(), Inventory()
    size = sizing(order_size=D(100))
    slot = inv.slot(-1)  # a filled buy at 99: its take-profit at 100 is due
    slot.lot = D(1)
    inv.set_closing_qty(slot, size.closing_qty(GRID, -1, slot.lot, slot.pending))
    slot.state = SlotState.HOLDING
    window = TrailingWindow(levels_below=3, levels_above=0, inventory_skew=D(0), hysteresis=D(0))
    window.track(GRID, D("100.50"), D("100.40"), D("100.60"), inv.net_held)
    window.commit()
    placed: list[tuple[int, Side, Decimal, Decimal, bool]] = []

    def place(level: int, side: Side, price: Decimal, qty: Decimal, opening: bool) -> PlaceOrder:
        placed.append((level, side, price, qty, opening))
        cid = f"c{len(placed)}"
        book.add(OrderState(cid, side, level, price, qty, opening))
        inv.slot(level).place(cid, opening=opening)
        return PlaceOrder(
            OrderRequest(symbol=SPEC.symbol, client_id=cid, side=side, price=price, qty=qty),
            opening=opening,
        )

    def cancel(o: OrderState) -> CancelOrder:
        o.cancel_requested = True
        return CancelOrder(SPEC.symbol, o.client_id)

    spec = SymbolSpec(**{**{f: getattr(SPEC, f) for f in SPEC.__struct_fields__}, "max_orders": 2})
    out = Reconcile(
        book=book,
        inventory=inv,
        window=window,
        sizing=size,
        grid=GRID,
        spec=spec,
        gates=Gates(),
        position=D(1),
        rejected=set(),
        place=place,
        cancel=cancel,
    ).run()
    # the take-profit first, then one opening buy below it (the venue max is 2); slot -1
    # is CLOSING now, so the window's level -1 is skipped
    assert placed == [(-1, "SELL", D(100), D(1), False), (-2, "BUY", D(98), D("1.02"), True)]
    assert len(out) == 2
