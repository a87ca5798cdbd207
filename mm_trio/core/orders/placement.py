"""One placement until its outcome is known."""

from __future__ import annotations

import logging

from mm_trio.core.orders.messages import (
    PLACE_SENDS,
    Action,
    Adopt,
    Answer,
    CountWithdrawn,
    Done,
    Feed,
    ImpossibleAnswer,
    Note,
    NotFound,
    Ok,
    OrderFacts,
    Paused,
    PresumeGone,
    Refused,
    SendPlace,
    Unknown,
    Withdrawn,
    bad_answer,
    request_outcome,
)
from mm_trio.core.orders.resolution import Resolution
from mm_trio.domain.model import OpenOrder, OrderRequest


class Placement:
    """One place request until its outcome is known (see the module docstring).

    Ends with ``Done(exists)``: ``exists`` is False when the venue never created the order
    (refused, withdrawn before any send, given up on), so a cancel waiting for it need not
    be sent.
    """

    def __init__(
        self, request: OrderRequest, facts: OrderFacts, *, lossless: bool, not_before_ns: int
    ) -> None:
        self.request = request
        self._facts = facts
        self._lossless = lossless
        self._not_before = not_before_ns
        self.sends = 0
        self._was_unknown = False  # an earlier send timed out: it may still land late
        self._duplicate = ""  # the refusal, while a duplicate is being resolved
        self._resolution: Resolution | None = None
        self._state = "send"

    def _send(self) -> list[Action]:
        self.sends += 1
        self._state = "send"
        return [SendPlace(self.request)]

    def start(self) -> list[Action]:
        return self._send()

    def _resolve(self, what: str, message: str) -> list[Action]:
        r = self.request
        self._resolution = Resolution(
            r.symbol, r.client_id, r.side, r.price, r.qty, self._not_before
        )
        self._state = "resolve"
        return [
            Note(logging.WARNING, f"place {r.client_id} {what} ({message}); querying"),
            *self._resolution.start(),
        ]

    def on(self, answer: Answer) -> list[Action]:
        if self._state == "send":
            return self._on_send(answer)
        if self._state == "resolve":
            assert self._resolution is not None
            return self._resolution.then(answer, self._on_resolved)
        raise bad_answer(self, self._state, answer)

    def _on_send(self, answer: Answer) -> list[Action]:
        r = self.request
        if type(answer) is Ok:
            self._state = "done"
            # the stream reports it too; the answer itself keeps the grid moving while a
            # user stream is down (applying both is harmless: reports are idempotent)
            actions: list[Action] = [] if self._lossless else [Adopt(answer.order)]
            return [*actions, Done(True)]
        if type(answer) is Paused:
            return self._send()  # the same client id: a retry is not a new order
        if type(answer) is Withdrawn:
            self._state = "done"
            ended = request_outcome(r, "CANCELED", "withdrawn before it was sent")
            # after a timeout the first send may still land: watch it, let a cancel go
            end = PresumeGone(ended) if self._was_unknown else Feed(ended)
            return [CountWithdrawn(), end, Done(self._was_unknown)]
        if type(answer) is Refused:
            if answer.kind == "duplicate":
                # the venue already holds this id: an earlier send of ours landed after all
                self._duplicate = f"{answer.kind}: {answer.message}"
                return self._resolve("refused as a duplicate", answer.message)
            self._state = "done"
            return [
                Feed(request_outcome(r, "REJECTED", f"{answer.kind}: {answer.message}")),
                Done(False),
            ]
        if type(answer) is Unknown:
            self._was_unknown = True
            return self._resolve("outcome unknown", answer.message)
        if type(answer) is NotFound:
            raise ImpossibleAnswer(f"placement {r.client_id} answered 'unknown order'")
        raise bad_answer(self, "send", answer)

    def _on_resolved(self, found: OpenOrder | None) -> list[Action]:
        r = self.request
        if found is not None:
            self._state = "done"
            return [Adopt(found), Done(True)]
        if self._facts.acknowledged(r.client_id):
            self._state = "done"
            return [Done(True)]  # the stream reported it meanwhile: it exists
        if self._duplicate:
            # unknown to a query, yet a duplicate: end it, watch it, let a cancel still go
            self._state = "done"
            return [PresumeGone(request_outcome(r, "REJECTED", self._duplicate)), Done(True)]
        if self.sends >= PLACE_SENDS:
            self._state = "done"
            return [
                PresumeGone(request_outcome(r, "REJECTED", "outcome_unknown: gave up")),
                Done(False),
            ]
        return self._send()  # confirmed absent twice: safe to send again under the same id
