"""The orders and delivery APIs' documents as the console reads and sends them.

A tolerant reader: each document names only the fields the console uses and ignores the rest. Ids
and moments stay the text the API wrote: the pages show them, link with them and compare them
with what a form or a cookie sent back, all as text.
"""

from __future__ import annotations

from decimal import Decimal
from typing import TypeVar

from pydantic import BaseModel, ConfigDict


class Document(BaseModel):
    """Base of every document the console reads: fields it does not know are ignored."""

    model_config = ConfigDict(extra="ignore", frozen=True)


DocumentT = TypeVar("DocumentT", bound=Document)


class Deliveryman(Document):
    """The deliveryman appointed to a delivery, as an order or a delivery shows them."""

    id: str
    name: str


class DeliverymanLoad(Deliveryman):
    """A deliveryman of the deliverymen's list, with the deliveries open in their hands."""

    open_deliveries: int


class Item(Document):
    """One line of an order."""

    name: str
    quantity: int
    price: Decimal


class Order(Document):
    """An order as the orders API shows it."""

    id: str
    address: str
    date: str
    items: list[Item]
    total: Decimal
    status: str
    deliveryman: Deliveryman | None
    created_at: str
    cancel_refused: str | None = None


class Delivery(Document):
    """A delivery as the delivery API shows it."""

    id: str
    address: str
    date: str
    status: str
    deliveryman: Deliveryman | None


class Change(Document):
    """A record of either API's latest changes: which, when it changed, and whose it is."""

    id: str
    updated_at: str
    # An order's customer; a delivery's deliveryman, once one is appointed.
    customer_id: str | None = None
    deliveryman: Deliveryman | None = None


class Outcome(Document):
    """What the console reads of an action's answer: the record acted on and, if told, its status."""

    id: str
    status: str | None = None


class NewItem(BaseModel):
    """One line of a new order, as the orders API takes it."""

    model_config = ConfigDict(frozen=True)

    name: str
    quantity: int
    # The price as typed, with a decimal point: the orders API parses and bounds it.
    price: str


class NewOrder(BaseModel):
    """A new order, as the orders API takes it."""

    model_config = ConfigDict(frozen=True)

    address: str
    # The moment to deliver at, in ISO 8601 with the browser's offset.
    date: str
    items: list[NewItem]


class Appointment(BaseModel):
    """Whom to appoint to a delivery."""

    model_config = ConfigDict(frozen=True)

    deliveryman_id: str
