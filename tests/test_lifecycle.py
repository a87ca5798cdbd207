"""The symbol lifecycle table (mm_trio.core.lifecycle): every (state, event) pair, and the
reason shown with each state."""

from __future__ import annotations

import itertools

import pytest

from mm_trio.core.lifecycle import (
    TRANSITIONS,
    Lifecycle,
    LifecycleError,
    LifecycleEvent,
    SymbolState,
)

S, E = SymbolState, LifecycleEvent

# every pair, written out: the next state, or None where the table must refuse
EXPECTED: dict[SymbolState, dict[LifecycleEvent, SymbolState | None]] = {
    S.STARTING: {
        E.STARTED: S.RUNNING,
        E.HALT: None,
        E.CLEAR: None,
        E.LOSS_LIMIT: None,
        E.KILL: S.STOPPED,
        E.RESUME: None,
        E.STOP: S.STOPPING,
        E.REMOVED: S.REMOVED,
        E.FAIL: S.FAILED,
    },
    S.RUNNING: {
        E.STARTED: None,
        E.HALT: S.HALTED,
        E.CLEAR: S.RUNNING,
        E.LOSS_LIMIT: S.STOPPED,
        E.KILL: S.STOPPED,
        E.RESUME: S.RUNNING,
        E.STOP: S.STOPPING,
        E.REMOVED: S.REMOVED,
        E.FAIL: S.FAILED,
    },
    S.HALTED: {
        E.STARTED: None,
        E.HALT: S.HALTED,
        E.CLEAR: S.RUNNING,
        E.LOSS_LIMIT: S.STOPPED,
        E.KILL: S.STOPPED,
        E.RESUME: S.RUNNING,
        E.STOP: S.STOPPING,
        E.REMOVED: S.REMOVED,
        E.FAIL: S.FAILED,
    },
    S.STOPPED: {
        E.STARTED: None,
        E.HALT: S.STOPPED,
        E.CLEAR: S.STOPPED,
        E.LOSS_LIMIT: S.STOPPED,
        E.KILL: S.STOPPED,
        E.RESUME: S.RUNNING,
        E.STOP: S.STOPPING,
        E.REMOVED: S.REMOVED,
        E.FAIL: S.FAILED,
    },
    S.STOPPING: {
        E.STARTED: None,
        E.HALT: S.STOPPING,
        E.CLEAR: S.STOPPING,
        E.LOSS_LIMIT: S.STOPPING,
        E.KILL: S.STOPPING,
        E.RESUME: S.STOPPING,
        E.STOP: S.STOPPING,
        E.REMOVED: S.REMOVED,
        E.FAIL: S.FAILED,
    },
    S.REMOVED: {e: None for e in LifecycleEvent},
    S.FAILED: {
        E.STARTED: None,
        E.HALT: None,
        E.CLEAR: None,
        E.LOSS_LIMIT: None,
        E.KILL: S.FAILED,
        E.RESUME: None,
        E.STOP: S.FAILED,
        E.REMOVED: S.FAILED,
        E.FAIL: S.FAILED,
    },
}


@pytest.mark.parametrize(
    ("state", "event"), list(itertools.product(SymbolState, LifecycleEvent)), ids=lambda v: v.value
)
def test_every_pair(state: SymbolState, event: LifecycleEvent) -> None:
    want = EXPECTED[state][event]
    lc = Lifecycle(state=state, reason="before")
    if want is None:
        with pytest.raises(LifecycleError, match=f"{state}.*{event.value}"):
            lc.apply(event, "why")
        assert lc.state is state and lc.reason == "before"  # nothing changed
    else:
        assert lc.apply(event, "why") is want
        assert lc.state is want


def test_the_table_is_exactly_the_expected_pairs() -> None:
    listed = {k: v for k, v in TRANSITIONS.items()}
    want = {(s, e): n for s, row in EXPECTED.items() for e, n in row.items() if n is not None}
    assert listed == want


def test_nothing_leads_back_to_trading_once_stopping() -> None:
    trading = {S.RUNNING, S.HALTED}
    for (state, _event), after in TRANSITIONS.items():
        if state in (S.STOPPING, S.REMOVED, S.FAILED):
            assert after not in trading


REASONS: list[tuple[str, SymbolState, str, LifecycleEvent, str, SymbolState, str]] = [
    # (case, state, reason before, event, event's reason, state after, reason after)
    ("halt gives its reason", S.RUNNING, "", E.HALT, "jump: 3%", S.HALTED, "jump: 3%"),
    ("a new halt reason replaces the old", S.HALTED, "jump", E.HALT, "stale", S.HALTED, "stale"),
    ("clear empties it", S.HALTED, "jump", E.CLEAR, "", S.RUNNING, ""),
    ("resume empties it", S.STOPPED, "kill switch: x", E.RESUME, "", S.RUNNING, ""),
    (
        "kill gives its reason",
        S.RUNNING,
        "",
        E.KILL,
        "kill switch: ops",
        S.STOPPED,
        "kill switch: ops",
    ),
    (
        "kill of a loss-limited symbol restates it",
        S.STOPPED,
        "loss limit: -5",
        E.KILL,
        "kill switch: ops",
        S.STOPPED,
        "kill switch: ops",
    ),
    (
        "a halt does not touch a stopped symbol",
        S.STOPPED,
        "loss limit: -5",
        E.HALT,
        "jump",
        S.STOPPED,
        "loss limit: -5",
    ),
    (
        "failure gives its reason",
        S.RUNNING,
        "",
        E.FAIL,
        "RuntimeError: bug",
        S.FAILED,
        "RuntimeError: bug",
    ),
    (
        "a failed symbol keeps its reason when removed",
        S.FAILED,
        "RuntimeError: bug",
        E.REMOVED,
        "",
        S.FAILED,
        "RuntimeError: bug",
    ),
    ("stopping keeps a halt's reason out", S.STOPPING, "", E.HALT, "jump", S.STOPPING, ""),
]


@pytest.mark.parametrize(
    ("case", "state", "before", "event", "reason", "after", "shown"),
    REASONS,
    ids=[r[0] for r in REASONS],
)
def test_reasons(
    case: str,
    state: SymbolState,
    before: str,
    event: LifecycleEvent,
    reason: str,
    after: SymbolState,
    shown: str,
) -> None:
    lc = Lifecycle(state=state, reason=before)
    assert lc.apply(event, reason) is after
    assert lc.reason == shown
