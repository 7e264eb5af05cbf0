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
    ForeignEvent,
    MalformedEvent,
    OrderCanceled,
    make_envelope,
)
from deliveryhub_contracts.legacy import LegacyOrderCreated
from deliveryhub_kit.consumer import Route, cloud_event_decoder, plain_json_decoder

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
    exchange: str = "deliveryhub.events"
    content_type: str | None = "application/json"
    redelivered: bool = False
    delivery_count: int = 0
    headers: Mapping[str, object] = field(default_factory=dict)

    async def ack(self) -> None:
        raise AssertionError("decoding must not settle the message")

    async def requeue(self) -> None:
        raise AssertionError("decoding must not settle the message")

    async def reject(self) -> None:
        raise AssertionError("decoding must not settle the message")


async def cancel_order(session: AsyncSession, event: OrderCanceled) -> None:
    """A handler that is never reached: decoding happens before any handler runs."""


decode_order_events = cloud_event_decoder({"order.canceled": Route(OrderCanceled, cancel_order)})
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
        DeliveryCanceled(order_id=ORDER_ID, reason="r", version=2),
        source="/delivery",
        subject=str(ORDER_ID),
        time=datetime.now(UTC),
    )

    with pytest.raises(MalformedEvent, match=r"no handler for event type 'deliveryhub\.delivery\.canceled'"):
        decode_order_events(Message(envelope.to_json(), routing_key="delivery.canceled"))


@pytest.mark.parametrize("body", [b"", b"not json", b"[]", b'{"specversion": "1.0"}'])
def test_bytes_that_are_not_an_event_are_malformed(body: bytes) -> None:
    with pytest.raises(MalformedEvent):
        decode_order_events(Message(body))


def test_a_cloud_event_with_invalid_data_is_malformed() -> None:
    envelope = make_envelope(
        OrderCanceled(order_id=ORDER_ID, version=2, reason="r"),
        source=ORDERS_SOURCE,
        subject=str(ORDER_ID),
        time=datetime.now(UTC),
    )
    broken = envelope.model_copy(update={"data": {**envelope.data, "version": "second"}})

    with pytest.raises(MalformedEvent, match="version"):
        decode_order_events(Message(broken.to_json()))


def canceled_envelope(**changes: object) -> bytes:
    envelope = make_envelope(
        OrderCanceled(order_id=ORDER_ID, version=2, reason="r"),
        source=ORDERS_SOURCE,
        subject=str(ORDER_ID),
        time=datetime.now(UTC),
    )
    return json.dumps({**json.loads(envelope.to_json()), **changes}, separators=(",", ":")).encode()


def test_an_order_event_from_another_source_is_foreign() -> None:
    with pytest.raises(ForeignEvent, match="accepted only from source '/orders', not from '/delivery'"):
        decode_order_events(Message(canceled_envelope(source="/delivery")))


def test_an_event_whose_type_disagrees_with_its_routing_key_is_foreign() -> None:
    with pytest.raises(ForeignEvent, match=r"published with routing key 'order\.created'"):
        decode_order_events(Message(canceled_envelope(), routing_key="order.created"))


def test_an_event_back_from_a_delay_queue_is_checked_against_its_first_routing_key() -> None:
    # Dead-lettered back through the default exchange: the routing key is the queue's name.
    back = Message(
        canceled_envelope(),
        exchange="",
        routing_key="delivery.order-events",
        headers={"x-original-routing-key": "order.canceled"},
    )
    forged = Message(
        canceled_envelope(),
        exchange="",
        routing_key="delivery.order-events",
        headers={"x-original-routing-key": "order.paid"},
    )

    assert decode_order_events(back).key == "order.canceled"
    with pytest.raises(ForeignEvent):
        decode_order_events(forged)


def test_an_event_about_another_order_than_its_subject_is_malformed() -> None:
    with pytest.raises(MalformedEvent, match="is not the order"):
        decode_order_events(Message(canceled_envelope(subject=str(uuid.uuid4()))))


def test_a_type_without_the_system_prefix_has_no_handler() -> None:
    with pytest.raises(MalformedEvent, match=r"no handler for event type 'order\.canceled'"):
        decode_order_events(Message(canceled_envelope(type="order.canceled")))


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (canceled_envelope().replace(b'"version":2', b'"version":' + b"9" * 5000), "not JSON"),
        (b'{"data": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "not JSON"),
        (canceled_envelope().replace(b'"reason":"r"', b'"reason":"' + b"r" * 600 + b'"'), "reason"),
        (canceled_envelope().replace(b'"reason":"r"', b'"reason":"\\u0000"'), "NUL"),
        (canceled_envelope().replace(b'"reason":"r"', b'"reason":"\\ud800"'), "reason"),
        (canceled_envelope().replace(b'"version":2', b'"version":NaN'), "version"),
        (canceled_envelope(correlationid="c" * 129), "correlationid"),
    ],
)
def test_values_past_the_apis_bounds_are_malformed(body: bytes, says: str) -> None:
    with pytest.raises(MalformedEvent, match=says):
        decode_order_events(Message(body))


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
