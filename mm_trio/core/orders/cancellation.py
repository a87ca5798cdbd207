"""One cancel until its outcome is known."""

from __future__ import annotations

import logging

from mm_trio.core.orders.messages import (
    CANCEL_SENDS,
    Action,
    Adopt,
    Answer,
    AwaitPlace,
    Done,
    Note,
    NotFound,
    Ok,
    OrderFacts,
    Paused,
    PlaceSettled,
    PresumeGone,
    Refused,
    Resync,
    SendCancel,
    Unknown,
    Wait,
    Waited,
    backoff,
    bad_answer,
    shell_outcome,
)
from mm_trio.core.orders.resolution import Resolution, expected
from mm_trio.domain.intents import CancelOrder
from mm_trio.domain.model import TERMINAL_STATUSES, OpenOrder


class Cancellation:
    """One cancel until its outcome is known (see the module docstring). Ends with
    ``Done()``; a cancel that could not be confirmed asks for a :class:`Resync` first."""

    def __init__(
        self, intent: CancelOrder, facts: OrderFacts, *, lossless: bool, not_before_ns: int
    ) -> None:
        self.symbol = intent.symbol
        self.client_id = intent.client_id
        self._facts = facts
        self._lossless = lossless
        self._not_before = not_before_ns
        self.sends = 0
        self._resolution: Resolution | None = None
        self._after = ""  # what the resolution answers: "unknown_order" or "rejected"
        self._state = "start"

    def start(self) -> list[Action]:
        if self._facts.placing(self.client_id):
            # its place request is still on its way (cancels go first in the limiter);
            # one still queued for the limiter is withdrawn at once
            self._state = "await_place"
            return [AwaitPlace(self.client_id, recheck=True)]
        return self._send()

    def _send(self) -> list[Action]:
        self.sends += 1
        self._state = "send"
        return [SendCancel(self.symbol, self.client_id)]

    def _done(self, *effects: Action) -> list[Action]:
        self._state = "done"
        return [*effects, Done()]

    def _later(self) -> list[Action]:
        self._state = "backoff"
        return [Wait(backoff(self.sends))]

    def on(self, answer: Answer) -> list[Action]:
        state = self._state
        if state == "await_place":
            if type(answer) is not PlaceSettled:
                raise bad_answer(self, state, answer)
            # refused or withdrawn: the venue never had it, nothing to cancel
            return self._send() if answer.exists else self._done()
        if state == "backoff":
            if type(answer) is not Waited:
                raise bad_answer(self, state, answer)
            return self._send()
        if state == "send":
            return self._on_send(answer)
        if state == "resolve":
            assert self._resolution is not None
            return self._resolution.then(answer, self._on_resolved)
        raise bad_answer(self, state, answer)

    def _resolve(self, after: str, effects: list[Action]) -> list[Action]:
        expect = expected(self._facts, self.client_id)
        self._after = after
        if expect is None:  # ended meanwhile: nothing left to learn about it
            return effects + self._on_resolved(None)
        side, price, qty = expect
        self._resolution = Resolution(
            self.symbol, self.client_id, side, price, qty, self._not_before
        )
        self._state = "resolve"
        return effects + self._resolution.start()

    def _on_send(self, answer: Answer) -> list[Action]:
        if type(answer) is Ok:
            return self._done(*([] if self._lossless else [Adopt(answer.order)]))
        if type(answer) is Paused:
            return self._send()
        if type(answer) is NotFound:
            if self._facts.placing(self.client_id):
                # the cancel overtook its own place request: wait for that, then retry
                self._state = "await_place"
                return [AwaitPlace(self.client_id)]
            return self._resolve("unknown_order", [])  # it may have filled: ask
        if type(answer) is Unknown:
            if self.sends >= CANCEL_SENDS:
                return self._done(Resync())
            return self._later()
        if type(answer) is Refused:
            # not "unknown order" (e.g. a clock-skew refusal): learn the order's state and
            # try again, so it never lingers half-cancelled
            note = Note(logging.WARNING, f"cancel {self.client_id} rejected: {answer.message}")
            return self._resolve("rejected", [note])
        raise bad_answer(self, "send", answer)

    def _on_resolved(self, found: OpenOrder | None) -> list[Action]:
        if self._after == "unknown_order":
            if found is None:
                live = self._facts.live(self.client_id)
                if live is None:
                    return self._done()
                side, price, qty, filled = live
                return self._done(
                    PresumeGone(
                        shell_outcome(
                            self.symbol,
                            self.client_id,
                            side,
                            price,
                            qty,
                            "CANCELED",
                            "unknown to venue",
                            cum=filled,
                        )
                    )
                )
            if found.status in TERMINAL_STATUSES or self.sends >= CANCEL_SENDS:
                return self._done(Adopt(found))
            return [Adopt(found), *self._send()]
        effects: list[Action] = []
        if found is not None:
            effects.append(Adopt(found))
            if found.status in TERMINAL_STATUSES:
                return self._done(*effects)
        if self.sends >= CANCEL_SENDS:
            return self._done(*effects, Resync())
        return [*effects, *self._later()]
