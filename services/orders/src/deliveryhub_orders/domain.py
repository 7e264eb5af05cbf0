"""The order state machine and totals, without I/O."""

from __future__ import annotations

import enum
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal

from deliveryhub_kit.errors import InvalidTransition
from deliveryhub_orders.models import Order

CENT = Decimal("0.01")


class OrderStatus(enum.StrEnum):
    CREATED = "created"
    PAID = "paid"
    # A paid order's cancel was asked for; the delivery service decides: canceled, or delivered.
    CANCELING = "canceling"
    DELIVERED = "delivered"
    CANCELED = "canceled"


class CancelOutcome(enum.Enum):
    """What asking to cancel did: canceled the order at once, or asked the delivery service."""

    CANCELED = "canceled"
    REQUESTED = "requested"


@dataclass(frozen=True)
class Item:
    name: str
    quantity: int
    price: Decimal


def order_total(items: Iterable[Item]) -> Decimal:
    """The sum of quantity × price, to the cent."""
    total = sum((item.price * item.quantity for item in items), Decimal(0))
    return total.quantize(CENT, rounding=ROUND_HALF_UP)


def new_order(
    *, customer_id: uuid.UUID, address: str, date: datetime, items: list[Item], now: datetime
) -> Order:
    return Order(
        id=uuid.uuid4(),
        customer_id=customer_id,
        address=address,
        date=date,
        items=[{"name": i.name, "quantity": i.quantity, "price": str(i.price)} for i in items],
        total=order_total(items),
        status=OrderStatus.CREATED,
        version=1,
        courier_version=0,
        created_at=now,
        updated_at=now,
    )


def _touch(order: Order, now: datetime) -> None:
    order.version += 1
    order.updated_at = now


def pay(order: Order, now: datetime) -> None:
    if order.status != OrderStatus.CREATED:
        raise InvalidTransition(f"only a created order can be paid; this one is {order.status}")
    order.status = OrderStatus.PAID
    order.paid_at = now
    _touch(order, now)


def cancel(order: Order, reason: str, now: datetime) -> CancelOutcome:
    """An unpaid order cancels at once (its delivery cannot be done); a paid one asks the delivery
    service, which alone knows whether the parcel was handed over."""
    if order.status == OrderStatus.CREATED:
        _canceled(order, reason, now)
        return CancelOutcome.CANCELED
    if order.status == OrderStatus.PAID:
        order.status = OrderStatus.CANCELING
        order.cancel_requested_at = now
        order.cancel_reason = reason
        _touch(order, now)
        return CancelOutcome.REQUESTED
    if order.status == OrderStatus.CANCELING:
        raise InvalidTransition("this order's cancel is already requested; the delivery service decides")
    raise InvalidTransition(f"an order that is {order.status} cannot be canceled")


def _canceled(order: Order, reason: str, now: datetime) -> None:
    order.status = OrderStatus.CANCELED
    order.canceled_at = now
    order.cancel_reason = reason
    _touch(order, now)


def show_deliveryman(order: Order, deliveryman_id: uuid.UUID, name: str, version: int, now: datetime) -> bool:
    """Record the deliveryman a delivery event of `version` appointed; False when the order already
    shows a later appointment's (or this one's): an overtaken re-appointment changes nothing."""
    if version <= order.courier_version:
        return False
    order.courier_version = version
    if order.deliveryman_id == deliveryman_id and order.deliveryman_name == name:
        return False
    order.deliveryman_id = deliveryman_id
    order.deliveryman_name = name
    _touch(order, now)
    return True


def delivered(order: Order, finished_at: datetime, now: datetime) -> bool:
    """The delivery was finished; False if the order cannot (or need not) move. A cancel asked for
    meanwhile came too late: the order is delivered, and the refused cancel is kept on it."""
    if order.status == OrderStatus.CANCELING:
        order.cancel_refused = f"too late: delivered at {finished_at.astimezone(UTC):%Y-%m-%d %H:%M} UTC"
    elif order.status not in (OrderStatus.CREATED, OrderStatus.PAID):
        return False
    order.status = OrderStatus.DELIVERED
    order.delivered_at = now
    _touch(order, now)
    return True


def delivery_canceled(order: Order, reason: str, now: datetime) -> bool:
    """The delivery was canceled; False if the order is already past canceling."""
    if order.status not in (OrderStatus.CREATED, OrderStatus.PAID, OrderStatus.CANCELING):
        return False
    _canceled(order, reason, now)
    return True
