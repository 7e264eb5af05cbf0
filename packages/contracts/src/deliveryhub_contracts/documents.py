"""The events' published contracts, generated from this package: one JSON Schema (draft 2020-12) per
event type and an AsyncAPI 3.0.0 document of the exchange, the queues and who sends what.

    python -m deliveryhub_contracts.documents [--check] [DIR]

writes them to DIR (default `docs/events`); with `--check` it writes nothing and exits non-zero,
naming each file that is not what the code generates.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Mapping, Sequence
from importlib.metadata import version as distribution_version
from pathlib import Path
from typing import Any, Final

import yaml
from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import core_schema

from deliveryhub_contracts.events import (
    CONTENT_TYPE,
    PAYLOAD_TYPES,
    SOURCE_OF,
    Envelope,
    Payload,
    event_type,
)
from deliveryhub_contracts.legacy import LegacyOrderCreated, LegacyOrderPaid
from deliveryhub_contracts.topology import (
    DELIVERY_ORDER_EVENTS,
    EXCHANGE,
    ORDERS_DELIVERY_EVENTS,
    Names,
    QueueSpec,
    legacy_queues,
    topic_matches,
)

DEFAULT_DIRECTORY: Final = Path("docs/events")
REGENERATE_COMMAND: Final = "python -m deliveryhub_contracts.documents"
ASYNCAPI_FILE: Final = "asyncapi.yaml"
SCHEMA_SUFFIX: Final = ".schema.json"
SCHEMA_FORMAT: Final = "application/schema+json;version=draft-2020-12"
AMQP_BINDING_VERSION: Final = "0.3.0"
# The address parameter of the teaching design's queues: the delivery service's LEGACY_QUEUE_PREFIX.
LEGACY_PREFIX_PARAMETER: Final = "prefix"

# The service that consumes each queue; topology.py names the queues, not who reads them.
QUEUE_CONSUMERS: Final[Mapping[QueueSpec, str]] = {
    DELIVERY_ORDER_EVENTS: "delivery",
    ORDERS_DELIVERY_EVENTS: "orders",
}
LEGACY_CONSUMER: Final = "delivery"
# The teaching design's messages, in the order `legacy_queues` names their queues.
LEGACY_MESSAGES: Final[tuple[type[BaseModel], ...]] = (LegacyOrderCreated, LegacyOrderPaid)

EVENT_DESCRIPTIONS: Final[Mapping[str, str]] = {
    "order.created": (
        "A customer placed an order. The data is the order's snapshot; the delivery service creates "
        "the order's delivery from it."
    ),
    "order.paid": (
        "The customer paid the order: its snapshot and when it was paid. The delivery service "
        "activates the delivery, so that a manager can appoint a courier."
    ),
    "order.canceled": (
        "An unpaid order was canceled. Its delivery cannot have been done: the delivery service cancels it."
    ),
    "order.cancel-requested": (
        "The cancel of a paid order was asked for, and the order is `canceling`. The delivery service "
        "decides: it cancels the delivery unless it is done (answering `delivery.canceled`); a done "
        "delivery's `delivery.finished` makes the order delivered instead."
    ),
    "delivery.appointed": "A manager appointed a courier to the order's delivery.",
    "delivery.finished": (
        "The courier handed the order over: the delivery is done, and the order becomes delivered."
    ),
    "delivery.canceled": (
        "The order's delivery was canceled, by a manager or because the order's cancel was asked for; "
        "the order becomes canceled."
    ),
}

ENVELOPE_DESCRIPTIONS: Final[Mapping[str, str]] = {
    "specversion": "The CloudEvents version.",
    "id": (
        "The event's id. A consumer applies an event once per id: a redelivered or duplicated copy "
        "changes nothing."
    ),
    "source": (
        "The service that sent the event. Order events are accepted only from `/orders`, delivery "
        "events only from `/delivery`."
    ),
    "type": "`deliveryhub.` and the routing key the event is published with.",
    "time": "When the change the event tells of was made.",
    "subject": "The id of the order the event is about: the same as `data.order_id`.",
    "datacontenttype": "The data is JSON.",
    "data": (
        "The event's payload. Readers ignore fields they do not know (a tolerant reader), so fields "
        "may be added to it."
    ),
    "traceparent": "Extension: the W3C trace context of the request that caused the event.",
    "correlationid": "Extension: the id of the request that caused the event, as the services log it.",
}

# Payload fields by name, or by `Model.field` where a model means something else by the name.
FIELD_DESCRIPTIONS: Final[Mapping[str, str]] = {
    "order_id": "The order's id, which is also its delivery's id and the event's `subject`.",
    "customer_id": "The id of the customer who placed the order.",
    "address": "Where the order is to be delivered.",
    "date": "When the customer wants the order delivered, with a time zone.",
    "total": "The order's total: a JSON number with at most two decimal places (cents).",
    "version": (
        "The version of the record the event is about, after the change: the order's in an order "
        "event, the delivery's in a delivery event. It grows with each change of that record; a "
        "reader keeps what the highest version it has seen says and ignores older events."
    ),
    "paid_at": "When the order was paid.",
    "reason": "Why, in words for people; may be empty.",
    "deliveryman": "The courier appointed to the delivery.",
    "Deliveryman.id": "The courier's id.",
    "Deliveryman.name": "The courier's full name.",
    "deliveryman_id": "The id of the courier who handed the order over.",
    "finished_at": "When the courier handed the order over.",
    "LegacyOrderCreated.order_id": "The order's id.",
    "LegacyOrderCreated.date": (
        "When the order is to be delivered: an ISO 8601 date and time; one without a zone is UTC."
    ),
    "LegacyOrderPaid.id": "The id of the order that was paid.",
}


class WireSchema(GenerateJsonSchema):
    """Pydantic's JSON Schema of a model as its JSON travels: amounts as bounded JSON numbers (the
    string a reader also takes is never sent), zone-less moments without `date-time`, no field titles."""

    def decimal_schema(self, schema: core_schema.DecimalSchema) -> JsonSchemaValue:
        bounds = {
            "minimum": schema.get("ge"),
            "maximum": schema.get("le"),
            "exclusiveMinimum": schema.get("gt"),
            "exclusiveMaximum": schema.get("lt"),
        }
        number: JsonSchemaValue = {"type": "number"}
        for keyword, bound in bounds.items():
            if bound is not None:
                number[keyword] = int(bound) if bound == int(bound) else float(bound)
        return number

    def datetime_schema(self, schema: core_schema.DatetimeSchema) -> JsonSchemaValue:
        if schema.get("tz_constraint") == "aware":
            return {"type": "string", "format": "date-time"}
        # RFC 3339's date-time has a zone; a reader that takes a moment without one says so in words.
        return {"type": "string"}

    def field_title_should_be_set(self, schema: object) -> bool:
        return False


def schema_file_name(routing_key: str) -> str:
    """The file of an event type's JSON Schema, e.g. `order.created.schema.json`."""
    return routing_key + SCHEMA_SUFFIX


def documents(payload_types: Mapping[str, type[Payload]] = PAYLOAD_TYPES) -> dict[str, str]:
    """Every published document, file name to text, as the contract in `payload_types` makes them."""
    texts = {
        schema_file_name(key): _json_text(event_schema(key, payload_type))
        for key, payload_type in sorted(payload_types.items())
    }
    texts[ASYNCAPI_FILE] = _yaml_text(asyncapi_document(payload_types))
    return texts


def event_schema(routing_key: str, payload_type: type[Payload]) -> dict[str, Any]:
    """The JSON Schema of one event type: its CloudEvents envelope with the payload as `data`."""
    envelope = Envelope.model_json_schema(schema_generator=WireSchema)
    properties = {name: _as_sent(schema) for name, schema in envelope["properties"].items()}
    properties["type"] = {"type": "string", "const": event_type(routing_key)}
    properties["source"] = {"type": "string", "const": _source_of(routing_key)}
    properties["subject"] = {"type": "string", "format": "uuid"}
    data = payload_type.model_json_schema(schema_generator=WireSchema)
    definitions = {name: _tolerant(name, model) for name, model in data.pop("$defs", {}).items()}
    properties["data"] = _tolerant(str(data["title"]), data)
    for name, attribute in properties.items():
        attribute["description"] = _described(ENVELOPE_DESCRIPTIONS, name, "envelope attribute")
    schema: dict[str, Any] = {
        "$schema": WireSchema.schema_dialect,
        "title": event_type(routing_key),
        "description": (
            f"{_described(EVENT_DESCRIPTIONS, routing_key, 'event type')} A CloudEvents 1.0 event in "
            f"structured JSON mode, published on the `{EXCHANGE}` exchange with the routing key "
            f"`{routing_key}`; attributes not named here are CloudEvents extensions, which readers keep."
        ),
        "type": "object",
        "properties": properties,
        # What `make_envelope` sets on every event, beyond what a reader requires.
        "required": [*envelope["required"], "subject", "datacontenttype"],
        "additionalProperties": True,
    }
    if definitions:
        schema["$defs"] = definitions
    return schema


def asyncapi_document(payload_types: Mapping[str, type[Payload]] = PAYLOAD_TYPES) -> dict[str, Any]:
    """The AsyncAPI 3.0.0 document of the exchange: routing keys and queues as channels, who sends and
    who receives each message, and the teaching design's optional plain-JSON queues."""
    keys = sorted(payload_types)
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    schemas: dict[str, Any] = {}
    for key in keys:
        message = _identifier(key)
        sender = _source_of(key).lstrip("/")
        messages[message] = {
            "name": key,
            "title": event_type(key),
            "description": _described(EVENT_DESCRIPTIONS, key, "event type"),
            "contentType": CONTENT_TYPE,
            "payload": {"schemaFormat": SCHEMA_FORMAT, "schema": {"$ref": f"./{schema_file_name(key)}"}},
            "correlationId": {
                "description": "The id of the request that caused the event.",
                "location": "$message.payload#/correlationid",
            },
        }
        _add_channel(
            channels,
            operations,
            message,
            {
                "address": key,
                "title": key,
                "description": f"Routing key `{key}` on the `{EXCHANGE}` exchange, published by the "
                f"{sender} service.",
                "messages": {message: {"$ref": f"#/components/messages/{message}"}},
                "bindings": {"amqp": _exchange_binding()},
            },
            {
                "action": "send",
                "summary": f"The {sender} service publishes `{key}`: persistent, mandatory, confirmed.",
                "tags": [{"name": sender}],
                "bindings": {
                    "amqp": {"deliveryMode": 2, "mandatory": True, "bindingVersion": AMQP_BINDING_VERSION}
                },
            },
        )
    for spec, consumer in QUEUE_CONSUMERS.items():
        bound = [key for key in keys if any(topic_matches(pattern, key) for pattern in spec.bindings)]
        _add_channel(
            channels,
            operations,
            _identifier(spec.name),
            _queue_channel(
                spec.name,
                _queue_description(spec, consumer),
                [_identifier(key) for key in bound],
                arguments={
                    "x-queue-type": "quorum",
                    "x-dead-letter-exchange": "",
                    "x-dead-letter-routing-key": Names.dead_letter_queue(spec.name),
                },
            ),
            _receive(spec.name, consumer),
        )
    legacy_addresses = legacy_queues(f"{{{LEGACY_PREFIX_PARAMETER}}}")
    for address, model in zip(legacy_addresses, LEGACY_MESSAGES, strict=True):
        message = _identifier(model.__name__)
        payload = model.model_json_schema(schema_generator=WireSchema)
        if "$defs" in payload:
            raise ValueError(f"{model.__name__} nests models, which its embedded schema cannot refer to")
        schemas[message] = _tolerant(model.__name__, payload)
        messages[message] = {
            "name": model.__name__,
            "title": f"{model.__name__} (plain JSON)",
            "description": f"The teaching design's message on `{address}`: plain JSON, no envelope.",
            "contentType": CONTENT_TYPE,
            "payload": {"$ref": f"#/components/schemas/{message}"},
        }
        channel = _queue_channel(
            address,
            f"Optional. The teaching design's plain durable queue `{address}`, which the delivery "
            "service declares and consumes only when `LEGACY_QUEUE_PREFIX` is set, with the same "
            "guarantees as its event queue: each message applied once, what it cannot apply "
            f"dead-lettered to `{Names.dead_letter_queue(address)}`.",
            [message],
        )
        channel["parameters"] = {
            LEGACY_PREFIX_PARAMETER: {
                "description": "The delivery service's `LEGACY_QUEUE_PREFIX`, e.g. `laptev_`.",
                "examples": ["laptev_"],
            }
        }
        name = address.replace(f"{{{LEGACY_PREFIX_PARAMETER}}}", "")
        _add_channel(
            channels, operations, _identifier(f"legacy.{name}"), channel, _receive(address, LEGACY_CONSUMER)
        )
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Delivery Hub events",
            "version": distribution_version("deliveryhub-contracts"),
            "description": _overview(),
            "tags": [
                {"name": "orders", "description": "The orders service."},
                {"name": "delivery", "description": "The delivery service."},
            ],
        },
        "defaultContentType": CONTENT_TYPE,
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": schemas},
    }


def differences(directory: Path, expected: Mapping[str, str]) -> list[str]:
    """What in `directory` is not as `expected` (file name to text) says, one line per file."""
    found: list[str] = []
    for name, text in sorted(expected.items()):
        path = directory / name
        if not path.is_file():
            found.append(f"{path} is missing")
        elif path.read_text(encoding="utf-8") != text:
            found.append(f"{path} differs from what the code generates")
    for path in sorted(directory.glob(f"*{SCHEMA_SUFFIX}")):
        if path.name not in expected:
            found.append(f"{path} is of no event type the code has")
    return found


def write(directory: Path, expected: Mapping[str, str]) -> list[str]:
    """Make `directory` hold exactly the `expected` documents; the names of the files changed."""
    directory.mkdir(parents=True, exist_ok=True)
    changed: list[str] = []
    for name, text in sorted(expected.items()):
        path = directory / name
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
            changed.append(name)
    for path in sorted(directory.glob(f"*{SCHEMA_SUFFIX}")):
        if path.name not in expected:
            path.unlink()
            changed.append(path.name)
    return changed


def main(argv: Sequence[str] | None = None) -> int:
    """Write the documents, or with `--check` say which committed ones the code no longer makes."""
    parser = argparse.ArgumentParser(
        prog=REGENERATE_COMMAND, description="Generate the events' JSON Schemas and AsyncAPI document."
    )
    parser.add_argument("--check", action="store_true", help="write nothing; fail if a document differs")
    parser.add_argument("directory", nargs="?", type=Path, default=DEFAULT_DIRECTORY)
    arguments = parser.parse_args(argv)
    expected = documents()
    if arguments.check:
        found = differences(arguments.directory, expected)
        for line in found:
            print(line, file=sys.stderr)
        if found:
            print(f"regenerate them with `{REGENERATE_COMMAND}`", file=sys.stderr)
            return 1
        print(f"{len(expected)} documents in {arguments.directory} are up to date")
        return 0
    changed = write(arguments.directory, expected)
    print(f"{len(changed)} of {len(expected)} documents in {arguments.directory} written or removed")
    for name in changed:
        print(f"  {name}")
    return 0


def _add_channel(
    channels: dict[str, Any],
    operations: dict[str, Any],
    channel_id: str,
    channel: dict[str, Any],
    operation: dict[str, Any],
) -> None:
    """Add a channel and the one operation on it, which handles every message of the channel."""
    if channel_id in channels:
        raise ValueError(f"two channels would be called {channel_id!r}")
    channels[channel_id] = channel
    action = str(operation["action"])
    operations[action + channel_id[0].upper() + channel_id[1:]] = {
        **operation,
        "channel": {"$ref": f"#/channels/{channel_id}"},
        "messages": [
            {"$ref": f"#/channels/{channel_id}/messages/{message}"} for message in channel["messages"]
        ],
    }


def _queue_channel(
    address: str,
    description: str,
    message_ids: Sequence[str],
    arguments: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """A queue's channel; `arguments` are those of its declaration that a client must repeat."""
    queue: dict[str, Any] = {
        "is": "queue",
        "queue": {"name": address, "durable": True, "exclusive": False, "autoDelete": False},
        "bindingVersion": AMQP_BINDING_VERSION,
    }
    if arguments:
        queue["x-arguments"] = dict(arguments)
    return {
        "address": address,
        "title": address,
        "description": description,
        "messages": {message: {"$ref": f"#/components/messages/{message}"} for message in message_ids},
        "bindings": {"amqp": queue},
    }


def _receive(address: str, consumer: str) -> dict[str, Any]:
    return {
        "action": "receive",
        "summary": f"The {consumer} service consumes `{address}` and acks each message after its commit.",
        "tags": [{"name": consumer}],
        "bindings": {"amqp": {"ack": True, "bindingVersion": AMQP_BINDING_VERSION}},
    }


def _queue_description(spec: QueueSpec, consumer: str) -> str:
    bindings = ", ".join(f"`{pattern}`" for pattern in spec.bindings)
    return (
        f"The {consumer} service's durable quorum queue, bound to {bindings} on the `{EXCHANGE}` "
        f"exchange. A message it cannot apply goes to `{Names.dead_letter_queue(spec.name)}`, with the "
        f"reason; one that fails for a passing cause waits in a delay queue "
        f"(`{spec.name}.retry.<delay>ms`) and comes back."
    )


def _exchange_binding() -> dict[str, Any]:
    return {
        "is": "routingKey",
        "exchange": {"name": EXCHANGE, "type": "topic", "durable": True, "autoDelete": False},
        "bindingVersion": AMQP_BINDING_VERSION,
    }


def _overview() -> str:
    return (
        f"The events of Delivery Hub's services, published on one durable topic exchange, `{EXCHANGE}`. "
        "Each is a CloudEvents 1.0 event in structured JSON mode: the message body is the whole event, "
        "its `type` is `deliveryhub.` and the routing key, its `subject` the order id, and its `data` "
        "the payload; `<routing key>.schema.json` beside this document is the JSON Schema of each. "
        "Order events are accepted only from source `/orders`, delivery events only from `/delivery`.\n\n"
        "Delivery is at least once, and events about one order may arrive out of order: a consumer "
        "applies each event `id` once, and every payload carries its record's `version`, so that an "
        "older event never overwrites a newer one. Readers ignore payload fields they do not know.\n\n"
        "Another team's service reads events by binding a queue of its own to the exchange, e.g. to "
        "`delivery.*`. The names of the exchange and of the queues take the optional `BROKER_PREFIX` "
        "setting in front, so that several systems can share one broker."
    )


def _as_sent(schema: dict[str, Any]) -> dict[str, Any]:
    """An optional attribute's schema as it is sent: absent when unset, never null."""
    branches = schema.get("anyOf")
    present = {key: value for key, value in schema.items() if key not in ("anyOf", "default")}
    if branches is not None:
        (branch,) = [branch for branch in branches if branch != {"type": "null"}]
        present.update(branch)
    return present


def _tolerant(model: str, schema: dict[str, Any]) -> dict[str, Any]:
    """A model's schema that allows fields it does not name, each named field described."""
    for field, property_schema in schema.get("properties", {}).items():
        property_schema["description"] = _field_description(model, field)
    schema["additionalProperties"] = True
    return schema


def _field_description(model: str, field: str) -> str:
    description = FIELD_DESCRIPTIONS.get(f"{model}.{field}", FIELD_DESCRIPTIONS.get(field))
    if description is None:
        raise ValueError(f"{model}.{field} has no description: add one to FIELD_DESCRIPTIONS in {__name__}")
    return description


def _described(descriptions: Mapping[str, str], name: str, what: str) -> str:
    if name not in descriptions:
        raise ValueError(f"the {what} {name!r} has no description in {__name__}")
    return descriptions[name]


def _source_of(routing_key: str) -> str:
    sender = routing_key.partition(".")[0]
    if sender not in SOURCE_OF:
        raise ValueError(f"no service sends {routing_key!r}: SOURCE_OF has no {sender!r}")
    return SOURCE_OF[sender]


def _identifier(name: str, *, capitalized: bool = False) -> str:
    """A component id of a name, e.g. `order.cancel-requested` → `orderCancelRequested`."""
    words = [word for word in re.split(r"[^A-Za-z0-9]+", name) if word]
    camel = "".join(word[0].upper() + word[1:] for word in words)
    return camel if capitalized else camel[0].lower() + camel[1:]


def _json_text(value: Mapping[str, Any]) -> str:
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def _yaml_text(value: Mapping[str, Any]) -> str:
    header = f"# Generated by `{REGENERATE_COMMAND}` from packages/contracts: do not edit.\n"
    return header + yaml.safe_dump(dict(value), sort_keys=True, allow_unicode=True, width=100)


if __name__ == "__main__":
    raise SystemExit(main())
