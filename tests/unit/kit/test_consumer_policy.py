"""The consumer's table of outcomes, and the routes derived from the contracts' payload types."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from deliveryhub_contracts.events import OrderCanceled, OrderCreated
from deliveryhub_kit.consumer import Decision, FailurePolicy, Outcome, event_routes
from deliveryhub_kit.failures import Failure, Verdict
from deliveryhub_kit.unit_of_work import UnitOfWork

POLICY = FailurePolicy(retry_delays=(1.0, 5.0, 30.0))


def test_an_outage_holds_the_message_however_often_it_failed() -> None:
    assert POLICY.decide(Failure(Verdict.OUTAGE, "no line"), attempts_before=7) == Decision(Outcome.HOLD)


@pytest.mark.parametrize(("attempts_before", "delay"), [(0, 1.0), (1, 5.0), (2, 30.0)])
def test_a_passing_failure_waits_longer_each_attempt(attempts_before: int, delay: float) -> None:
    decision = POLICY.decide(Failure(Verdict.RETRY, "deadlock"), attempts_before=attempts_before)

    assert decision == Decision(Outcome.DELAY, delay, attempts_before + 1)


def test_a_passing_failure_after_the_last_delay_is_dead_lettered() -> None:
    decision = POLICY.decide(Failure(Verdict.RETRY, "deadlock"), attempts_before=3)

    assert decision == Decision(Outcome.DEAD_LETTER, attempt=4)


@pytest.mark.parametrize("policy", [POLICY, FailurePolicy()], ids=["with delays", "without"])
def test_poison_is_dead_lettered_at_once(policy: FailurePolicy) -> None:
    decision = policy.decide(Failure(Verdict.POISON, "ValueError"), attempts_before=0)

    assert decision == Decision(Outcome.DEAD_LETTER, attempt=1)


async def on_created(work: UnitOfWork, event: OrderCreated) -> None:
    del work, event


async def on_canceled(work: UnitOfWork, event: OrderCanceled) -> None:
    del work, event


async def also_on_created(work: UnitOfWork, event: OrderCreated) -> None:
    del work, event


class NotAnEvent(BaseModel):
    name: str


async def on_something_else(work: UnitOfWork, event: NotAnEvent) -> None:
    del work, event


def test_routes_take_their_keys_from_the_contracts_table() -> None:
    routes = event_routes(on_created, on_canceled)

    assert {key: (route.payload_type, route.apply) for key, route in routes.items()} == {
        "order.created": (OrderCreated, on_created),
        "order.canceled": (OrderCanceled, on_canceled),
    }


def test_a_handler_of_no_event_type_is_refused() -> None:
    with pytest.raises(TypeError, match="on_something_else takes NotAnEvent"):
        event_routes(on_something_else)


def test_two_handlers_of_one_event_are_refused() -> None:
    with pytest.raises(ValueError, match=r"two handlers for order\.created"):
        event_routes(on_created, also_on_created)
