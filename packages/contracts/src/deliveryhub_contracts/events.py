"""CloudEvents 1.0 envelope (structured JSON mode) and the typed payload of every event."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Final, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    PlainSerializer,
    ValidationError,
)

from deliveryhub_contracts.values import (
    MAX_AMOUNT,
    MAX_CORRELATION_ID_LENGTH,
    Address,
    Moment,
    PersonName,
    Reason,
    Version,
)

SPEC_VERSION: Final = "1.0"
CONTENT_TYPE: Final = "application/json"
TYPE_PREFIX: Final = "deliveryhub."

ORDERS_SOURCE: Final = "/orders"
DELIVERY_SOURCE: Final = "/delivery"

# Amounts travel as JSON numbers; two decimal places keep them exact in every JSON parser.
Amount = Annotated[Decimal, PlainSerializer(float, return_type=float, when_used="json")]
# An order's total as an event may carry it: what the orders table holds, to the cent.
Total = Annotated[Amount, Field(ge=0, le=MAX_AMOUNT, decimal_places=2)]


class Payload(BaseModel):
    """Base of every event payload: a tolerant reader that ignores fields it does not know."""

    model_config = ConfigDict(extra="ignore", frozen=True)


class OrderSnapshot(Payload):
    order_id: uuid.UUID
    customer_id: uuid.UUID
    address: Address
    date: Moment
    total: Total
    version: Version


class OrderCreated(OrderSnapshot):
    pass


class OrderPaid(OrderSnapshot):
    paid_at: Moment


class OrderCanceled(Payload):
    """An unpaid order was canceled: its delivery cannot have been done."""

    order_id: uuid.UUID
    version: Version
    reason: Reason


class OrderCancelRequested(Payload):
    """A paid order's cancel was asked for: the delivery service decides, by its delivery's state."""

    order_id: uuid.UUID
    version: Version
    reason: Reason


class Deliveryman(Payload):
    id: uuid.UUID
    name: PersonName


# Delivery events carry the delivery's `version` after the change, as order events carry the
# order's: a reader keeps what the highest version it has seen says.


class DeliveryAppointed(Payload):
    order_id: uuid.UUID
    deliveryman: Deliveryman
    version: Version


class DeliveryFinished(Payload):
    order_id: uuid.UUID
    deliveryman_id: uuid.UUID
    finished_at: Moment
    version: Version


class DeliveryCanceled(Payload):
    order_id: uuid.UUID
    reason: Reason
    version: Version


EventKey = Literal[
    "order.created",
    "order.paid",
    "order.canceled",
    "order.cancel-requested",
    "delivery.appointed",
    "delivery.finished",
    "delivery.canceled",
]

PAYLOAD_TYPES: Final[dict[str, type[Payload]]] = {
    "order.created": OrderCreated,
    "order.paid": OrderPaid,
    "order.canceled": OrderCanceled,
    "order.cancel-requested": OrderCancelRequested,
    "delivery.appointed": DeliveryAppointed,
    "delivery.finished": DeliveryFinished,
    "delivery.canceled": DeliveryCanceled,
}

ROUTING_KEYS: Final[dict[type[Payload], str]] = {
    payload_type: key for key, payload_type in PAYLOAD_TYPES.items()
}


def event_type(routing_key: str) -> str:
    """The CloudEvents `type` of an event, e.g. `deliveryhub.order.created`."""
    return TYPE_PREFIX + routing_key


def routing_key_of(cloud_event_type: str) -> str:
    """The short type (routing key) of a CloudEvents `type`."""
    return cloud_event_type.removeprefix(TYPE_PREFIX)


class Envelope(BaseModel):
    """A CloudEvent in structured JSON mode; unknown attributes are extensions and kept."""

    model_config = ConfigDict(extra="allow", frozen=True)

    specversion: Literal["1.0"]
    id: uuid.UUID
    source: str = Field(min_length=1, max_length=200)
    type: str = Field(min_length=1, max_length=200)
    time: AwareDatetime
    subject: str | None = Field(default=None, max_length=200)
    datacontenttype: Literal["application/json"] = CONTENT_TYPE
    data: dict[str, JsonValue]
    # Extensions: the W3C trace context and the correlation id of the request that caused it.
    traceparent: str | None = Field(default=None, max_length=512)
    correlationid: str | None = Field(default=None, max_length=MAX_CORRELATION_ID_LENGTH)

    @property
    def routing_key(self) -> str:
        return routing_key_of(self.type)

    def to_json(self) -> bytes:
        return self.model_dump_json(exclude_none=True).encode()


class MalformedEvent(ValueError):
    """The bytes are not an event this system understands; retrying cannot help."""


class ForeignEvent(MalformedEvent):
    """A well-formed event its sender could not have sent: another service's event, or a type that
    disagrees with the routing key it was published with."""


# The first word of a routing key names the one service that sends such events.
SOURCE_OF: Final[dict[str, str]] = {"order": ORDERS_SOURCE, "delivery": DELIVERY_SOURCE}


def make_envelope(
    payload: Payload,
    *,
    source: str,
    subject: str,
    time: datetime,
    event_id: uuid.UUID | None = None,
    traceparent: str | None = None,
    correlation_id: str | None = None,
) -> Envelope:
    """Wrap a payload in a new envelope with a fresh id."""
    data: dict[str, JsonValue] = payload.model_dump(mode="json")
    return Envelope(
        specversion=SPEC_VERSION,
        id=event_id or uuid.uuid4(),
        source=source,
        type=event_type(ROUTING_KEYS[type(payload)]),
        time=time,
        subject=subject,
        data=data,
        traceparent=traceparent,
        correlationid=correlation_id,
    )


def parse_envelope(body: bytes) -> Envelope:
    """Parse a structured-mode CloudEvent; raise `MalformedEvent` saying what is wrong."""
    try:
        raw: Any = json.loads(body)
    except (ValueError, RecursionError) as error:
        # Not only bad syntax: bytes that are not UTF-8, and integers past Python's digit limit.
        raise MalformedEvent(f"body is not JSON: {error}") from error
    if not isinstance(raw, dict):
        raise MalformedEvent("body is not a JSON object")
    try:
        return Envelope.model_validate(raw)
    except (ValidationError, RecursionError) as error:
        detail = _summary(error) if isinstance(error, ValidationError) else "nested too deeply"
        raise MalformedEvent(f"not a CloudEvents 1.0 envelope: {detail}") from error


def check_origin(envelope: Envelope, published_as: str | None) -> None:
    """Refuse an event its sender could not have sent (`ForeignEvent`).

    `published_as` is the routing key the event was published with, when known: the type must agree
    with it. Order events come only from the orders service, delivery events only from delivery.
    """
    key = envelope.routing_key
    if published_as is not None and published_as != key:
        raise ForeignEvent(
            f"an event of type {envelope.type!r} was published with routing key {published_as!r}"
        )
    owner = SOURCE_OF.get(key.partition(".")[0])
    if owner is not None and envelope.source != owner:
        raise ForeignEvent(f"{key} is accepted only from source {owner!r}, not from {envelope.source!r}")


def parse_payload(envelope: Envelope, payload_type: type[Payload]) -> Payload:
    """Validate the envelope's data as the given payload type, about the order its subject names."""
    try:
        payload = payload_type.model_validate(envelope.data)
    except (ValidationError, RecursionError) as error:
        detail = _summary(error) if isinstance(error, ValidationError) else "nested too deeply"
        raise MalformedEvent(f"invalid {envelope.routing_key} data: {detail}") from error
    order_id = getattr(payload, "order_id", None)
    if envelope.subject is not None and order_id is not None and envelope.subject != str(order_id):
        raise MalformedEvent(
            f"the subject {envelope.subject[:60]!r} is not the order {order_id} "
            f"that the {envelope.routing_key} data is about"
        )
    return payload


def _summary(error: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(part) for part in item['loc']) or 'body'}: {item['msg']}"
        for item in error.errors(include_url=False)
    )
