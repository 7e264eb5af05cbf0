"""From a message's bytes to an event a handler takes: the routes, and the decoders of each wire form.

A route is how one kind of event is applied: the payload type its handler takes, and the handler.
The routes of this system's own events are derived from the handlers' signatures and the
contracts' table of payload types (`event_routes`), so a service restates neither a routing key
nor a payload type.
"""

from __future__ import annotations

import inspect
import typing
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ValidationError

from deliveryhub_contracts.events import (
    ROUTING_KEYS,
    TYPE_PREFIX,
    MalformedEvent,
    Payload,
    check_origin,
    parse_envelope,
    parse_payload,
)
from deliveryhub_kit.broker import IncomingMessage
from deliveryhub_kit.unit_of_work import UnitOfWork

P = TypeVar("P", bound=BaseModel)


@dataclass(frozen=True)
class Route(Generic[P]):
    """How to apply one kind of event: its payload type and the handler that applies it."""

    payload_type: type[P]
    apply: Callable[[UnitOfWork, P], Awaitable[None]]


Routes = Mapping[str, Route[Any]]


def event_routes(*handlers: Callable[[UnitOfWork, Any], Awaitable[None]]) -> dict[str, Route[Any]]:
    """The routes of handlers of this system's events, each under the routing key the contracts
    give the payload type its second parameter is annotated with."""
    routes: dict[str, Route[Any]] = {}
    for handler in handlers:
        payload_type = _payload_type(handler)
        key = ROUTING_KEYS.get(payload_type)
        if key is None:
            raise TypeError(f"{handler.__name__} takes {payload_type.__name__}, which is no event type")
        if key in routes:
            raise ValueError(f"two handlers for {key}: {routes[key].apply.__name__} and {handler.__name__}")
        routes[key] = Route(payload_type, handler)
    return routes


def _payload_type(handler: Callable[..., Any]) -> type[Any]:
    """The type a handler's payload parameter, its second, is annotated with."""
    parameters = list(inspect.signature(handler).parameters)
    annotation = typing.get_type_hints(handler).get(parameters[1]) if len(parameters) == 2 else None
    if not isinstance(annotation, type):
        raise TypeError(f"{handler.__name__} must take (work, payload), its payload's type annotated")
    return annotation


@dataclass(frozen=True)
class DecodedMessage:
    event_id: uuid.UUID
    key: str
    payload: BaseModel
    traceparent: str | None = None
    correlation_id: str | None = None
    # What the event is about (an order's id): events about one subject are applied in order.
    subject: str | None = None


Decoder = Callable[[IncomingMessage], DecodedMessage]


class MessageTooLarge(MalformedEvent):
    """The message is larger than any event this system sends; it is not even read."""


def cloud_event_decoder(routes: Routes) -> Decoder:
    """Decode a structured CloudEvent whose short type has a route and that its sender could send."""

    def decode(message: IncomingMessage) -> DecodedMessage:
        envelope = parse_envelope(message.body)
        check_origin(envelope, published_as(message))
        route = routes.get(envelope.routing_key) if envelope.type.startswith(TYPE_PREFIX) else None
        if route is None:
            raise MalformedEvent(f"no handler for event type {envelope.type[:100]!r}")
        payload_type = route.payload_type
        if not issubclass(payload_type, Payload):
            raise MalformedEvent(f"route {envelope.routing_key} has no event payload type")
        return DecodedMessage(
            envelope.id,
            envelope.routing_key,
            parse_payload(envelope, payload_type),
            traceparent=envelope.traceparent,
            correlation_id=envelope.correlationid,
            subject=envelope.subject,
        )

    return decode


def published_as(message: IncomingMessage) -> str | None:
    """The routing key a message was published to the events exchange with, if known.

    A message that came back through the default exchange (from a delay queue, or replayed from the
    dead letters) carries the routing key it first had in a header; one that a producer put straight
    into the queue has none.
    """
    if message.exchange:
        return message.routing_key
    original = message.headers.get("x-original-routing-key")
    return original if isinstance(original, str) else None


def plain_json_decoder(key: str, payload_type: type[BaseModel], namespace: uuid.UUID) -> Decoder:
    """Decode a plain JSON message; without a message id, its content names it (uuid5)."""

    def decode(message: IncomingMessage) -> DecodedMessage:
        try:
            payload = payload_type.model_validate_json(message.body)
        except (ValidationError, RecursionError) as error:
            summary = (
                "; ".join(
                    f"{'.'.join(str(part) for part in item['loc']) or 'body'}: {item['msg']}"
                    for item in error.errors(include_url=False)
                )
                if isinstance(error, ValidationError)
                else "nested too deeply"
            )
            raise MalformedEvent(f"invalid {key} message: {summary[:900]}") from error
        event_id = _message_uuid(message.message_id) or uuid.uuid5(namespace, message.body.hex())
        return DecodedMessage(
            event_id,
            key,
            payload,
            traceparent=_header(message, "traceparent"),
            correlation_id=_header(message, "x-request-id"),
        )

    return decode


def _header(message: IncomingMessage, name: str) -> str | None:
    value = message.headers.get(name)
    return value if isinstance(value, str) else None


def _message_uuid(message_id: str | None) -> uuid.UUID | None:
    if not message_id:
        return None
    try:
        return uuid.UUID(message_id)
    except ValueError:
        return uuid.uuid5(uuid.NAMESPACE_URL, message_id)
