"""Whether an order and its delivery agree: the rules of `deliveryhub check`, without I/O."""

from __future__ import annotations

import enum
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import NamedTuple

# The statuses each service stores: the contract's wire names.
ORDER_STATUSES = ("created", "paid", "canceling", "delivered", "canceled")
DELIVERY_STATUSES = ("created", "activated", "done", "canceled")


class Pairing(enum.Enum):
    """What an (order status, delivery status) pair says about the two services."""

    AGREE = "agree"
    # Agree, with a cancel request on its way: fine for a while, stuck after too long.
    IN_FLIGHT = "in flight"
    DISAGREE = "disagree"


# Every pair not named here disagrees.
STATUS_PAIRS: Mapping[tuple[str, str], Pairing] = {
    ("created", "created"): Pairing.AGREE,
    ("paid", "activated"): Pairing.AGREE,
    ("canceling", "created"): Pairing.IN_FLIGHT,  # order.cancel-requested on its way
    ("canceling", "activated"): Pairing.IN_FLIGHT,
    ("canceling", "done"): Pairing.IN_FLIGHT,  # delivery.finished on its way: delivered, cancel refused
    ("canceling", "canceled"): Pairing.IN_FLIGHT,  # delivery.canceled on its way
    ("delivered", "done"): Pairing.AGREE,
    ("canceled", "canceled"): Pairing.AGREE,
}


def pairing(order_status: str, delivery_status: str) -> Pairing:
    """How an order's status and its delivery's status go together."""
    return STATUS_PAIRS.get((order_status, delivery_status), Pairing.DISAGREE)


class FindingKind(enum.StrEnum):
    """What `deliveryhub check` reports about one order."""

    MISSING_DELIVERY = "missing_delivery"  # no delivery, or only the address-less placeholder
    ORPHAN_DELIVERY = "orphan_delivery"  # a delivery of an order the orders service does not have
    STATUS_MISMATCH = "status_mismatch"
    COURIER_MISMATCH = "courier_mismatch"
    STUCK = "stuck"  # canceling for longer than the threshold


class OrderRecord(NamedTuple):
    """What the check reads of one order (a tuple: millions are made, one per row)."""

    id: uuid.UUID
    status: str
    deliveryman_id: uuid.UUID | None
    cancel_requested_at: datetime | None
    updated_at: datetime


class DeliveryRecord(NamedTuple):
    """What the check reads of one delivery."""

    id: uuid.UUID
    status: str
    deliveryman_id: uuid.UUID | None
    # Written from an order snapshot; the teaching design's legacy producers send none.
    has_customer: bool
    # The record kept when an order's cancel arrived before its snapshot: it has no address.
    is_placeholder: bool
    updated_at: datetime


@dataclass(frozen=True)
class Finding:
    order_id: uuid.UUID
    kind: FindingKind
    order: OrderRecord | None
    delivery: DeliveryRecord | None
    # Since the last change of either side; for `stuck`, since the cancel was requested.
    age: timedelta


class Outcome(enum.Enum):
    """Where one order (or one delivery without an order) is counted."""

    AGREE = "agree"
    IN_FLIGHT = "in flight"
    DISAGREE = "disagree"
    # A delivery of the teaching design's legacy producers: it has no order to agree with.
    NOT_AN_ORDER = "not an order"


@dataclass(frozen=True)
class Verdict:
    outcome: Outcome
    findings: tuple[Finding, ...] = ()


AGREE = Verdict(Outcome.AGREE)
IN_FLIGHT = Verdict(Outcome.IN_FLIGHT)
NOT_AN_ORDER = Verdict(Outcome.NOT_AN_ORDER)


@dataclass(frozen=True)
class Rules:
    """Judges each pair as of `now`: what changed within `grace` is in flight, not a finding."""

    now: datetime
    grace: timedelta
    stuck_after: timedelta

    def judge(self, order: OrderRecord | None, delivery: DeliveryRecord | None) -> Verdict:
        """The verdict on one order id, given what each service holds for it."""
        subject: OrderRecord | DeliveryRecord
        if order is not None:
            subject = order
        elif delivery is not None and delivery.has_customer:
            subject = delivery
        else:
            return NOT_AN_ORDER
        kinds: list[FindingKind] = []
        in_flight = False
        if order is None:
            kinds.append(FindingKind.ORPHAN_DELIVERY)
        elif delivery is None or delivery.is_placeholder:
            kinds.append(FindingKind.MISSING_DELIVERY)
        else:
            paired = pairing(order.status, delivery.status)
            if paired is Pairing.DISAGREE:
                kinds.append(FindingKind.STATUS_MISMATCH)
            in_flight = paired is Pairing.IN_FLIGHT
            if order.deliveryman_id != delivery.deliveryman_id:
                kinds.append(FindingKind.COURIER_MISMATCH)
        waiting = self._waiting(order)
        if waiting is not None and waiting > self.stuck_after:
            kinds.append(FindingKind.STUCK)
        last_change = subject.updated_at
        if delivery is not None and delivery.updated_at > last_change:
            last_change = delivery.updated_at
        # The two databases are read at different moments and events take a while: a recent
        # change may be half-way, so it is counted, not reported.
        if kinds and self.now - last_change < self.grace:
            return IN_FLIGHT
        if not kinds:
            return IN_FLIGHT if in_flight else AGREE
        findings = tuple(
            Finding(
                order_id=subject.id,
                kind=kind,
                order=order,
                delivery=delivery,
                age=waiting if kind is FindingKind.STUCK and waiting is not None else self.now - last_change,
            )
            for kind in kinds
        )
        return Verdict(Outcome.DISAGREE, findings)

    def _waiting(self, order: OrderRecord | None) -> timedelta | None:
        """How long a canceling order has waited for the delivery service's answer."""
        if order is None or order.status != "canceling":
            return None
        return self.now - (order.cancel_requested_at or order.updated_at)


async def paired_by_id(
    orders: AsyncIterator[OrderRecord], deliveries: AsyncIterator[DeliveryRecord]
) -> AsyncIterator[tuple[OrderRecord | None, DeliveryRecord | None]]:
    """Merge two streams ordered by id into pairs of the same id, either side None when missing."""
    order = await anext(orders, None)
    delivery = await anext(deliveries, None)
    while order is not None or delivery is not None:
        if delivery is None or (order is not None and order.id < delivery.id):
            yield order, None
            order = await anext(orders, None)
        elif order is None or delivery.id < order.id:
            yield None, delivery
            delivery = await anext(deliveries, None)
        else:
            yield order, delivery
            order = await anext(orders, None)
            delivery = await anext(deliveries, None)
