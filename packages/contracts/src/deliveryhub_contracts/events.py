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

SPEC_VERSION: Final = "1.0"
CONTENT_TYPE: Final = "application/json"
TYPE_PREFIX: Final = "deliveryhub."

ORDERS_SOURCE: Final = "/orders"
DELIVERY_SOURCE: Final = "/delivery"

# Amounts travel as JSON numbers; two decimal places keep them exact in every JSON parser.
Amount = Annotated[Decimal, PlainSerializer(float, return_type=float, when_used="json")]


class Payload(BaseModel):
    """Base of every event payload: a tolerant reader that ignores fields it does not know."""

    model_config = ConfigDict(extra="ignore", frozen=True)


class OrderSnapshot(Payload):
    order_id: uuid.UUID
    customer_id: uuid.UUID
    address: str = Field(min_length=1)
    date: AwareDatetime
    total: Amount
    version: int = Field(ge=1)


class OrderCreated(OrderSnapshot):
    pass


class OrderPaid(OrderSnapshot):
    paid_at: AwareDatetime


class OrderCanceled(Payload):
    order_id: uuid.UUID
    version: int = Field(ge=1)
    reason: str


class Deliveryman(Payload):
    id: uuid.UUID
    name: str


class DeliveryAppointed(Payload):
    order_id: uuid.UUID
    deliveryman: Deliveryman


class DeliveryFinished(Payload):
    order_id: uuid.UUID
    deliveryman_id: uuid.UUID
    finished_at: AwareDatetime


class DeliveryCanceled(Payload):
    order_id: uuid.UUID
    reason: str


EventKey = Literal[
    "order.created",
    "order.paid",
    "order.canceled",
    "delivery.appointed",
    "delivery.finished",
    "delivery.canceled",
]

PAYLOAD_TYPES: Final[dict[str, type[Payload]]] = {
    "order.created": OrderCreated,
    "order.paid": OrderPaid,
    "order.canceled": OrderCanceled,
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
    source: str = Field(min_length=1)
    type: str = Field(min_length=1)
    time: AwareDatetime
    subject: str | None = None
    datacontenttype: Literal["application/json"] = CONTENT_TYPE
    data: dict[str, JsonValue]
    # Extensions: the W3C trace context and the correlation id of the request that caused it.
    traceparent: str | None = None
    correlationid: str | None = None

    @property
    def routing_key(self) -> str:
        return routing_key_of(self.type)

    def to_json(self) -> bytes:
        return self.model_dump_json(exclude_none=True).encode()


class MalformedEvent(ValueError):
    """The bytes are not an event this system understands; retrying cannot help."""


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
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
        raise MalformedEvent(f"body is not JSON: {error}") from error
    if not isinstance(raw, dict):
        raise MalformedEvent("body is not a JSON object")
    try:
        return Envelope.model_validate(raw)
    except ValidationError as error:
        raise MalformedEvent(f"not a CloudEvents 1.0 envelope: {_summary(error)}") from error


def parse_payload(envelope: Envelope, payload_type: type[Payload]) -> Payload:
    """Validate the envelope's data as the given payload type."""
    try:
        return payload_type.model_validate(envelope.data)
    except ValidationError as error:
        raise MalformedEvent(f"invalid {envelope.routing_key} data: {_summary(error)}") from error


def _summary(error: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(part) for part in item['loc']) or 'body'}: {item['msg']}"
        for item in error.errors(include_url=False)
    )
