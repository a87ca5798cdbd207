"""Config errors a trader can read: the key, the value and what is expected, never cattrs'
wording (``invalid literal for int()``, ``typing.Literal[...]``); values of the wrong type are
refused, not truncated or coerced (``1.5`` levels, ``"yes"`` as true); a grid that cannot
trade (a long grid with no level below) is refused with the reason."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mm_trio.domain.config import ConfigError, config_from_dict

CATTRS_WORDING = ("invalid literal", "typing.", "not iterable", "has no attribute", "could not")


def _error(data: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as info:
        config_from_dict(data)
    text = str(info.value)
    for wording in CATTRS_WORDING:
        assert wording not in text, text
    return text


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            {"grid": {"levels_below": 1.5}},
            "invalid config: grid.levels_below = 1.5: expected a whole number",
        ),
        (
            {"grid": {"levels_below": "x"}},
            "invalid config: grid.levels_below = 'x': expected a whole number",
        ),
        (
            {"grid": {"levels_below": True}},
            "invalid config: grid.levels_below = True: expected a whole number",
        ),
        (
            {"grid": {"mode": "short"}},
            "invalid config: grid.mode = 'short': expected one of 'long', 'neutral'",
        ),
        (
            {"grid": {"spacing": "log"}},
            "invalid config: grid.spacing = 'log': expected one of 'arithmetic', 'geometric'",
        ),
        (
            {"venue": {"queue_model": 3}},
            "invalid config: venue.queue_model = 3: expected one of 'trade_through', 'touch', "
            "'probabilistic'",
        ),
        (
            {"run": {"cancel_on_exit": "yes"}},
            "invalid config: run.cancel_on_exit = 'yes': expected true or false",
        ),
        (
            {"risk": {"stale_after": "x"}},
            "invalid config: risk.stale_after = 'x': expected a number",
        ),
        (
            {"risk": {"stale_after": float("nan")}},
            "invalid config: risk.stale_after = nan: expected a finite number",
        ),
        (
            {"run": {"status_interval": float("inf")}},
            "invalid config: run.status_interval = inf: expected a finite number",
        ),
        (
            {"grid": {"client_id_prefix": 5}},
            "invalid config: grid.client_id_prefix = 5: expected a string (in quotes)",
        ),
        ({"grid": 3}, "invalid config: grid = 3: expected a table of keys ([section] or {...})"),
        (
            {"venue": {"balances": 5}},
            "invalid config: venue.balances = 5: expected a table of keys ([section] or {...})",
        ),
        (
            {"symbols": {"ETH/USDT": {"levels_below": 2.5}}},
            "invalid config: symbols.'ETH/USDT'.levels_below = 2.5: expected a whole number",
        ),
        (
            {"replay": {"specs": {"BTCUSDT": 3}}},
            "invalid config: replay.specs.BTCUSDT = 3: expected a table of keys "
            "([section] or {...})",
        ),
        (
            {"grid": {"levels_below": 0}},
            "invalid config: grid.levels_below = 0: a long grid opens only BUYs below the "
            "price (levels_above is unused): needs >= 1",
        ),
        (
            {"symbols": {"SOL/USDT": {"levels_below": 0}}},
            "invalid config: symbols.'SOL/USDT'.levels_below = 0: a long grid",
        ),
        (
            {"venue": {"tick_interval_ms": 1e-300}},
            "invalid config: venue.tick_interval_ms = 1e-300: must be 1..3600000 (ms)",
        ),
        (
            {"venue": {"volatility": 1e300}},
            "invalid config: venue.volatility = 1e+300: must be >= 0 and < 1",
        ),
        ({"venue": {"drift": -2}}, "invalid config: venue.drift = -2.0: must be between -1 and 1"),
        (
            {"venue": {"latency_ms": 1e300}},
            "invalid config: venue.latency_ms = 1e+300: must be 0..60000 (ms)",
        ),
        (
            {"run": {"restart_backoff": -1}},
            "invalid config: run.restart_backoff = -1.0: must be > 0",
        ),
    ],
)
def test_plain_message(data: dict[str, Any], message: str) -> None:
    assert _error(data).startswith(message)


def test_a_neutral_grid_may_have_no_level_below() -> None:
    config = config_from_dict({"grid": {"mode": "neutral", "levels_below": 0, "levels_above": 3}})
    assert config.grid.levels_below == 0


def test_whole_numbers_and_integers_as_floats_still_load() -> None:
    config = config_from_dict(
        {"grid": {"levels_below": 3}, "run": {"status_interval": 2}, "venue": {"latency_ms": 1}}
    )
    assert config.grid.levels_below == 3
    assert config.run.status_interval == 2.0 and isinstance(config.run.status_interval, float)


INT_KEYS = [("grid", "levels_below"), ("grid", "levels_above"), ("risk", "reject_storm_count")]
FLOAT_KEYS = [("risk", "stale_after"), ("run", "shutdown_timeout"), ("venue", "latency_ms")]
NOT_AN_INT = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=5),
    st.booleans(),
    st.lists(st.integers(), max_size=2),
)


@given(key=st.sampled_from(INT_KEYS), value=NOT_AN_INT)
def test_a_whole_number_key_never_takes_anything_else(key: tuple[str, str], value: Any) -> None:
    section, name = key
    text = _error({section: {name: value}})
    assert text.startswith(f"invalid config: {section}.{name} = ")
    assert text.endswith("expected a whole number")


@given(
    key=st.sampled_from(FLOAT_KEYS),
    value=st.one_of(
        st.text(max_size=5), st.booleans(), st.sampled_from([float("nan"), float("inf")])
    ),
)
def test_a_number_key_never_takes_text_or_infinities(key: tuple[str, str], value: Any) -> None:
    section, name = key
    text = _error({section: {name: value}})
    assert text.startswith(f"invalid config: {section}.{name} = ")
    assert "expected a" in text and "number" in text
