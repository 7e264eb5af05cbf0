"""The services' CloudEvents, built as each service builds them, for the other service to consume."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal

from deliveryhub_contracts.events import (
    DELIVERY_SOURCE,
    ORDERS_SOURCE,
    DeliveryAppointed,
    DeliveryCanceled,
    DeliveryFinished,
    Deliveryman,
    Envelope,
    OrderCanceled,
    OrderCancelRequested,
    OrderCreated,
    OrderPaid,
    Payload,
    make_envelope,
)
from deliveryhub_kit.db import utcnow
from tests.support.couriers import LAPTEV

ADDRESS = "Москва, Тверская улица, 7"
DELIVERY_DATE = datetime(2030, 5, 17, 14, 30, tzinfo=UTC)


def envelope_of(payload: Payload, source: str) -> Envelope:
    """`payload` in the envelope `source` sends it in: about its order, stamped now."""
    subject = str(getattr(payload, "order_id", ""))
    return make_envelope(payload, source=source, subject=subject, time=utcnow())


class OrderEvents:
    """The orders service's CloudEvents, built as it builds them."""

    def created(
        self,
        order_id: uuid.UUID,
        *,
        version: int = 1,
        address: str = ADDRESS,
        date: datetime = DELIVERY_DATE,
        customer_id: uuid.UUID | None = None,
    ) -> Envelope:
        return self.envelope(self.created_payload(order_id, version, address, date, customer_id))

    @staticmethod
    def created_payload(
        order_id: uuid.UUID,
        version: int = 1,
        address: str = ADDRESS,
        date: datetime = DELIVERY_DATE,
        customer_id: uuid.UUID | None = None,
    ) -> OrderCreated:
        return OrderCreated(
            order_id=order_id,
            customer_id=customer_id or uuid.uuid5(order_id, "customer"),
            address=address,
            date=date,
            total=Decimal("1250.50"),
            version=version,
        )

    def paid(
        self,
        order_id: uuid.UUID,
        *,
        version: int = 2,
        address: str = ADDRESS,
        date: datetime = DELIVERY_DATE,
        customer_id: uuid.UUID | None = None,
    ) -> Envelope:
        return self.envelope(self.paid_payload(order_id, version, address, date, customer_id))

    @staticmethod
    def paid_payload(
        order_id: uuid.UUID,
        version: int = 2,
        address: str = ADDRESS,
        date: datetime = DELIVERY_DATE,
        customer_id: uuid.UUID | None = None,
    ) -> OrderPaid:
        return OrderPaid(
            order_id=order_id,
            customer_id=customer_id or uuid.uuid5(order_id, "customer"),
            address=address,
            date=date,
            total=Decimal("1250.50"),
            version=version,
            paid_at=utcnow(),
        )

    def canceled(self, order_id: uuid.UUID, *, version: int, reason: str = "changed my mind") -> Envelope:
        return self.envelope(OrderCanceled(order_id=order_id, version=version, reason=reason))

    def cancel_requested(
        self, order_id: uuid.UUID, *, version: int = 3, reason: str = "canceled by the customer"
    ) -> Envelope:
        return self.envelope(OrderCancelRequested(order_id=order_id, version=version, reason=reason))

    @staticmethod
    def envelope(payload: Payload) -> Envelope:
        return envelope_of(payload, ORDERS_SOURCE)


class DeliveryEvents:
    """The delivery service's CloudEvents, built as it builds them."""

    def appointed(
        self, order_id: uuid.UUID | str, deliveryman: Deliveryman = LAPTEV, version: int = 3
    ) -> Envelope:
        return self.envelope(
            DeliveryAppointed(order_id=uuid.UUID(str(order_id)), deliveryman=deliveryman, version=version)
        )

    def finished(
        self, order_id: uuid.UUID | str, deliveryman: Deliveryman = LAPTEV, version: int = 4
    ) -> Envelope:
        return self.envelope(
            DeliveryFinished(
                order_id=uuid.UUID(str(order_id)),
                deliveryman_id=deliveryman.id,
                finished_at=utcnow(),
                version=version,
            )
        )

    def canceled(
        self, order_id: uuid.UUID | str, reason: str = "canceled by the shop manager", version: int = 4
    ) -> Envelope:
        return self.envelope(
            DeliveryCanceled(order_id=uuid.UUID(str(order_id)), reason=reason, version=version)
        )

    @staticmethod
    def envelope(payload: Payload) -> Envelope:
        return envelope_of(payload, DELIVERY_SOURCE)
