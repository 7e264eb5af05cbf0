"""The order state machine and totals, without I/O."""

from __future__ import annotations

import enum
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal

from deliveryhub_orders.errors import InvalidTransition
from deliveryhub_orders.models import Order

CENT = Decimal("0.01")


class OrderStatus(enum.StrEnum):
    CREATED = "created"
    PAID = "paid"
    DELIVERED = "delivered"
    CANCELED = "canceled"


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


def cancel(order: Order, reason: str, now: datetime) -> None:
    if order.status not in (OrderStatus.CREATED, OrderStatus.PAID):
        raise InvalidTransition(f"an order that is {order.status} cannot be canceled")
    order.status = OrderStatus.CANCELED
    order.canceled_at = now
    order.cancel_reason = reason
    _touch(order, now)


def show_courier(order: Order, deliveryman_id: uuid.UUID, name: str, now: datetime) -> bool:
    """Record the appointed courier; False if it was already the one shown."""
    if order.deliveryman_id == deliveryman_id and order.deliveryman_name == name:
        return False
    order.deliveryman_id = deliveryman_id
    order.deliveryman_name = name
    _touch(order, now)
    return True


def delivered(order: Order, now: datetime) -> bool:
    """The delivery was finished; False if the order cannot (or need not) move."""
    if order.status not in (OrderStatus.CREATED, OrderStatus.PAID):
        return False
    order.status = OrderStatus.DELIVERED
    order.delivered_at = now
    _touch(order, now)
    return True


def delivery_canceled(order: Order, reason: str, now: datetime) -> bool:
    """The delivery was canceled; False if the order is already past canceling."""
    if order.status not in (OrderStatus.CREATED, OrderStatus.PAID):
        return False
    cancel(order, reason, now)
    return True
