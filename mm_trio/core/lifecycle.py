"""The lifecycle of one traded symbol, as a table (h11 style): looking the table up IS the
transition, and a pair it does not list raises :class:`LifecycleError`.

::

    STARTING --started--> RUNNING <--clear/resume-- HALTED
                            |  --halt-->              |
                            +---- stop --> STOPPING <-+      (removal or shutdown)
    RUNNING / HALTED --loss_limit/kill--> STOPPED --resume--> RUNNING
    STOPPING / STOPPED / RUNNING / HALTED --removed--> REMOVED
    any --fail--> FAILED  (an exception in the symbol's logic; its orders are cancelled)

Events that cannot change a state are listed as explicit "stays" entries (e.g. a breaker
clearing while the symbol is being removed), so every pair the shell can produce is
written down; anything else is a bug of ours. Stopping is one way: nothing leads from
STOPPING, REMOVED or FAILED back to trading.
"""

from __future__ import annotations

import enum

import msgspec


class SymbolState(enum.StrEnum):
    STARTING = "STARTING"
    RUNNING = "RUNNING"
    HALTED = "HALTED"  # a risk breaker or the governor: opening paused
    STOPPING = "STOPPING"  # being removed (or shut down): cancelling its orders
    STOPPED = "STOPPED"  # loss limit or kill switch: no orders until resumed
    REMOVED = "REMOVED"
    FAILED = "FAILED"


class LifecycleEvent(enum.Enum):
    STARTED = "started"  # its task runs
    HALT = "halt"  # a breaker tripped, or the governor says reduce-only
    CLEAR = "clear"  # every breaker cleared and the governor released it
    LOSS_LIMIT = "loss_limit"
    KILL = "kill"  # the operator's or the governor's kill switch
    RESUME = "resume"  # an operator resumed after a kill
    STOP = "stop"  # removal or shutdown begins
    REMOVED = "removed"  # its scope has exited
    FAIL = "fail"


class LifecycleError(RuntimeError):
    """A (state, event) pair the table does not list: a bookkeeping bug of ours."""


_S, _E = SymbolState, LifecycleEvent

#: ``(state, event) -> next state``
TRANSITIONS: dict[tuple[SymbolState, LifecycleEvent], SymbolState] = {
    (_S.STARTING, _E.STARTED): _S.RUNNING,
    (_S.STARTING, _E.KILL): _S.STOPPED,
    (_S.STARTING, _E.STOP): _S.STOPPING,
    (_S.STARTING, _E.REMOVED): _S.REMOVED,
    (_S.RUNNING, _E.HALT): _S.HALTED,
    (_S.RUNNING, _E.CLEAR): _S.RUNNING,
    (_S.RUNNING, _E.RESUME): _S.RUNNING,
    (_S.HALTED, _E.HALT): _S.HALTED,  # another reason: the reason is updated
    (_S.HALTED, _E.CLEAR): _S.RUNNING,
    (_S.HALTED, _E.RESUME): _S.RUNNING,
    (_S.STOPPED, _E.RESUME): _S.RUNNING,
    (_S.STOPPED, _E.HALT): _S.STOPPED,  # stays: gates do not move a stopped symbol
    (_S.STOPPED, _E.CLEAR): _S.STOPPED,
    (_S.STOPPED, _E.LOSS_LIMIT): _S.STOPPED,
    (_S.STOPPED, _E.KILL): _S.STOPPED,
    (_S.STOPPING, _E.HALT): _S.STOPPING,  # stays: stopping is one way
    (_S.STOPPING, _E.CLEAR): _S.STOPPING,
    (_S.STOPPING, _E.LOSS_LIMIT): _S.STOPPING,
    (_S.STOPPING, _E.KILL): _S.STOPPING,
    (_S.STOPPING, _E.RESUME): _S.STOPPING,
    (_S.STOPPING, _E.STOP): _S.STOPPING,
    (_S.STOPPING, _E.REMOVED): _S.REMOVED,
    (_S.FAILED, _E.STOP): _S.FAILED,  # stays: its orders were cancelled when it failed
    (_S.FAILED, _E.KILL): _S.FAILED,
    (_S.FAILED, _E.REMOVED): _S.FAILED,  # the reason stays visible in the summary
    (_S.FAILED, _E.FAIL): _S.FAILED,
}
for _state in (_S.RUNNING, _S.HALTED):
    TRANSITIONS[(_state, _E.LOSS_LIMIT)] = _S.STOPPED
    TRANSITIONS[(_state, _E.KILL)] = _S.STOPPED
for _state in (_S.RUNNING, _S.HALTED, _S.STOPPED):
    TRANSITIONS[(_state, _E.STOP)] = _S.STOPPING
    TRANSITIONS[(_state, _E.REMOVED)] = _S.REMOVED
for _state in SymbolState:
    if _state not in (_S.FAILED, _S.REMOVED):
        TRANSITIONS[(_state, _E.FAIL)] = _S.FAILED

# how the reason shown with the state changes: cleared, or replaced by the event's reason
_CLEARS_REASON = frozenset({_E.STARTED, _E.CLEAR, _E.RESUME})
# ... and these restate it when they land on their own state again
_RESTATES_REASON = {_E.HALT: _S.HALTED, _E.KILL: _S.STOPPED}


class Lifecycle(msgspec.Struct):
    """A symbol's state and the reason for it; change it only with :meth:`apply`."""

    state: SymbolState = SymbolState.STARTING
    reason: str = ""

    def apply(self, event: LifecycleEvent, reason: str = "") -> SymbolState:
        """Make the transition the table lists for ``event``; raise :class:`LifecycleError`
        for a pair it does not list. The reason is cleared when the symbol trades again,
        replaced by ``reason`` when the state changes (and on every HALT and KILL that
        lands on HALTED / STOPPED), and kept by the "stays" entries otherwise."""
        try:
            after = TRANSITIONS[(self.state, event)]
        except KeyError:
            raise LifecycleError(f"no transition from {self.state} on {event.value}") from None
        if event in _CLEARS_REASON:
            if after is _S.RUNNING:
                self.reason = ""
        elif after is not self.state:
            self.reason = reason
        elif _RESTATES_REASON.get(event) is after:
            self.reason = reason
        self.state = after
        return after
