"""How a consumer turns broker bytes into a typed event, or refuses them for the dead-letter queue."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from deliveryhub_contracts.events import (
    ORDERS_SOURCE,
    DeliveryCanceled,
    MalformedEvent,
    OrderCanceled,
    make_envelope,
)
from deliveryhub_contracts.legacy import LegacyOrderCreated
from deliveryhub_kit.consumer import cloud_event_decoder, plain_json_decoder, route

ORDER_ID = uuid.UUID("2f0b8f9e-4a61-4c3e-9d0a-7b5f3e1c2d44")
LEGACY_NAMESPACE = uuid.UUID("6f1c2a8e-3b7d-4e0a-9d51-2c4b8f7a1e30")
LEGACY_BODY = json.dumps(
    {"order_id": str(ORDER_ID), "date": "2025-03-03T15:00:00", "address": "Москва, ул. Ленина, д. 1"}
).encode()


@dataclass
class Message:
    """A delivered message as the broker hands it over."""

    body: bytes
    message_id: str | None = None
    routing_key: str = "order.canceled"
    content_type: str | None = "application/json"
    redelivered: bool = False
    headers: Mapping[str, object] = field(default_factory=dict)

    async def ack(self) -> None:
        raise AssertionError("decoding must not settle the message")

    async def reject(self, *, requeue: bool) -> None:
        raise AssertionError("decoding must not settle the message")


async def cancel_order(session: AsyncSession, event: OrderCanceled) -> None:
    """A handler that is never reached: decoding happens before any handler runs."""


decode_order_events = cloud_event_decoder({"order.canceled": route(OrderCanceled, cancel_order)})
decode_legacy_created = plain_json_decoder("legacy.order_created", LegacyOrderCreated, LEGACY_NAMESPACE)


def test_a_cloud_event_is_decoded_with_its_id_as_the_dedup_key() -> None:
    event = OrderCanceled(order_id=ORDER_ID, version=2, reason="changed my mind")
    envelope = make_envelope(event, source=ORDERS_SOURCE, subject=str(ORDER_ID), time=datetime.now(UTC))

    decoded = decode_order_events(Message(envelope.to_json()))

    assert decoded.event_id == envelope.id
    assert decoded.key == "order.canceled"
    assert decoded.payload == event


def test_an_event_without_a_route_is_malformed() -> None:
    envelope = make_envelope(
        DeliveryCanceled(order_id=ORDER_ID, reason="r"),
        source="/delivery",
        subject="s",
        time=datetime.now(UTC),
    )

    with pytest.raises(MalformedEvent, match=r"no handler for event type 'deliveryhub\.delivery\.canceled'"):
        decode_order_events(Message(envelope.to_json()))


@pytest.mark.parametrize("body", [b"", b"not json", b"[]", b'{"specversion": "1.0"}'])
def test_bytes_that_are_not_an_event_are_malformed(body: bytes) -> None:
    with pytest.raises(MalformedEvent):
        decode_order_events(Message(body))


def test_a_cloud_event_with_invalid_data_is_malformed() -> None:
    envelope = make_envelope(
        OrderCanceled(order_id=ORDER_ID, version=2, reason="r"),
        source=ORDERS_SOURCE,
        subject="s",
        time=datetime.now(UTC),
    )
    broken = envelope.model_copy(update={"data": {**envelope.data, "version": "second"}})

    with pytest.raises(MalformedEvent, match="version"):
        decode_order_events(Message(broken.to_json()))


def test_a_legacy_message_is_decoded() -> None:
    decoded = decode_legacy_created(Message(LEGACY_BODY))

    assert decoded.key == "legacy.order_created"
    assert isinstance(decoded.payload, LegacyOrderCreated)
    assert decoded.payload.order_id == ORDER_ID


def test_a_redelivered_legacy_message_without_an_id_keeps_its_id() -> None:
    first = decode_legacy_created(Message(LEGACY_BODY))
    again = decode_legacy_created(Message(LEGACY_BODY, redelivered=True))
    other = decode_legacy_created(Message(LEGACY_BODY.replace(b"15:00", b"16:00")))

    assert first.event_id == again.event_id
    assert first.event_id != other.event_id


def test_a_legacy_message_id_is_the_dedup_key() -> None:
    message_id = uuid.uuid4()

    decoded = decode_legacy_created(Message(LEGACY_BODY, message_id=str(message_id)))

    assert decoded.event_id == message_id


def test_a_legacy_message_id_that_is_not_a_uuid_still_names_it_stably() -> None:
    first = decode_legacy_created(Message(LEGACY_BODY, message_id="order-created-42"))
    again = decode_legacy_created(
        Message(LEGACY_BODY.replace(b"15:00", b"16:00"), message_id="order-created-42")
    )

    assert first.event_id == again.event_id


@pytest.mark.parametrize(
    "body",
    [b"not json", b"[]", b'{"order_id": "42", "date": "2025-03-03", "address": "x"}', b'{"order_id": null}'],
)
def test_an_invalid_legacy_message_is_malformed(body: bytes) -> None:
    with pytest.raises(MalformedEvent, match=r"invalid legacy\.order_created message"):
        decode_legacy_created(Message(body))
