"""The orders service's HTTP shapes."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

from deliveryhub_contracts.events import Amount
from deliveryhub_contracts.values import (
    MAX_ADDRESS_LENGTH,
    MAX_AMOUNT,
    MAX_NAME_LENGTH,
    Moment,
    storable_text,
)
from deliveryhub_orders.domain import Item, OrderStatus, order_total
from deliveryhub_orders.models import Order

MAX_ITEMS = 100
MAX_TOTAL = MAX_AMOUNT

# The same bounds the orders' events are held to (deliveryhub_contracts.values); input is also trimmed.
Name = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_NAME_LENGTH),
    AfterValidator(storable_text),
]
Address = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_ADDRESS_LENGTH),
    AfterValidator(storable_text),
]
DeliveryDate = Moment


class ItemIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name
    quantity: int = Field(gt=0, le=10_000)
    price: Decimal = Field(ge=0, max_digits=12, decimal_places=2)

    def to_item(self) -> Item:
        return Item(name=self.name, quantity=self.quantity, price=self.price)


class OrderCreate(BaseModel):
    """A new order; the server computes its total."""

    model_config = ConfigDict(extra="forbid")

    address: Address
    date: DeliveryDate = Field(description="When to deliver; must carry a time zone")
    items: list[ItemIn] = Field(min_length=1, max_length=MAX_ITEMS)

    @model_validator(mode="after")
    def _total_is_storable(self) -> OrderCreate:
        if order_total(item.to_item() for item in self.items) > MAX_TOTAL:
            raise ValueError(f"the order's total is more than {MAX_TOTAL}")
        return self


class ItemOut(BaseModel):
    name: str
    quantity: int
    price: Amount


class DeliverymanOut(BaseModel):
    id: uuid.UUID
    name: str


class OrderOut(BaseModel):
    id: uuid.UUID
    customer_id: uuid.UUID
    address: str
    date: datetime
    items: list[ItemOut]
    total: Amount
    status: OrderStatus
    deliveryman: DeliverymanOut | None
    created_at: datetime
    updated_at: datetime
    cancel_requested_at: datetime | None = Field(
        default=None, description="When a cancel of the paid order was asked for"
    )
    cancel_refused: str | None = Field(
        default=None, description="Why a requested cancel did not happen, e.g. too late: delivered at ..."
    )

    @classmethod
    def of(cls, order: Order) -> OrderOut:
        deliveryman = (
            DeliverymanOut(id=order.deliveryman_id, name=order.deliveryman_name or "")
            if order.deliveryman_id is not None
            else None
        )
        return cls(
            id=order.id,
            customer_id=order.customer_id,
            address=order.address,
            date=order.date,
            items=[ItemOut.model_validate(item) for item in order.items],
            total=order.total,
            status=OrderStatus(order.status),
            deliveryman=deliveryman,
            created_at=order.created_at,
            updated_at=order.updated_at,
            cancel_requested_at=order.cancel_requested_at,
            cancel_refused=order.cancel_refused,
        )

    def to_document(self) -> dict[str, Any]:
        return self.model_dump(mode="json")
