"""Typed configuration: TOML structured with cattrs into attrs classes, validated.

Every value has a default, so no file is needed. ``load_config`` raises
:class:`ConfigError` whose message names the key path and the bad value (SPEC §12).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any, Literal, get_args, get_origin

import attrs
import cattrs
from cattrs.errors import (
    ClassValidationError,
    ForbiddenExtraKeysError,
    IterableValidationError,
    IterableValidationNote,
)
from cattrs.gen import make_dict_structure_fn

from mm_trio.domain.ids import validate_prefix
from mm_trio.domain.model import SymbolError, parse_symbol


class ConfigError(ValueError):
    """Invalid configuration; the message names the key path and the value. ``key``: that
    path (e.g. ``symbols.'SOL/USDT'.step``) where one is known, for callers that report the
    field separately (the control API)."""

    def __init__(self, message: str, *, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


D = Decimal


@attrs.frozen(kw_only=True)
class GridConfig:
    """Grid parameters (SPEC §4). ``step`` is a price step (arithmetic) or a ratio (geometric)."""

    spacing: Literal["arithmetic", "geometric"] = "geometric"
    step: Decimal = D("0.001")
    levels_below: int = 5
    levels_above: int = 5
    order_size: Decimal = D("100")
    order_size_in: Literal["quote", "base"] = "quote"
    mode: Literal["long", "neutral"] = "long"
    anchor: Decimal | None = None
    lower: Decimal | None = None
    upper: Decimal | None = None
    inventory_skew: Decimal = D("0")  # fraction of one step per held level
    # the window moves only once the price is this fraction of a level past the boundary
    trail_hysteresis: Decimal = D("0.25")
    client_id_prefix: str = "mmt"


@attrs.frozen(kw_only=True)
class RiskConfig:
    """Per-symbol breakers (SPEC §6). Durations in seconds, percentages as fractions."""

    stale_after: float = 10.0
    jump_pct: Decimal = D("0.03")
    jump_window: float = 5.0
    jump_cooldown: float = 30.0
    volume_window: float = 10.0
    volume_baseline_windows: int = 6
    volume_spike_factor: Decimal = D("5")
    volume_drop_pct: Decimal = D("0.005")
    volume_cooldown: float = 30.0
    reject_storm_count: int = 10
    reject_storm_window: float = 10.0
    reject_cooldown: float = 30.0
    max_loss: Decimal = D("1000")  # per symbol, quote currency; breach stops the symbol


@attrs.frozen(kw_only=True)
class GovernorConfig:
    """Aggregate limits across symbols, in the quote currency."""

    max_total_exposure: Decimal = D("50000")
    max_symbol_exposure: Decimal = D("20000")
    hysteresis: Decimal = D("0.1")  # reduce-only clears below cap * (1 - hysteresis)
    # ... and not before it has lasted this many seconds (hysteresis in time as well)
    reduce_only_min_hold: float = 5.0
    max_total_loss: Decimal = D("5000")


@attrs.frozen(kw_only=True)
class SimVenueConfig:
    """The embedded simulated venue (SPEC §7)."""

    seed: int = 1
    latency_ms: float = 5.0
    maker_fee: Decimal = D("0.0002")  # a market-maker tier; Binance VIP 0 is 0.001
    taker_fee: Decimal = D("0.0004")
    queue_model: Literal["trade_through", "touch", "probabilistic"] = "probabilistic"
    queue_fill_probability: float = 0.3  # chance a trade at our price reaches us (probabilistic)
    tick_interval_ms: float = 100.0  # synthetic market update period per symbol
    volatility: float = 0.0004  # per-second relative volatility of the synthetic mid
    drift: float = 0.0  # per-second relative drift of the synthetic mid (e.g. -0.0005 falls)
    balances: dict[str, Decimal] = attrs.field(
        factory=lambda: {"USDT": D("100000"), "BTC": D("1"), "ETH": D("20")}
    )
    default_base_balance_quote_value: Decimal = D("10000")  # other bases start with this value
    max_orders: int = 200
    # symbols the venue lists beyond its built-in majors, as "BASE/QUOTE" = start price
    extra_symbols: dict[str, Decimal] = attrs.field(factory=dict)


@attrs.frozen(kw_only=True)
class LimiterConfig:
    """Venue limits the shared limiter enforces (Binance spot defaults)."""

    weight_per_minute: int = 6000
    orders_per_10s: int = 100
    orders_per_day: int = 200000
    safety_margin: Decimal = D("0.1")  # keep this fraction of every limit unused


@attrs.frozen(kw_only=True)
class RunConfig:
    status_interval: float = 5.0
    cancel_on_exit: bool = True
    shutdown_timeout: float = 10.0
    restart_failed: bool = False
    restart_backoff: float = 5.0
    order_channel_size: int = 10000
    # a quote inside the symbol's quiet band (no decision can change) does not wake it
    absorb_quiet_quotes: bool = True
    # a public trade that cannot trip a breaker does not wake it either (handled in order,
    # before the next event it handles, or within a second)
    absorb_quiet_trades: bool = True
    # the state store (SQLite) of this account; "" : the default (see ``mm-trio run --state``)
    state: str = ""


MAX_LATENCY_MS = 60_000.0
"""The simulated venue's latency at most (a minute: beyond, nothing would ever land)."""
MIN_TICK_INTERVAL_MS = 1.0
"""The synthetic market updates at most once a millisecond per symbol (faster only burns
the CPU without changing what the grid sees)."""
MAX_TICK_INTERVAL_MS = 3_600_000.0

SPEC_OVERRIDE_KEYS = frozenset(
    {
        "tick_size",
        "step_size",
        "min_price",
        "max_price",
        "min_qty",
        "max_qty",
        "min_notional",
        "max_orders",
    }
)


@attrs.frozen(kw_only=True)
class ReplayConfig:
    """``mm-trio replay``: symbol names and specs for recorded data."""

    equity_interval: float = 1.0  # seconds of market time between equity-curve samples
    # recorded events reach the venue in batches at most this often (ms); each event is then
    # up to this much late, never early. 0: every event at its own recorded time.
    quantum_ms: float = 10.0
    symbols: dict[str, str] = attrs.field(factory=dict)  # native -> "BASE/QUOTE" when unclear
    # per-symbol SymbolSpec overrides of the inferred specs, e.g. tick_size, step_size
    specs: dict[str, dict[str, Decimal]] = attrs.field(factory=dict)


@attrs.frozen(kw_only=True)
class Config:
    grid: GridConfig = attrs.field(factory=GridConfig)
    symbols: dict[str, dict[str, Any]] = attrs.field(factory=dict)  # per-symbol grid overrides
    risk: RiskConfig = attrs.field(factory=RiskConfig)
    governor: GovernorConfig = attrs.field(factory=GovernorConfig)
    venue: SimVenueConfig = attrs.field(factory=SimVenueConfig)
    limiter: LimiterConfig = attrs.field(factory=LimiterConfig)
    run: RunConfig = attrs.field(factory=RunConfig)
    replay: ReplayConfig = attrs.field(factory=ReplayConfig)

    def grid_for(self, symbol: str) -> GridConfig:
        """The default grid with ``[symbols."<symbol>"]`` overrides applied."""
        overrides = self.symbols.get(symbol)
        if not overrides:
            return self.grid
        merged = {**_converter.unstructure(self.grid), **overrides}
        return _structure(merged, GridConfig, f"symbols.{symbol!r}")


def _structure_decimal(value: Any, _type: Any) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, (str, int, float, Decimal)):
        raise ValueError(f"expected a decimal number, got {value!r}")
    try:
        d = Decimal(str(value))
    except InvalidOperation:
        raise ValueError(f"expected a decimal number, got {value!r}") from None
    if not d.is_finite():
        raise ValueError(f"expected a finite decimal number, got {value!r}")
    return d


def _structure_int(value: Any, _type: Any) -> int:
    # TOML and JSON have whole numbers: 1.5 or "5" is a mistake, never truncated or parsed
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError("expected a whole number")
    return value


def _structure_float(value: Any, _type: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError("expected a number")
    if not math.isfinite(value):
        raise ValueError("expected a finite number")
    return float(value)


def _structure_bool(value: Any, _type: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError("expected true or false")
    return value


def _structure_str(value: Any, _type: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("expected a string (in quotes)")
    return value


def _is_literal(type_: Any) -> bool:
    return get_origin(type_) is Literal


def _structure_literal(value: Any, type_: Any) -> Any:
    choices = get_args(type_)
    if isinstance(value, bool) or value not in choices:
        shown = ", ".join(repr(c) for c in choices)
        raise ValueError(f"expected one of {shown}")
    return value


def _table_hook(cls: type) -> Callable[[Any, Any], Any]:
    """cattrs' structuring of an attrs class, refusing what is not a table by name (instead
    of cattrs' ``argument of type 'int' is not iterable``)."""
    inner: Callable[[Any, Any], Any] = make_dict_structure_fn(cls, _converter)

    def structure_table(value: Any, type_: Any) -> Any:
        if not isinstance(value, Mapping):
            raise ValueError("expected a table of keys ([section] or {...})")
        return inner(value, type_)

    return structure_table


def _is_dict(type_: Any) -> bool:
    return get_origin(type_) is dict


def _dict_hook(type_: Any) -> Callable[[Any, Any], Any]:
    """``dict[K, V]``: refuse what is not a table by name; errors carry the key (for
    :func:`_first_error`) as cattrs' own mapping errors do."""
    key_type, value_type = get_args(type_) or (Any, Any)

    def structure_dict(value: Any, _type: Any) -> Any:
        if not isinstance(value, Mapping):
            raise ValueError("expected a table of keys ([section] or {...})")
        out: dict[Any, Any] = {}
        errors: list[Exception] = []
        for key, item in value.items():
            try:
                out[_converter.structure(key, key_type)] = _converter.structure(item, value_type)
            except Exception as exc:
                note = IterableValidationNote(
                    f"Structuring mapping value @ key {key!r}", key, value_type
                )
                exc.__notes__ = [*getattr(exc, "__notes__", []), note]
                errors.append(exc)
        if errors:
            raise IterableValidationError(f"While structuring {type_!r}", errors, type_)
        return out

    return structure_dict


_converter = cattrs.Converter(forbid_extra_keys=True)
_converter.register_structure_hook(Decimal, _structure_decimal)
_converter.register_structure_hook(int, _structure_int)
_converter.register_structure_hook(float, _structure_float)
_converter.register_structure_hook(bool, _structure_bool)
_converter.register_structure_hook(str, _structure_str)
_converter.register_structure_hook_func(_is_literal, _structure_literal)
_converter.register_structure_hook_factory(attrs.has, _table_hook)
_converter.register_structure_hook_factory(_is_dict, _dict_hook)
_converter.register_unstructure_hook(Decimal, str)


_SECRET_KEYS = frozenset({"api_secret", "admin_token"})
"""Config keys whose values an error message never shows (``'***'`` instead)."""


def _shown(path: str, data: Any) -> str:
    """``repr`` of ``data`` (at ``path``) for an error message, secrets masked."""

    def mask(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: "***" if k in _SECRET_KEYS else mask(v) for k, v in value.items()}
        if isinstance(value, list):
            return [mask(v) for v in value]
        return value

    if path.rsplit(".", 1)[-1] in _SECRET_KEYS:
        return "'***'"
    return repr(mask(data))


def _first_error(exc: BaseException, path: str, data: Any) -> tuple[str, str]:
    """Walk a cattrs exception tree to the first leaf; return (path, 'path = value: why')."""
    if isinstance(exc, ForbiddenExtraKeysError):
        names = [f"{path}.{k}" if path else k for k in sorted(exc.extra_fields)]
        return names[0], f"unknown key {', '.join(names)}"
    if isinstance(exc, (ClassValidationError, IterableValidationError)):
        for sub in exc.exceptions:
            notes = getattr(sub, "__notes__", [])
            key = None
            for note in notes:
                name = getattr(note, "name", None)
                idx = getattr(note, "index", None)
                key = name if name is not None else idx
            if key is None:
                return _first_error(sub, path, data)
            sub_data = data.get(key) if isinstance(data, dict) else None
            return _first_error(sub, f"{path}.{key}" if path else str(key), sub_data)
    return path, f"{path} = {_shown(path, data)}: {exc}"


def _structure(data: Any, cls: type, path: str) -> Any:
    try:
        return _converter.structure(data, cls)
    except (ClassValidationError, IterableValidationError, ForbiddenExtraKeysError) as exc:
        key, text = _first_error(exc, path, data)
        raise ConfigError(f"invalid config: {text}", key=key) from None
    except (ValueError, TypeError) as exc:
        raise ConfigError(
            f"invalid config: {path} = {_shown(path, data)}: {exc}", key=path or None
        ) from None


def _check(cond: bool, path: str, value: Any, why: str) -> None:
    if not cond:
        raise ConfigError(f"invalid config: {path} = {value!r}: {why}", key=path)


def validate_grid(grid: GridConfig, path: str = "grid") -> None:
    _check(grid.step > 0, f"{path}.step", str(grid.step), "must be > 0")
    if grid.spacing == "geometric":
        _check(grid.step < 1, f"{path}.step", str(grid.step), "a geometric ratio must be < 1")
    for key in ("levels_below", "levels_above"):
        _check(
            0 <= getattr(grid, key) <= 100, f"{path}.{key}", getattr(grid, key), "must be 0..100"
        )
    _check(
        grid.mode != "long" or grid.levels_below > 0,
        f"{path}.levels_below",
        grid.levels_below,
        "a long grid opens only BUYs below the price (levels_above is unused): needs >= 1",
    )
    _check(
        grid.levels_below + grid.levels_above > 0,
        f"{path}.levels_below",
        grid.levels_below,
        "levels_below + levels_above must be > 0",
    )
    _check(grid.order_size > 0, f"{path}.order_size", str(grid.order_size), "must be > 0")
    for key in ("anchor", "lower", "upper"):
        v = getattr(grid, key)
        _check(v is None or v > 0, f"{path}.{key}", None if v is None else str(v), "must be > 0")
    if grid.lower is not None and grid.upper is not None:
        _check(grid.lower < grid.upper, f"{path}.lower", str(grid.lower), "must be below upper")
    _check(
        0 <= grid.inventory_skew <= 10,
        f"{path}.inventory_skew",
        str(grid.inventory_skew),
        "must be 0..10",
    )
    _check(
        0 <= grid.trail_hysteresis < 1,
        f"{path}.trail_hysteresis",
        str(grid.trail_hysteresis),
        "must be >= 0 and < 1 (a fraction of one level)",
    )
    try:
        validate_prefix(grid.client_id_prefix)
    except ValueError as exc:
        raise ConfigError(
            f"invalid config: {path}.client_id_prefix = {grid.client_id_prefix!r}: {exc}",
            key=f"{path}.client_id_prefix",
        ) from None


def validate(config: Config) -> Config:
    validate_grid(config.grid)
    for symbol in config.symbols:
        try:
            parse_symbol(symbol)
        except SymbolError as exc:
            raise ConfigError(f"invalid config: symbols.{symbol!r}: {exc}") from None
        validate_grid(config.grid_for(symbol), f"symbols.{symbol!r}")
    r = config.risk
    for key in (
        "stale_after",
        "jump_window",
        "jump_cooldown",
        "volume_window",
        "volume_cooldown",
        "reject_storm_window",
        "reject_cooldown",
    ):
        _check(getattr(r, key) > 0, f"risk.{key}", getattr(r, key), "must be > 0")
    _check(r.jump_pct > 0, "risk.jump_pct", str(r.jump_pct), "must be > 0")
    _check(r.reject_storm_count > 0, "risk.reject_storm_count", r.reject_storm_count, "must be > 0")
    _check(
        r.volume_baseline_windows > 0,
        "risk.volume_baseline_windows",
        r.volume_baseline_windows,
        "must be > 0",
    )
    _check(r.max_loss > 0, "risk.max_loss", str(r.max_loss), "must be > 0")
    g = config.governor
    for key in ("max_total_exposure", "max_symbol_exposure", "max_total_loss"):
        _check(getattr(g, key) > 0, f"governor.{key}", str(getattr(g, key)), "must be > 0")
    _check(0 <= g.hysteresis < 1, "governor.hysteresis", str(g.hysteresis), "must be in [0, 1)")
    _check(
        0 <= g.reduce_only_min_hold < math.inf,
        "governor.reduce_only_min_hold",
        g.reduce_only_min_hold,
        "must be a number of seconds >= 0",
    )
    v = config.venue
    _check(
        0 <= v.latency_ms <= MAX_LATENCY_MS,
        "venue.latency_ms",
        v.latency_ms,
        f"must be 0..{MAX_LATENCY_MS:.0f} (ms)",
    )
    _check(
        MIN_TICK_INTERVAL_MS <= v.tick_interval_ms <= MAX_TICK_INTERVAL_MS,
        "venue.tick_interval_ms",
        v.tick_interval_ms,
        f"must be {MIN_TICK_INTERVAL_MS:.0f}..{MAX_TICK_INTERVAL_MS:.0f} (ms)",
    )
    _check(
        abs(v.drift) < 1, "venue.drift", v.drift, "must be between -1 and 1 (a fraction a second)"
    )
    _check(
        0 <= v.queue_fill_probability <= 1,
        "venue.queue_fill_probability",
        v.queue_fill_probability,
        "must be in [0, 1]",
    )
    _check(
        0 <= v.volatility < 1, "venue.volatility", v.volatility, "must be >= 0 and < 1 (a second)"
    )
    for fee in ("maker_fee", "taker_fee"):
        _check(0 <= getattr(v, fee) < 1, f"venue.{fee}", str(getattr(v, fee)), "must be in [0, 1)")
    for asset, amount in v.balances.items():
        _check(amount >= 0, f"venue.balances.{asset}", str(amount), "must be >= 0")
    for symbol, price in v.extra_symbols.items():
        try:
            parse_symbol(symbol)
        except SymbolError as exc:
            raise ConfigError(f"invalid config: venue.extra_symbols.{symbol!r}: {exc}") from None
        _check(price > 0, f"venue.extra_symbols.{symbol!r}", str(price), "must be > 0")
    lim = config.limiter
    for key in ("weight_per_minute", "orders_per_10s", "orders_per_day"):
        _check(getattr(lim, key) > 0, f"limiter.{key}", getattr(lim, key), "must be > 0")
    _check(
        0 <= lim.safety_margin < 1,
        "limiter.safety_margin",
        str(lim.safety_margin),
        "must be in [0, 1)",
    )
    _check(
        config.run.status_interval > 0,
        "run.status_interval",
        config.run.status_interval,
        "must be > 0",
    )
    _check(
        config.run.shutdown_timeout > 0,
        "run.shutdown_timeout",
        config.run.shutdown_timeout,
        "must be > 0",
    )
    _check(
        config.run.restart_backoff > 0,
        "run.restart_backoff",
        config.run.restart_backoff,
        "must be > 0",
    )
    _check(
        config.run.order_channel_size > 0,
        "run.order_channel_size",
        config.run.order_channel_size,
        "must be > 0",
    )
    rp = config.replay
    _check(rp.equity_interval > 0, "replay.equity_interval", rp.equity_interval, "must be > 0")
    _check(0 <= rp.quantum_ms <= 60000, "replay.quantum_ms", rp.quantum_ms, "must be 0..60000")
    for native, unified in rp.symbols.items():
        try:
            parse_symbol(unified)
        except SymbolError as exc:
            raise ConfigError(
                f"invalid config: replay.symbols.{native} = {unified!r}: {exc}"
            ) from None
    for symbol, fields in rp.specs.items():
        for key, value in fields.items():
            path = f"replay.specs.{symbol!r}.{key}"
            _check(
                key in SPEC_OVERRIDE_KEYS,
                path,
                str(value),
                "unknown spec field (use " + ", ".join(sorted(SPEC_OVERRIDE_KEYS)) + ")",
            )
            _check(value >= 0, path, str(value), "must be >= 0")
    return config


def structure(data: Any, cls: type, path: str) -> Any:
    """Structure ``data`` into ``cls`` with this module's converter; errors name the key."""
    return _structure(data, cls, path)


def config_from_dict(data: dict[str, Any]) -> Config:
    return validate(_structure(data, Config, ""))


def grid_with_overrides(config: Config, symbol: str, overrides: dict[str, Any]) -> GridConfig:
    """The grid ``symbol`` trades with ``overrides`` (any ``[grid]`` key) applied on top of
    the config's ``[symbols."<symbol>"]``: structured and validated exactly as the config
    file's per-symbol overrides are (errors name ``symbols.'<symbol>'.<key>``)."""
    path = f"symbols.{symbol!r}"
    try:
        parse_symbol(symbol)
    except SymbolError as exc:
        raise ConfigError(f"invalid config: {path}: {exc}", key=path) from None
    if not isinstance(overrides, dict):
        raise ConfigError(
            f"invalid config: {path} = {overrides!r}: expected a table of grid keys", key=path
        )
    merged = {**config.symbols.get(symbol, {}), **overrides}
    grid = attrs.evolve(config, symbols={**config.symbols, symbol: merged}).grid_for(symbol)
    validate_grid(grid, path)
    return grid


def with_overrides(config: Config, **changes: Any) -> Config:
    """A copy of ``config`` with top-level sections replaced (used by the CLI and tests)."""
    return validate(attrs.evolve(config, **changes))


def grid_to_dict(grid: GridConfig) -> dict[str, Any]:
    """A grid config as plain data (decimals as exact strings; JSON-ready)."""
    data: dict[str, Any] = _converter.unstructure(grid)
    return data


def grid_from_dict(data: dict[str, Any], path: str = "grid") -> GridConfig:
    """The inverse of :func:`grid_to_dict`, validated; :class:`ConfigError` naming the key."""
    grid: GridConfig = _structure(data, GridConfig, path)
    validate_grid(grid, path)
    return grid


GEOMETRY_KEYS = ("spacing", "step")
"""The grid settings that give a level number its price (with the anchor)."""


def with_geometry(grid: GridConfig, geometry: GridConfig) -> GridConfig:
    """``grid`` with the level geometry (:data:`GEOMETRY_KEYS`) of ``geometry``."""
    return attrs.evolve(grid, **{k: getattr(geometry, k) for k in GEOMETRY_KEYS})
