"""What the bench sends: an order as the API takes it, and `order.created` as the orders service
emits it."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import aio_pika

from deliveryhub_cli.bench.options import Json
from deliveryhub_contracts.events import OrderCreated, make_envelope
from deliveryhub_kit.broker import OutgoingMessage


def order_body() -> Json:
    """The body of `POST /api/orders`: two items, delivered tomorrow."""
    return {
        "address": "ул. Ленина, 1, Москва",
        "date": (datetime.now(UTC) + timedelta(days=1)).isoformat(),
        "items": [
            {"name": "Чай", "quantity": 2, "price": "250.00"},
            {"name": "Пряник", "quantity": 3, "price": 49.9},
        ],
    }


def order_created_message(order_id: uuid.UUID | None = None) -> OutgoingMessage:
    """An `order.created` event as the orders service sends it."""
    order_id = order_id or uuid.uuid4()
    envelope = make_envelope(
        order_created(order_id), source="/orders", subject=str(order_id), time=datetime.now(UTC)
    )
    return OutgoingMessage(
        body=envelope.to_json(), message_id=str(envelope.id), type=envelope.routing_key, headers={}
    )


def order_created(order_id: uuid.UUID) -> OrderCreated:
    """The `order.created` event of the order `order_body` places."""
    return OrderCreated(
        order_id=order_id,
        customer_id=uuid.uuid4(),
        address="ул. Ленина, 1, Москва",
        date=datetime.now(UTC) + timedelta(days=1),
        total=Decimal("649.70"),
        version=1,
    )


def amqp_message(message: OutgoingMessage) -> aio_pika.Message:
    """The message as the services' broker publishes it: persistent, with its id and type."""
    return aio_pika.Message(
        body=message.body,
        message_id=message.message_id,
        type=message.type,
        content_type=message.content_type,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
    )
