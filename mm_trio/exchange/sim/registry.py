"""The simulated venue's symbol registry (SPEC §7): which symbols it lists, their trading rules,
and every asset's starting balance.

Built-in majors carry Binance-like rules; ``SimVenueConfig.extra_symbols`` adds symbols whose
rules are derived from their start price (:func:`derive_spec`). Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal

from mm_trio.domain.config import SimVenueConfig
from mm_trio.domain.model import ZERO, SymbolSpec, floor_to, parse_symbol

STABLE_QUOTES: frozenset[str] = frozenset({"USDT", "USDC", "FDUSD", "BUSD", "TUSD", "DAI", "USD"})
"""Quote assets worth about one US dollar (used for default balances and min notional)."""

_MIN_NOTIONAL_BY_QUOTE: dict[str, Decimal] = {
    "BTC": Decimal("0.0001"),
    "ETH": Decimal("0.001"),
    "BNB": Decimal("0.01"),
    **{q: Decimal(5) for q in STABLE_QUOTES},
}

# symbol: (start price, tick size, step size) -- Binance-like rules, plausible start prices
BUILTIN_SYMBOLS: dict[str, tuple[str, str, str]] = {
    "BTC/USDT": ("60000", "0.01", "0.00001"),
    "ETH/USDT": ("3000", "0.01", "0.0001"),
    "BNB/USDT": ("550", "0.01", "0.001"),
    "SOL/USDT": ("150", "0.01", "0.001"),
    "XRP/USDT": ("0.55", "0.0001", "0.1"),
    "DOGE/USDT": ("0.15", "0.00001", "1"),
    "ADA/USDT": ("0.45", "0.0001", "0.1"),
    "LTC/USDT": ("80", "0.01", "0.001"),
    "AVAX/USDT": ("30", "0.01", "0.01"),
    "LINK/USDT": ("15", "0.01", "0.01"),
    "DOT/USDT": ("6", "0.001", "0.01"),
    "TRX/USDT": ("0.12", "0.0001", "0.1"),
    "BTC/USDC": ("60000", "0.01", "0.00001"),
    "ETH/USDC": ("3000", "0.01", "0.0001"),
    "ETH/BTC": ("0.05", "0.00001", "0.0001"),
    "BNB/BTC": ("0.009", "0.000001", "0.001"),
    "SOL/BTC": ("0.0025", "0.0000001", "0.001"),
}


def min_notional_for(quote: str) -> Decimal:
    """Binance-like minimum notional for a quote asset (0 if unknown)."""
    return _MIN_NOTIONAL_BY_QUOTE.get(quote, ZERO)


def derive_spec(symbol: str, price: Decimal, *, max_orders: int = 200) -> SymbolSpec:
    """Plausible trading rules for ``symbol`` trading around ``price``.

    The tick gives about six significant digits of price; the step makes one step worth
    between 0.1 and 1 quote unit (60000 → tick 0.1, step 0.00001; 0.15 → tick 0.000001, step 1).
    """
    base, quote = parse_symbol(symbol)
    if price <= 0:
        raise ValueError(f"start price of {symbol} must be > 0, got {price}")
    exp = price.adjusted()
    tick = Decimal(10) ** (exp - 5)
    step = Decimal(10) ** (-exp - 1)
    return _make_spec(symbol, base, quote, tick, step, min_notional_for(quote), max_orders)


def _make_spec(
    symbol: str,
    base: str,
    quote: str,
    tick: Decimal,
    step: Decimal,
    min_notional: Decimal,
    max_orders: int,
) -> SymbolSpec:
    return SymbolSpec(
        symbol=symbol,
        base=base,
        quote=quote,
        tick_size=tick,
        step_size=step,
        min_price=tick,
        max_price=max(Decimal(1000000), tick * 10**10),
        min_qty=step,
        max_qty=max(Decimal(9000000), step * 10**9),
        min_notional=min_notional,
        max_orders=max_orders,
    )


def build_registry(config: SimVenueConfig) -> tuple[dict[str, SymbolSpec], dict[str, Decimal]]:
    """Specs and start prices of every symbol the venue lists (built-ins, then extras).

    An extra symbol that is also built in only overrides the start price.
    """
    specs: dict[str, SymbolSpec] = {}
    prices: dict[str, Decimal] = {}
    for symbol, (start, tick, step) in BUILTIN_SYMBOLS.items():
        base, quote = parse_symbol(symbol)
        specs[symbol] = _make_spec(
            symbol,
            base,
            quote,
            Decimal(tick),
            Decimal(step),
            min_notional_for(quote),
            config.max_orders,
        )
        prices[symbol] = Decimal(start)
    for symbol, extra in config.extra_symbols.items():
        price = Decimal(extra)
        if symbol not in specs:
            specs[symbol] = derive_spec(symbol, price, max_orders=config.max_orders)
        tick_size = specs[symbol].tick_size
        prices[symbol] = max(floor_to(price, tick_size), tick_size)
    return specs, prices


def _usd_price(asset: str, prices: Mapping[str, Decimal], depth: int = 0) -> Decimal | None:
    """Rough dollar value of one ``asset`` from start prices (None if not derivable)."""
    if asset in STABLE_QUOTES:
        return Decimal(1)
    if depth > 1:
        return None
    for symbol, price in prices.items():
        base, quote = symbol.split("/")
        if base == asset and quote in STABLE_QUOTES:
            return price
    for symbol, price in prices.items():
        base, quote = symbol.split("/")
        if base == asset:
            q = _usd_price(quote, prices, depth + 1)
            if q is not None:
                return price * q
    return None


def starting_balances(
    config: SimVenueConfig, specs: Mapping[str, SymbolSpec], prices: Mapping[str, Decimal]
) -> dict[str, Decimal]:
    """Starting balance of every asset the registry mentions.

    Assets in ``config.balances`` start with that amount. Any other base asset starts with
    ``default_base_balance_quote_value`` (taken as dollars) worth at its start price, rounded
    down to the step of its first symbol; another stablecoin quote starts with that many units;
    any other asset starts at zero.
    """
    out: dict[str, Decimal] = {a: Decimal(v) for a, v in config.balances.items()}
    value = Decimal(config.default_base_balance_quote_value)
    for symbol, spec in specs.items():
        for asset in (spec.base, spec.quote):
            if asset in out:
                continue
            if asset in STABLE_QUOTES:
                out[asset] = value
            elif asset == spec.base:
                usd = _usd_price(asset, prices)
                if usd is None:  # priced only in an unknown quote: value in that quote
                    usd = prices[symbol]
                out[asset] = floor_to(value / usd, spec.step_size) if usd > 0 else ZERO
            else:
                out[asset] = ZERO
    return out
