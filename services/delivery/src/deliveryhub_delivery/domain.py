"""The delivery state machine and how order events move it, without I/O."""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from deliveryhub_delivery.models import Delivery, Deliveryman
from deliveryhub_kit.errors import InvalidTransition


class DeliveryStatus(enum.StrEnum):
    CREATED = "created"
    ACTIVATED = "activated"
    DONE = "done"
    CANCELED = "canceled"


class OrderChange(enum.StrEnum):
    """What an order event says happened to the order."""

    CREATED = "created"
    PAID = "paid"
    CANCELED = "canceled"
    # A paid order's cancel, which this service decides: canceled unless the delivery is done.
    CANCEL_REQUESTED = "cancel-requested"


@dataclass(frozen=True, slots=True)
class Courier:
    """A courier as a read delivery names them."""

    id: uuid.UUID
    name: str


@dataclass(frozen=True, slots=True)
class DeliveryView:
    """A delivery as the read routes show it: a plain row, read without the ORM's bookkeeping."""

    id: uuid.UUID
    address: str | None
    date: datetime | None
    status: DeliveryStatus
    deliveryman: Courier | None
    created_at: datetime
    updated_at: datetime

    @property
    def deliveryman_id(self) -> uuid.UUID | None:
        return self.deliveryman.id if self.deliveryman else None

    @property
    def awaits_snapshot(self) -> bool:
        """A placeholder with no address yet (see `Delivery`): never shown."""
        return self.address is None

    @classmethod
    def of(cls, source: Any, deliveryman: Courier | None) -> DeliveryView:
        """The view of a delivery's columns (a row read for it, or a `Delivery`) and its courier."""
        return cls(
            id=source.id,
            address=source.address,
            date=source.date,
            status=DeliveryStatus(source.status),
            deliveryman=deliveryman,
            created_at=source.created_at,
            updated_at=source.updated_at,
        )


@dataclass(frozen=True)
class OrderFacts:
    """What one order event tells the delivery service; `version` is None for legacy messages."""

    order_id: uuid.UUID
    change: OrderChange
    version: int | None = None
    address: str | None = None
    date: datetime | None = None
    customer_id: uuid.UUID | None = None
    reason: str | None = None


def new_delivery(order_id: uuid.UUID, now: datetime) -> Delivery:
    return Delivery(
        id=order_id,
        status=DeliveryStatus.CREATED,
        order_version=0,
        version=1,
        created_at=now,
        updated_at=now,
    )


def _changed(delivery: Delivery, now: datetime) -> None:
    delivery.version += 1
    delivery.updated_at = now


def absorb_order_facts(delivery: Delivery, facts: OrderFacts, now: datetime) -> bool:
    """Move the delivery as the order event says, never backwards; stale events only fill gaps.

    True when this canceled the delivery on a cancel request, which the orders service waits to
    hear about; a request for a delivery that is done changes nothing (its `delivery.finished`
    tells the orders service the cancel came too late).
    """
    stale = facts.version is not None and facts.version <= delivery.order_version
    if delivery.awaits_snapshot and facts.address is not None:
        delivery.address = facts.address
    if delivery.date is None and facts.date is not None:
        delivery.date = facts.date
    if delivery.customer_id is None and facts.customer_id is not None:
        delivery.customer_id = facts.customer_id
    if stale:
        return False
    if facts.version is not None:
        delivery.order_version = facts.version
    status = DeliveryStatus(delivery.status)
    delivery.updated_at = now
    if facts.change is OrderChange.PAID and status is DeliveryStatus.CREATED:
        delivery.status = DeliveryStatus.ACTIVATED
        delivery.activated_at = now
        _changed(delivery, now)
        return False
    canceling = facts.change in (OrderChange.CANCELED, OrderChange.CANCEL_REQUESTED)
    if canceling and status in (DeliveryStatus.CREATED, DeliveryStatus.ACTIVATED):
        delivery.status = DeliveryStatus.CANCELED
        delivery.canceled_at = now
        delivery.cancel_reason = facts.reason or "the order was canceled"
        _changed(delivery, now)
        return facts.change is OrderChange.CANCEL_REQUESTED
    return False


def appoint(delivery: Delivery, deliveryman: Deliveryman, now: datetime) -> None:
    """Appoint (or re-appoint) a courier; only an activated delivery takes one."""
    if delivery.status != DeliveryStatus.ACTIVATED:
        raise InvalidTransition(
            f"a courier can be appointed only to an activated delivery; this one is {delivery.status}"
        )
    delivery.deliveryman_id = deliveryman.id
    delivery.deliveryman = deliveryman
    _changed(delivery, now)


def finish(delivery: Delivery, now: datetime) -> None:
    """Mark delivered: the delivery must be activated and have a courier."""
    if delivery.status != DeliveryStatus.ACTIVATED:
        raise InvalidTransition(f"only an activated delivery can be finished; this one is {delivery.status}")
    if delivery.deliveryman_id is None:
        raise InvalidTransition("no courier is appointed to this delivery yet")
    delivery.status = DeliveryStatus.DONE
    delivery.finished_at = now
    _changed(delivery, now)


def cancel(delivery: Delivery, reason: str, now: datetime) -> None:
    """Cancel anything but a finished or already canceled delivery."""
    if delivery.status in (DeliveryStatus.DONE, DeliveryStatus.CANCELED):
        raise InvalidTransition(f"a delivery that is {delivery.status} cannot be canceled")
    delivery.status = DeliveryStatus.CANCELED
    delivery.canceled_at = now
    delivery.cancel_reason = reason
    _changed(delivery, now)
