"""The events' published documents: committed as the code makes them, valid, and as strict as the data."""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import pytest
import yaml
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from deliveryhub_contracts import topology
from deliveryhub_contracts.documents import (
    ASYNCAPI_FILE,
    REGENERATE_COMMAND,
    differences,
    documents,
    main,
    schema_file_name,
)
from deliveryhub_contracts.events import (
    PAYLOAD_TYPES,
    SOURCE_OF,
    Deliveryman,
    OrderCanceled,
    Payload,
    Total,
    event_type,
    make_envelope,
)
from deliveryhub_contracts.topology import EXCHANGE, Names, QueueSpec, legacy_queues
from deliveryhub_contracts.values import (
    MAX_ADDRESS_LENGTH,
    MAX_AMOUNT,
    MAX_NAME_LENGTH,
    MAX_REASON_LENGTH,
    MAX_VERSION,
)
from deliveryhub_kit.topology import consuming_queue

DOCUMENTS = Path(__file__).resolve().parents[3] / "docs" / "events"
REGENERATE = f"python3 -m uv run {REGENERATE_COMMAND}"

ORDER_ID = uuid.UUID("6a1f3c2e-8d4b-4e6f-9a0b-1c2d3e4f5a6b")
SENT_AT = datetime(2030, 5, 16, 9, 15, tzinfo=UTC)

Edge = Literal["least", "most"]
# Each payload field at the least and the most its bounds allow; a new field needs an entry here.
EDGES: dict[str, dict[Edge, object]] = {
    "order_id": {"least": ORDER_ID, "most": ORDER_ID},
    "customer_id": {"least": uuid.UUID(int=0), "most": uuid.UUID(int=2**128 - 1)},
    "address": {"least": "М", "most": "д" * MAX_ADDRESS_LENGTH},
    "date": {
        "least": datetime(1, 1, 1, 12, tzinfo=timezone(timedelta(hours=3))),
        "most": datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
    },
    "total": {"least": Decimal(0), "most": MAX_AMOUNT},
    "version": {"least": 1, "most": MAX_VERSION},
    "paid_at": {"least": SENT_AT, "most": SENT_AT.astimezone(timezone(timedelta(hours=-11)))},
    "reason": {"least": "", "most": "п" * MAX_REASON_LENGTH},
    "deliveryman": {
        "least": Deliveryman(id=uuid.uuid4(), name="Л"),
        "most": Deliveryman(id=uuid.uuid4(), name="Л" * MAX_NAME_LENGTH),
    },
    "deliveryman_id": {"least": uuid.uuid4(), "most": uuid.uuid4()},
    "finished_at": {"least": SENT_AT, "most": SENT_AT + timedelta(days=3650)},
}


def committed(name: str) -> Any:
    text = (DOCUMENTS / name).read_text(encoding="utf-8")
    return yaml.safe_load(text) if name.endswith(".yaml") else json.loads(text)


def validator(routing_key: str) -> Draft202012Validator:
    """The committed schema of an event type, checking formats (uuid, date-time) too."""
    schema = committed(schema_file_name(routing_key))
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


def payload_at(payload_type: type[Payload], edge: Edge) -> Payload:
    return payload_type(**{name: EDGES[name][edge] for name in payload_type.model_fields})


def envelope_of(payload: Payload, **extensions: str) -> dict[str, Any]:
    """An event as the services send it, parsed back from its bytes."""
    key = next(key for key, payload_type in PAYLOAD_TYPES.items() if payload_type is type(payload))
    envelope = make_envelope(
        payload,
        source=SOURCE_OF[key.partition(".")[0]],
        subject=str(ORDER_ID),
        time=SENT_AT,
        traceparent=extensions.get("traceparent"),
        correlation_id=extensions.get("correlation_id"),
    )
    parsed: dict[str, Any] = json.loads(envelope.to_json())
    return parsed


def refusals(routing_key: str, event: dict[str, Any]) -> list[str]:
    return [error.message for error in validator(routing_key).iter_errors(event)]


def test_the_committed_documents_are_what_the_code_generates() -> None:
    found = differences(DOCUMENTS, documents())

    assert not found, (
        "the published event documents no longer match packages/contracts:\n  "
        + "\n  ".join(found)
        + f"\nregenerate them with `{REGENERATE}` and commit docs/events/"
    )


def test_a_changed_payload_leaves_its_committed_schema_stale() -> None:
    class OrderCanceledWithTotal(OrderCanceled):
        total: Total

    changed = documents({**PAYLOAD_TYPES, "order.canceled": OrderCanceledWithTotal})

    assert differences(DOCUMENTS, changed) == [
        f"{DOCUMENTS / 'order.canceled.schema.json'} differs from what the code generates"
    ]


def test_a_field_or_an_event_type_without_a_description_is_not_published() -> None:
    class OrderCanceledWithCode(OrderCanceled):
        refund_code: str

    with pytest.raises(ValueError, match=r"OrderCanceledWithCode\.refund_code has no description"):
        documents({**PAYLOAD_TYPES, "order.canceled": OrderCanceledWithCode})
    with pytest.raises(ValueError, match=r"'order\.refunded' has no description"):
        documents({**PAYLOAD_TYPES, "order.refunded": OrderCanceled})


def test_check_names_each_file_that_is_not_what_the_code_generates(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([str(tmp_path)]) == 0
    assert main(["--check", str(tmp_path)]) == 0
    (tmp_path / "order.paid.schema.json").write_text("{}\n")
    (tmp_path / ASYNCAPI_FILE).unlink()
    (tmp_path / "order.refunded.schema.json").write_text("{}\n")
    capsys.readouterr()

    assert main(["--check", str(tmp_path)]) == 1

    said = capsys.readouterr().err
    assert f"{tmp_path / 'order.paid.schema.json'} differs from what the code generates" in said
    assert f"{tmp_path / ASYNCAPI_FILE} is missing" in said
    assert f"{tmp_path / 'order.refunded.schema.json'} is of no event type the code has" in said
    assert REGENERATE_COMMAND in said
    assert main([str(tmp_path)]) == 0
    assert not (tmp_path / "order.refunded.schema.json").exists()
    assert differences(tmp_path, documents()) == []


def test_every_event_type_has_a_schema_and_nothing_else_does() -> None:
    schemas = sorted(path.name for path in DOCUMENTS.glob("*.schema.json"))

    assert schemas == sorted(schema_file_name(key) for key in PAYLOAD_TYPES)
    for key in PAYLOAD_TYPES:
        schema = committed(schema_file_name(key))
        assert schema["title"] == event_type(key)
        assert schema["properties"]["type"]["const"] == event_type(key)
        assert schema["properties"]["source"]["const"] == SOURCE_OF[key.partition(".")[0]]


@pytest.mark.parametrize("routing_key", sorted(PAYLOAD_TYPES))
def test_every_schema_is_a_valid_draft_2020_12_schema(routing_key: str) -> None:
    schema = committed(schema_file_name(routing_key))

    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(schema)


@pytest.mark.parametrize("routing_key", sorted(PAYLOAD_TYPES))
def test_every_payload_field_is_described_and_unknown_fields_are_allowed(routing_key: str) -> None:
    schema = committed(schema_file_name(routing_key))
    objects = [schema["properties"]["data"], *schema.get("$defs", {}).values()]

    for model in objects:
        assert model["additionalProperties"] is True
        assert all(field.get("description") for field in model["properties"].values()), model["title"]


@pytest.mark.parametrize("edge", ["least", "most"])
@pytest.mark.parametrize("routing_key", sorted(PAYLOAD_TYPES))
def test_a_schema_accepts_what_make_envelope_builds(routing_key: str, edge: Edge) -> None:
    payload = payload_at(PAYLOAD_TYPES[routing_key], edge)
    traced = envelope_of(
        payload, traceparent="00-" + "a" * 32 + "-" + "b" * 16 + "-01", correlation_id="r" * 128
    )

    assert refusals(routing_key, envelope_of(payload)) == []
    assert refusals(routing_key, traced) == []


def test_a_schema_accepts_fields_and_extensions_it_does_not_name() -> None:
    event = envelope_of(payload_at(PAYLOAD_TYPES["delivery.appointed"], "least"))
    event["data"]["eta_minutes"] = 25
    event["data"]["deliveryman"]["phone"] = "+7 900 000-00-00"
    event["partitionkey"] = str(ORDER_ID)

    assert refusals("delivery.appointed", event) == []


def broken_events() -> Iterator[Any]:
    """Envelopes that break one bound each, with what the schema must say about them."""
    created = envelope_of(payload_at(PAYLOAD_TYPES["order.created"], "least"))

    def broken(change: str, *path: str, value: object = None, remove: bool = False) -> Any:
        event = copy.deepcopy(created)
        target = event
        for part in path[:-1]:
            target = target[part]
        if remove:
            del target[path[-1]]
        else:
            target[path[-1]] = value
        return pytest.param(event, id=change)

    yield broken("wrong type", "type", value=event_type("order.paid"))
    yield broken("another service's source", "source", value="/delivery")
    yield broken("CloudEvents 0.3", "specversion", value="0.3")
    yield broken("id not a uuid", "id", value="42")
    yield broken("time without a zone", "time", value="2030-05-16T09:15:00")
    yield broken("subject not an order id", "subject", value="order 42")
    yield broken("no subject", "subject", remove=True)
    yield broken("other content type", "datacontenttype", value="text/plain")
    yield broken("traceparent too long", "traceparent", value="0" * 513)
    yield broken("no data", "data", remove=True)
    yield broken("version 0", "data", "version", value=0)
    yield broken("version past 32 bits", "data", "version", value=MAX_VERSION + 1)
    yield broken("version a string", "data", "version", value="1")
    yield broken("negative total", "data", "total", value=-0.01)
    yield broken("total too large", "data", "total", value=float(MAX_AMOUNT) * 10)
    yield broken("total as a string", "data", "total", value="12.50")
    yield broken("empty address", "data", "address", value="")
    yield broken("address too long", "data", "address", value="д" * (MAX_ADDRESS_LENGTH + 1))
    yield broken("date without a zone", "data", "date", value="2030-05-17T14:30:00")
    yield broken("customer id not a uuid", "data", "customer_id", value="someone")
    for field in PAYLOAD_TYPES["order.created"].model_fields:
        yield broken(f"no data {field}", "data", field, remove=True)


@pytest.mark.parametrize("event", list(broken_events()))
def test_a_schema_refuses_an_envelope_that_breaks_a_bound(event: dict[str, Any]) -> None:
    assert refusals("order.created", event) != []


def test_a_refusal_says_what_is_wrong() -> None:
    event = envelope_of(payload_at(PAYLOAD_TYPES["delivery.canceled"], "least"))
    event["type"] = event_type("delivery.finished")
    event["data"]["version"] = 0
    del event["data"]["reason"]

    with pytest.raises(ValidationError):
        validator("delivery.canceled").validate(event)
    assert sorted(refusals("delivery.canceled", event)) == [
        "'deliveryhub.delivery.canceled' was expected",
        "'reason' is a required property",
        "0 is less than the minimum of 1",
    ]


def test_the_asyncapi_document_names_every_routing_key_both_queues_and_the_exchange() -> None:
    document = committed(ASYNCAPI_FILE)
    channels = document["channels"].values()
    addresses = {channel["address"] for channel in channels}
    exchanges = {
        channel["bindings"]["amqp"]["exchange"]["name"]
        for channel in channels
        if channel["bindings"]["amqp"]["is"] == "routingKey"
    }
    queues = [value for value in vars(topology).values() if isinstance(value, QueueSpec)]

    assert document["asyncapi"] == "3.0.0"
    assert set(PAYLOAD_TYPES) <= addresses
    assert {"delivery.order-events", "orders.delivery-events"} == {spec.name for spec in queues}
    assert {spec.name for spec in queues} <= addresses
    assert set(legacy_queues("{prefix}")) <= addresses
    assert exchanges == {EXCHANGE}


def test_each_queue_carries_the_events_its_bindings_route_and_is_declared_as_the_kit_declares_it() -> None:
    document = committed(ASYNCAPI_FILE)
    by_address = {channel["address"]: channel for channel in document["channels"].values()}
    messages = document["components"]["messages"]
    queues = [value for value in vars(topology).values() if isinstance(value, QueueSpec)]

    for spec in queues:
        channel = by_address[spec.name]
        carried = {messages[ref["$ref"].rsplit("/", 1)[1]]["name"] for ref in channel["messages"].values()}
        sender = spec.bindings[0].partition(".")[0]
        assert carried == {key for key in PAYLOAD_TYPES if key.startswith(sender + ".")}
        declared = consuming_queue(Names(), spec)
        binding = channel["bindings"]["amqp"]
        assert binding["queue"]["durable"] is True
        assert binding["x-arguments"].items() <= declared.arguments.items()
        assert binding["x-arguments"]["x-queue-type"] == "quorum"
        assert declared.bindings == tuple((EXCHANGE, pattern) for pattern in spec.bindings)


def test_each_service_sends_its_own_events_and_receives_the_others() -> None:
    document = committed(ASYNCAPI_FILE)
    channels = document["channels"]
    sent: dict[str, set[str]] = {}
    received: dict[str, set[str]] = {}
    for operation in document["operations"].values():
        channel = channels[operation["channel"]["$ref"].rsplit("/", 1)[1]]
        (service,) = [tag["name"] for tag in operation["tags"]]
        into = sent if operation["action"] == "send" else received
        into.setdefault(service, set()).add(channel["address"])

    assert sent == {
        "orders": {key for key in PAYLOAD_TYPES if key.startswith("order.")},
        "delivery": {key for key in PAYLOAD_TYPES if key.startswith("delivery.")},
    }
    assert received == {
        "delivery": {"delivery.order-events", *legacy_queues("{prefix}")},
        "orders": {"orders.delivery-events"},
    }


def test_every_reference_in_the_asyncapi_document_resolves() -> None:
    document = committed(ASYNCAPI_FILE)

    def references(node: object) -> Iterator[str]:
        if isinstance(node, dict):
            if isinstance(node.get("$ref"), str):
                yield node["$ref"]
            for value in node.values():
                yield from references(value)
        elif isinstance(node, list):
            for value in node:
                yield from references(value)

    found = list(references(document))
    assert found
    for reference in found:
        if reference.startswith("#/"):
            target: Any = document
            for part in reference[2:].split("/"):
                target = target[part]
            assert isinstance(target, dict), reference
        else:
            assert (DOCUMENTS / reference).is_file(), reference
