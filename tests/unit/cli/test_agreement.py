"""The rules of `deliveryhub check`: when an order and its delivery agree, without I/O."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterable
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import pytest

from deliveryhub_cli.agreement import (
    DELIVERY_STATUSES,
    ORDER_STATUSES,
    DeliveryRecord,
    FindingKind,
    OrderRecord,
    Outcome,
    Rules,
    paired_by_id,
)
from deliveryhub_delivery.domain import DeliveryStatus
from deliveryhub_orders.domain import OrderStatus

T = TypeVar("T")

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
LONG_AGO = NOW - timedelta(hours=1)
LAPTEV = uuid.UUID("85db966c-67f1-411e-95c0-f02edfa5464a")
ZUEV = uuid.UUID("31babbb3-5541-4a2a-8201-537cdff25fed")
RULES = Rules(now=NOW, grace=timedelta(seconds=60), stuck_after=timedelta(seconds=300))

# Every pair the two services may hold, and what the check makes of it when nothing changed lately
# and no cancel has waited long: the agreeing pairs, the pairs of a cancel on its way, and the rest.
EXPECTED: dict[tuple[str, str], Outcome] = {
    (order_status, delivery_status): Outcome.DISAGREE
    for order_status in ORDER_STATUSES
    for delivery_status in DELIVERY_STATUSES
} | {
    ("created", "created"): Outcome.AGREE,
    ("paid", "activated"): Outcome.AGREE,
    ("canceling", "created"): Outcome.IN_FLIGHT,
    ("canceling", "activated"): Outcome.IN_FLIGHT,
    ("canceling", "done"): Outcome.IN_FLIGHT,
    ("canceling", "canceled"): Outcome.IN_FLIGHT,
    ("delivered", "done"): Outcome.AGREE,
    ("canceled", "canceled"): Outcome.AGREE,
}


def order(
    status: str,
    *,
    order_id: uuid.UUID | None = None,
    courier: uuid.UUID | None = None,
    updated_at: datetime = LONG_AGO,
    cancel_requested_at: datetime | None = None,
) -> OrderRecord:
    if status == "canceling" and cancel_requested_at is None:
        cancel_requested_at = updated_at
    return OrderRecord(
        id=order_id or uuid.uuid4(),
        status=status,
        deliveryman_id=courier,
        cancel_requested_at=cancel_requested_at,
        updated_at=updated_at,
    )


def delivery(
    status: str,
    *,
    of: OrderRecord | None = None,
    courier: uuid.UUID | None = None,
    updated_at: datetime = LONG_AGO,
    has_customer: bool = True,
    is_placeholder: bool = False,
) -> DeliveryRecord:
    return DeliveryRecord(
        id=of.id if of is not None else uuid.uuid4(),
        status=status,
        deliveryman_id=courier,
        has_customer=has_customer,
        is_placeholder=is_placeholder,
        updated_at=updated_at,
    )


def test_the_statuses_are_the_services_own() -> None:
    assert set(ORDER_STATUSES) == {status.value for status in OrderStatus}
    assert set(DELIVERY_STATUSES) == {status.value for status in DeliveryStatus}


@pytest.mark.parametrize(("order_status", "delivery_status"), sorted(EXPECTED))
def test_every_pair_of_statuses(order_status: str, delivery_status: str) -> None:
    # Changed two minutes ago: past the grace period; a cancel asked for then is not stuck yet.
    placed = order(order_status, courier=LAPTEV, updated_at=NOW - timedelta(minutes=2))

    verdict = RULES.judge(placed, delivery(delivery_status, of=placed, courier=LAPTEV))

    assert verdict.outcome is EXPECTED[order_status, delivery_status]
    kinds = [finding.kind for finding in verdict.findings]
    assert kinds == ([FindingKind.STATUS_MISMATCH] if verdict.outcome is Outcome.DISAGREE else [])


def test_a_disagreeing_pair_is_reported_with_both_sides_and_its_age() -> None:
    placed = order("paid", updated_at=NOW - timedelta(minutes=10))
    done = delivery("done", of=placed, updated_at=NOW - timedelta(minutes=5))

    (finding,) = RULES.judge(placed, done).findings

    assert finding.kind is FindingKind.STATUS_MISMATCH
    assert finding.order_id == placed.id
    assert (finding.order, finding.delivery) == (placed, done)
    assert finding.age == timedelta(minutes=5)  # since the later change of the two


def test_an_order_without_a_delivery_or_with_only_the_placeholder_misses_it() -> None:
    placed = order("paid")
    placeholder = delivery("canceled", of=placed, is_placeholder=True, has_customer=False)

    for found in (None, placeholder):
        verdict = RULES.judge(placed, found)
        assert verdict.outcome is Outcome.DISAGREE
        assert [finding.kind for finding in verdict.findings] == [FindingKind.MISSING_DELIVERY]


def test_a_delivery_of_an_order_that_does_not_exist_is_an_orphan() -> None:
    verdict = RULES.judge(None, delivery("activated"))

    assert [finding.kind for finding in verdict.findings] == [FindingKind.ORPHAN_DELIVERY]


def test_a_legacy_producers_delivery_has_no_order_to_agree_with() -> None:
    verdict = RULES.judge(None, delivery("activated", has_customer=False))

    assert verdict.outcome is Outcome.NOT_AN_ORDER
    assert verdict.findings == ()


@pytest.mark.parametrize(
    ("order_courier", "delivery_courier"), [(None, LAPTEV), (LAPTEV, None), (LAPTEV, ZUEV)]
)
def test_a_different_courier_disagrees(
    order_courier: uuid.UUID | None, delivery_courier: uuid.UUID | None
) -> None:
    placed = order("delivered", courier=order_courier)

    verdict = RULES.judge(placed, delivery("done", of=placed, courier=delivery_courier))

    assert [finding.kind for finding in verdict.findings] == [FindingKind.COURIER_MISMATCH]


def test_status_and_courier_are_both_reported() -> None:
    placed = order("delivered", courier=LAPTEV)

    verdict = RULES.judge(placed, delivery("activated", of=placed, courier=ZUEV))

    assert [finding.kind for finding in verdict.findings] == [
        FindingKind.STATUS_MISMATCH,
        FindingKind.COURIER_MISMATCH,
    ]


@pytest.mark.parametrize("delivery_status", ["created", "activated", "done", "canceled"])
def test_a_cancel_waiting_past_the_threshold_is_stuck(delivery_status: str) -> None:
    requested_at = NOW - timedelta(minutes=6)
    placed = order("canceling", updated_at=requested_at, cancel_requested_at=requested_at)

    (finding,) = RULES.judge(placed, delivery(delivery_status, of=placed, updated_at=LONG_AGO)).findings

    assert finding.kind is FindingKind.STUCK
    assert finding.age == timedelta(minutes=6)


def test_a_cancel_within_the_threshold_is_in_flight() -> None:
    requested_at = NOW - timedelta(minutes=4)
    placed = order("canceling", updated_at=requested_at, cancel_requested_at=requested_at)

    assert RULES.judge(placed, delivery("activated", of=placed)).outcome is Outcome.IN_FLIGHT


def test_a_canceling_order_without_its_delivery_is_missing_it_and_stuck() -> None:
    placed = order("canceling", updated_at=LONG_AGO)

    verdict = RULES.judge(placed, None)

    assert [finding.kind for finding in verdict.findings] == [FindingKind.MISSING_DELIVERY, FindingKind.STUCK]


@pytest.mark.parametrize("changed", ["order", "delivery"])
def test_a_change_within_the_grace_period_is_in_flight_not_a_finding(changed: str) -> None:
    recently = NOW - timedelta(seconds=30)
    placed = order("paid", updated_at=recently if changed == "order" else LONG_AGO)
    done = delivery("done", of=placed, updated_at=recently if changed == "delivery" else LONG_AGO)

    assert RULES.judge(placed, done).outcome is Outcome.IN_FLIGHT
    assert RULES.judge(None, delivery("done", updated_at=recently)).outcome is Outcome.IN_FLIGHT
    assert RULES.judge(order("paid", updated_at=recently), None).outcome is Outcome.IN_FLIGHT


def test_without_a_grace_period_everything_is_judged_as_it_is() -> None:
    rules = Rules(now=NOW, grace=timedelta(0), stuck_after=timedelta(seconds=300))
    placed = order("paid", updated_at=NOW - timedelta(milliseconds=1))

    verdict = rules.judge(placed, delivery("done", of=placed, updated_at=NOW - timedelta(milliseconds=1)))

    assert [finding.kind for finding in verdict.findings] == [FindingKind.STATUS_MISMATCH]


def test_a_change_after_the_check_began_is_in_flight_even_without_a_grace_period() -> None:
    rules = Rules(now=NOW, grace=timedelta(0), stuck_after=timedelta(seconds=300))
    placed = order("paid", updated_at=NOW + timedelta(seconds=1))

    assert rules.judge(placed, None).outcome is Outcome.IN_FLIGHT


async def stream(items: Iterable[T]) -> AsyncIterator[T]:
    for item in items:
        yield item


async def test_the_two_streams_are_paired_by_id() -> None:
    ids = sorted(uuid.uuid4() for _ in range(7))
    orders = [order("paid", order_id=ids[i]) for i in (0, 1, 3, 5)]
    deliveries = [delivery("activated", of=orders[1]), delivery("activated", of=orders[2])]
    deliveries += [delivery("done", of=order("paid", order_id=ids[i])) for i in (2, 4, 6)]
    deliveries.sort(key=lambda record: record.id)

    pairs = [pair async for pair in paired_by_id(stream(orders), stream(deliveries))]

    by_id = {record.id: record for record in deliveries}
    assert [(o.id if o else None, d.id if d else None) for o, d in pairs] == [
        (ids[0], None),
        (ids[1], ids[1]),
        (None, ids[2]),
        (ids[3], ids[3]),
        (None, ids[4]),
        (ids[5], None),
        (None, ids[6]),
    ]
    assert all(d is None or d is by_id[d.id] for _, d in pairs)


async def test_empty_streams_pair_nothing() -> None:
    assert [pair async for pair in paired_by_id(stream([]), stream([]))] == []
