"""Resolving an order whose state a request left open: query it by client id until the venue
confirms it, or twice that it does not."""

from __future__ import annotations

import logging
from collections.abc import Callable
from decimal import Decimal

from mm_trio.core.orders.messages import (
    MAX_BACKOFF,
    RESOLVE_FIRST_DELAY,
    RESOLVE_MISSES,
    Action,
    Answer,
    ImpossibleAnswer,
    Note,
    NotFound,
    Ok,
    OrderFacts,
    Paused,
    Query,
    Refused,
    Resolved,
    Unknown,
    Wait,
    Waited,
    bad_answer,
)
from mm_trio.domain.model import OpenOrder, Side, order_mismatch


class Resolution:
    """Query an order by client id until the venue confirms the order we sent (``side``,
    ``price``, ``qty``, not updated before ``not_before_ns``) exists, or
    :data:`RESOLVE_MISSES` times that it does not. Ends with :class:`Resolved`."""

    def __init__(
        self,
        symbol: str,
        client_id: str,
        side: Side,
        price: Decimal,
        qty: Decimal,
        not_before_ns: int,
    ) -> None:
        self.symbol = symbol
        self.client_id = client_id
        self._expect = (side, price, qty)
        self._not_before = not_before_ns
        self.misses = 0
        self._delay = RESOLVE_FIRST_DELAY
        self._state = "query"

    def start(self) -> list[Action]:
        return [Query(self.symbol, self.client_id)]

    def _miss(self, actions: list[Action]) -> list[Action]:
        self.misses += 1
        if self.misses >= RESOLVE_MISSES:
            self._state = "done"
            actions.append(Resolved(None))
            return actions
        return self._later(actions)

    def _later(self, actions: list[Action]) -> list[Action]:
        actions.append(Wait(self._delay))
        self._delay = min(self._delay * 2, MAX_BACKOFF)
        self._state = "wait"
        return actions

    def then(
        self, answer: Answer, resolved: Callable[[OpenOrder | None], list[Action]]
    ) -> list[Action]:
        """:meth:`on` for a machine that runs this resolution inside its own: its end is
        replaced by what ``resolved`` does with the venue's order."""
        actions = self.on(answer)
        end = actions[-1]
        if type(end) is Resolved:
            return actions[:-1] + resolved(end.order)
        return actions

    def on(self, answer: Answer) -> list[Action]:
        state = self._state
        if state == "wait":
            if type(answer) is not Waited:
                raise bad_answer(self, state, answer)
            self._state = "query"
            return [Query(self.symbol, self.client_id)]
        if state != "query":
            raise bad_answer(self, state, answer)
        if type(answer) is Ok:
            side, price, qty = self._expect
            found = answer.order
            mismatch = order_mismatch(
                found, side=side, price=price, qty=qty, not_before_ns=self._not_before
            )
            if mismatch is None:
                self._state = "done"
                return [Resolved(found)]
            return self._miss(
                [
                    Note(
                        logging.ERROR,
                        (
                            f"the venue's order {self.client_id} (id {found.order_id}) "
                            f"is not the one we sent ({mismatch}); not adopting it"
                        ),
                    )
                ]
            )
        if type(answer) is NotFound:
            return self._miss([])
        if type(answer) is Unknown or type(answer) is Paused:
            return self._later([])
        if type(answer) is Refused:
            raise ImpossibleAnswer(f"query of {self.client_id} refused: {answer.message}")
        raise bad_answer(self, state, answer)


def expected(facts: OrderFacts, client_id: str) -> tuple[Side, Decimal, Decimal] | None:
    live = facts.live(client_id)
    return None if live is None else live[:3]
