"""The CloudEvents envelope and the typed payloads other teams rely on."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from deliveryhub_contracts.events import (
    DELIVERY_SOURCE,
    ORDERS_SOURCE,
    DeliveryAppointed,
    DeliveryCanceled,
    DeliveryFinished,
    Deliveryman,
    MalformedEvent,
    OrderCanceled,
    OrderCancelRequested,
    OrderCreated,
    OrderPaid,
    Payload,
    make_envelope,
    parse_envelope,
    parse_payload,
)

ORDER_ID = uuid.UUID("2f0b8f9e-4a61-4c3e-9d0a-7b5f3e1c2d44")
CUSTOMER_ID = uuid.UUID("0b7e3c3a-55a4-4f6e-9d8c-0d6c1f1d2a11")
COURIER_ID = uuid.UUID("85db966c-67f1-411e-95c0-f02edfa5464a")
SENT_AT = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
DELIVERY_DATE = datetime(2025, 3, 3, 15, 0, tzinfo=UTC)

ORDER_CREATED = OrderCreated(
    order_id=ORDER_ID,
    customer_id=CUSTOMER_ID,
    address="Москва, ул. Ленина, д. 1",
    date=DELIVERY_DATE,
    total=Decimal("1250.50"),
    version=1,
)

PAYLOADS: list[tuple[Payload, str, str]] = [
    (ORDER_CREATED, "order.created", ORDERS_SOURCE),
    (
        OrderPaid(**ORDER_CREATED.model_dump(), paid_at=SENT_AT).model_copy(update={"version": 2}),
        "order.paid",
        ORDERS_SOURCE,
    ),
    (OrderCanceled(order_id=ORDER_ID, version=3, reason="changed my mind"), "order.canceled", ORDERS_SOURCE),
    (
        OrderCancelRequested(order_id=ORDER_ID, version=3, reason="canceled by the customer"),
        "order.cancel-requested",
        ORDERS_SOURCE,
    ),
    (
        DeliveryAppointed(
            order_id=ORDER_ID, deliveryman=Deliveryman(id=COURIER_ID, name="Лаптев Иван"), version=2
        ),
        "delivery.appointed",
        DELIVERY_SOURCE,
    ),
    (
        DeliveryFinished(order_id=ORDER_ID, deliveryman_id=COURIER_ID, finished_at=SENT_AT, version=3),
        "delivery.finished",
        DELIVERY_SOURCE,
    ),
    (
        DeliveryCanceled(order_id=ORDER_ID, reason="out of stock", version=4),
        "delivery.canceled",
        DELIVERY_SOURCE,
    ),
]


def envelope_json(**changes: object) -> bytes:
    """A valid `order.created` envelope as JSON, with some attributes changed or (None) removed."""
    attributes = json.loads(
        make_envelope(ORDER_CREATED, source=ORDERS_SOURCE, subject=str(ORDER_ID), time=SENT_AT).to_json()
    )
    for name, value in changes.items():
        if value is None:
            attributes.pop(name)
        else:
            attributes[name] = value
    return json.dumps(attributes).encode()


@pytest.mark.parametrize(("payload", "routing_key", "source"), PAYLOADS, ids=[key for _, key, _ in PAYLOADS])
def test_every_event_survives_the_round_trip(payload: Payload, routing_key: str, source: str) -> None:
    event_id = uuid.uuid4()
    envelope = make_envelope(
        payload,
        source=source,
        subject=str(ORDER_ID),
        time=SENT_AT,
        event_id=event_id,
        traceparent="00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    )

    received = parse_envelope(envelope.to_json())

    assert received == envelope
    assert received.id == event_id
    assert received.routing_key == routing_key
    assert received.type == f"deliveryhub.{routing_key}"
    assert received.source == source
    assert received.subject == str(ORDER_ID)
    assert received.time == SENT_AT
    assert received.traceparent == "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    assert parse_payload(received, type(payload)) == payload


def test_the_envelope_is_structured_mode_cloudevents_json() -> None:
    envelope = make_envelope(ORDER_CREATED, source=ORDERS_SOURCE, subject=str(ORDER_ID), time=SENT_AT)

    attributes = json.loads(envelope.to_json())

    assert attributes["specversion"] == "1.0"
    assert attributes["datacontenttype"] == "application/json"
    assert attributes["source"] == "/orders"
    assert attributes["type"] == "deliveryhub.order.created"
    assert attributes["subject"] == str(ORDER_ID)
    assert uuid.UUID(attributes["id"])
    assert datetime.fromisoformat(attributes["time"]) == SENT_AT
    assert attributes["data"]["order_id"] == str(ORDER_ID)
    assert "traceparent" not in attributes


def test_each_envelope_gets_a_fresh_id() -> None:
    first = make_envelope(ORDER_CREATED, source=ORDERS_SOURCE, subject=str(ORDER_ID), time=SENT_AT)
    second = make_envelope(ORDER_CREATED, source=ORDERS_SOURCE, subject=str(ORDER_ID), time=SENT_AT)

    assert first.id != second.id


def test_unknown_envelope_attributes_are_kept_as_extensions() -> None:
    envelope = parse_envelope(envelope_json(partitionkey="p-7"))

    assert json.loads(envelope.to_json())["partitionkey"] == "p-7"


@pytest.mark.parametrize(
    ("total", "expected"),
    [(Decimal("1250.50"), 1250.5), (Decimal("0.99"), 0.99), (Decimal("100"), 100)],
)
def test_amounts_travel_as_json_numbers(total: Decimal, expected: float) -> None:
    payload = ORDER_CREATED.model_copy(update={"total": total})
    envelope = make_envelope(payload, source=ORDERS_SOURCE, subject=str(ORDER_ID), time=SENT_AT)

    sent_total = json.loads(envelope.to_json())["data"]["total"]

    assert isinstance(sent_total, int | float)
    assert not isinstance(sent_total, bool)
    assert sent_total == expected
    received = parse_payload(parse_envelope(envelope.to_json()), OrderCreated)
    assert isinstance(received, OrderCreated)
    assert received.total == total


def test_a_payload_ignores_fields_it_does_not_know() -> None:
    envelope = make_envelope(
        DeliveryCanceled(order_id=ORDER_ID, reason="r", version=2),
        source=DELIVERY_SOURCE,
        subject=str(ORDER_ID),
        time=SENT_AT,
    )
    extended = envelope.model_copy(update={"data": {**envelope.data, "added_in_a_later_version": True}})

    assert parse_payload(extended, DeliveryCanceled) == DeliveryCanceled(
        order_id=ORDER_ID, reason="r", version=2
    )


@pytest.mark.parametrize(
    ("body", "complaint"),
    [
        (b"", "not JSON"),
        (b"order created", "not JSON"),
        (b"\xff\xfe\x00garbage", "not JSON"),
        (b'{"specversion": "1.0",', "not JSON"),
        (b"[" * 100_000, "not JSON"),
        (b"[1, 2, 3]", "not a JSON object"),
        (b'"order.created"', "not a JSON object"),
        (b"null", "not a JSON object"),
        (b"42", "not a JSON object"),
    ],
)
def test_a_body_that_is_not_a_json_object_is_malformed(body: bytes, complaint: str) -> None:
    with pytest.raises(MalformedEvent, match=complaint):
        parse_envelope(body)


@pytest.mark.parametrize("attribute", ["specversion", "id", "source", "type", "time", "data"])
def test_an_envelope_missing_a_required_attribute_is_malformed(attribute: str) -> None:
    with pytest.raises(MalformedEvent, match=f"not a CloudEvents 1.0 envelope: {attribute}"):
        parse_envelope(envelope_json(**{attribute: None}))


@pytest.mark.parametrize(
    ("changes", "attribute"),
    [
        ({"specversion": "0.3"}, "specversion"),
        ({"id": "not-a-uuid"}, "id"),
        ({"source": ""}, "source"),
        ({"time": "2025-03-01T12:00:00"}, "time"),
        ({"time": "yesterday"}, "time"),
        ({"data": [1, 2]}, "data"),
        ({"datacontenttype": "application/xml"}, "datacontenttype"),
    ],
)
def test_an_envelope_with_an_invalid_attribute_is_malformed(
    changes: dict[str, object], attribute: str
) -> None:
    with pytest.raises(MalformedEvent, match=f"envelope: {attribute}"):
        parse_envelope(envelope_json(**changes))


@pytest.mark.parametrize(
    ("data_changes", "field"),
    [
        ({"address": ""}, "address"),
        ({"version": 0}, "version"),
        ({"total": "a lot"}, "total"),
        ({"date": "2025-03-03T15:00:00"}, "date"),
        ({"order_id": "42"}, "order_id"),
    ],
)
def test_invalid_data_is_malformed(data_changes: dict[str, object], field: str) -> None:
    envelope = parse_envelope(envelope_json())
    broken = envelope.model_copy(update={"data": {**envelope.data, **data_changes}})

    with pytest.raises(MalformedEvent, match=f"invalid order.created data: {field}"):
        parse_payload(broken, OrderCreated)


def test_data_missing_a_field_is_malformed() -> None:
    envelope = parse_envelope(envelope_json())
    data = dict(envelope.data)
    del data["customer_id"]

    with pytest.raises(MalformedEvent, match="customer_id: Field required"):
        parse_payload(envelope.model_copy(update={"data": data}), OrderCreated)


def test_data_of_another_event_type_is_malformed() -> None:
    envelope = make_envelope(
        DeliveryCanceled(order_id=ORDER_ID, reason="r", version=2),
        source=DELIVERY_SOURCE,
        subject=str(ORDER_ID),
        time=SENT_AT,
    )

    with pytest.raises(MalformedEvent, match=r"invalid delivery\.canceled data"):
        parse_payload(envelope, OrderPaid)
