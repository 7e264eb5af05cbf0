"""Messages a broken or hostile producer sends: each kind, where it goes, and why it must be refused."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from aio_pika.abc import HeadersType

from deliveryhub_contracts.events import DELIVERY_SOURCE, ORDERS_SOURCE
from deliveryhub_kit.db import utcnow

Target = Literal["events", "legacy created", "legacy paid"]


@dataclass(frozen=True)
class Hostile:
    """One kind of bad message: its bytes, where it is published, and the dead letter it must become."""

    kind: str
    body: bytes
    error_class: str
    reason_says: str
    target: Target = "events"
    routing_key: str = "order.created"
    headers: HeadersType = field(default_factory=dict)
    # Bytes after the message id that are not UTF-8 (an AMQP short string RabbitMQ passes on as is).
    message_id_tail: bytes = b""

    def message_id(self, readable: str) -> str:
        """The message id a copy is published with: `readable`, and the kind's bytes after it."""
        return RawText(readable.encode() + self.message_id_tail) if self.message_id_tail else readable


class RawText(str):
    """A string its producer's client sends as these very bytes, UTF-8 or not; it reads back as
    those bytes decoded with replacement characters."""

    raw: bytes

    def __new__(cls, raw: bytes) -> RawText:
        text = super().__new__(cls, raw.decode("utf-8", "replace"))
        text.raw = raw
        return text

    def encode(self, encoding: str = "utf-8", errors: str = "strict") -> bytes:
        return self.raw


class FarTimestamp(datetime):
    """A timestamp header no Python date holds (2**50 seconds: RabbitMQ passes it on)."""

    def timestamp(self) -> float:
        return float(2**50)


def _snapshot(**changes: object) -> dict[str, object]:
    order_id = str(uuid.uuid4())
    data: dict[str, object] = {
        "order_id": order_id,
        "customer_id": str(uuid.uuid4()),
        "address": "Москва, Тверская улица, 7",
        "date": "2030-05-06T12:00:00+03:00",
        "total": 799.5,
        "version": 1,
    }
    data.update(changes)
    return data


def _envelope(data: object = None, **changes: object) -> dict[str, object]:
    snapshot = data if data is not None else _snapshot()
    order_id = snapshot.get("order_id") if isinstance(snapshot, dict) else None
    envelope: dict[str, object] = {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": ORDERS_SOURCE,
        "type": "deliveryhub.order.created",
        "time": utcnow().isoformat(),
        "subject": str(order_id or uuid.uuid4()),
        "datacontenttype": "application/json",
        "data": snapshot,
    }
    envelope.update(changes)
    return envelope


def _json(value: object) -> bytes:
    # NaN and Infinity are spelled as Python's json module reads them, as a careless producer sends.
    return json.dumps(value, ensure_ascii=False, allow_nan=True).encode("utf-8", "surrogatepass")


def _with_raw(data_field: str, raw_json: str, **changes: object) -> bytes:
    """An envelope whose data field `data_field` is spelled as the raw JSON text given."""
    marker = "__raw_value__"
    body = _json(_envelope(_snapshot(**{data_field: marker}), **changes)).decode("utf-8", "surrogatepass")
    return body.replace(json.dumps(marker), raw_json).encode("utf-8", "surrogatepass")


HUGE_DIGITS = "9" * 5000
NINE_HUNDRED_KB = "ж" * (450 * 1024)  # two bytes each in UTF-8
TOO_LARGE_BYTES = 1_048_576 + 64 * 1024


def _too_large() -> bytes:
    """A valid-looking order.created larger than any event of this system (an address of 1.1 MiB)."""
    return _json(_envelope(_snapshot(address="x" * TOO_LARGE_BYTES)))


def cloud_event_kinds() -> list[Hostile]:
    """Bad messages on the events exchange, each routed to the delivery service's queue."""
    malformed, foreign = "MalformedEvent", "ForeignEvent"
    data_says = "invalid order.created data"
    return [
        Hostile("a 5,000-digit integer", _with_raw("version", HUGE_DIGITS), malformed, "not JSON"),
        Hostile("a float beyond double range", _with_raw("total", "1e400"), malformed, f"{data_says}: total"),
        Hostile("NaN as the total", _with_raw("total", "NaN"), malformed, f"{data_says}: total"),
        Hostile(
            "Infinity as the version", _with_raw("version", "Infinity"), malformed, f"{data_says}: version"
        ),
        Hostile("NUL in the address", _json(_envelope(_snapshot(address="a\x00b"))), malformed, "address"),
        Hostile("a lone surrogate in the address", _with_raw("address", '"a\\ud800b"'), malformed, "address"),
        Hostile(
            "the order id as a number", _json(_envelope(_snapshot(order_id=12345))), malformed, "order_id"
        ),
        Hostile(
            "the address as an object",
            _json(_envelope(_snapshot(address={"city": "X"}))),
            malformed,
            "address",
        ),
        Hostile("the version as a word", _json(_envelope(_snapshot(version="seven"))), malformed, "version"),
        Hostile("data that is a list", _json(_envelope([1, 2, 3])), malformed, "envelope: data"),
        Hostile("data that is a string", _json(_envelope(data="order")), malformed, "envelope: data"),
        Hostile(
            "a date that overflows in UTC",
            _json(_envelope(_snapshot(date="0001-01-01T00:00:00+05:00"))),
            malformed,
            "date",
        ),
        Hostile(
            "a date past year 9999",
            _json(_envelope(_snapshot(date="10000-01-01T00:00:00+00:00"))),
            malformed,
            "date",
        ),
        Hostile(
            "nesting deeper than any parser",
            b'{"data": ' + b"[" * 5000 + b"]" * 5000 + b"}",
            malformed,
            "not JSON",
        ),
        Hostile("bytes that are not UTF-8", b"\xff\xfe\xfd order \x80\x81", malformed, "not JSON"),
        Hostile("an empty body", b"", malformed, "not JSON"),
        Hostile("a JSON array", b"[1, 2, 3]", malformed, "not a JSON object"),
        Hostile("CloudEvents 0.3", _json(_envelope(specversion="0.3")), malformed, "specversion"),
        Hostile("an id that is not a uuid", _json(_envelope(id="order-1")), malformed, "envelope: id"),
        Hostile(
            "order.created from the delivery source",
            _json(_envelope(source=DELIVERY_SOURCE)),
            foreign,
            "source",
        ),
        Hostile(
            "a type that disagrees with its routing key",
            _json(_envelope(type="deliveryhub.order.paid")),
            foreign,
            "routing key",
        ),
        Hostile(
            "a delivery event among the order events",
            _json(_envelope(type="deliveryhub.delivery.finished", source=DELIVERY_SOURCE)),
            foreign,
            "routing key",
            routing_key="order.paid",
        ),
        Hostile(
            "an unknown event type",
            _json(_envelope(type="deliveryhub.order.refunded")),
            malformed,
            "no handler for event type",
            routing_key="order.refunded",
        ),
        Hostile("version 0", _json(_envelope(_snapshot(version=0))), malformed, f"{data_says}: version"),
        Hostile(
            "a version past a 32-bit integer",
            _json(_envelope(_snapshot(version=2**31))),
            malformed,
            f"{data_says}: version",
        ),
        Hostile(
            "an address of 900 KB", _json(_envelope(_snapshot(address=NINE_HUNDRED_KB))), malformed, "address"
        ),
        Hostile(
            "a total of a quadrillion",
            _json(_envelope(_snapshot(total=10**15))),
            malformed,
            f"{data_says}: total",
        ),
        Hostile("a negative total", _json(_envelope(_snapshot(total=-5))), malformed, f"{data_says}: total"),
        Hostile(
            "a subject that is not the order",
            _json(_envelope(subject=str(uuid.uuid4()))),
            malformed,
            "subject",
        ),
        Hostile("a body over 1 MiB", _too_large(), "MessageTooLarge", "bytes"),
        Hostile(
            "a timestamp header past the year 9999",
            b"{}",
            malformed,
            "envelope",
            headers={"x-sent-at": FarTimestamp(2001, 1, 1, tzinfo=UTC)},
        ),
        Hostile(
            "a header name that is not UTF-8",
            b"{}",
            malformed,
            "envelope",
            headers={RawText(b"x-\xff\xfe-origin"): "shop"},
        ),
        Hostile("a message id that is not UTF-8", b"{}", malformed, "envelope", message_id_tail=b"\xff\xfe"),
        Hostile(
            "headers that fill an AMQP frame (120 KB)",
            b"{}",
            malformed,
            "envelope",
            headers={f"x-filler-{number}": "h" * 12_000 for number in range(10)},
        ),
    ]


def _legacy_created(**changes: object) -> bytes:
    body: dict[str, object] = {
        "order_id": str(uuid.uuid4()),
        "date": "2030-05-06T12:00:00",
        "address": "Москва, Тверская улица, 7",
    }
    body.update(changes)
    return _json(body)


def legacy_kinds() -> list[Hostile]:
    """Bad plain-JSON messages on the teaching design's two queues."""
    created, paid = "invalid legacy.order_created message", "invalid legacy.order_paid message"
    huge_id = b'{"order_id": ' + HUGE_DIGITS.encode() + b', "date": "2030-05-06T12:00:00", "address": "x"}'
    kinds = [
        ("legacy: not JSON", b"order_id=1&address=x", created),
        ("legacy: a JSON array", b'[{"order_id": 1}]', created),
        (
            "legacy: no address",
            _json({"order_id": str(uuid.uuid4()), "date": "2030-05-06T12:00:00"}),
            "address",
        ),
        ("legacy: an order id that is not a uuid", _legacy_created(order_id="A-17"), "order_id"),
        ("legacy: a 5,000-digit order id", huge_id, "number out of range"),
        ("legacy: a date that overflows in UTC", _legacy_created(date="0001-01-01T00:00:00+05:00"), "date"),
        ("legacy: NUL in the address", _legacy_created(address="a\x00b"), "address"),
        ("legacy: an address of 900 KB", _legacy_created(address=NINE_HUNDRED_KB), "address"),
        ("legacy: bytes that are not UTF-8", b'{"order_id": "\xff\xfe"}', created),
    ]
    return [
        *(Hostile(kind, body, "MalformedEvent", says, "legacy created") for kind, body, says in kinds),
        Hostile(
            "legacy paid: an id that is a number", _json({"id": 5}), "MalformedEvent", paid, "legacy paid"
        ),
        Hostile("legacy paid: a null id", _json({"id": None}), "MalformedEvent", paid, "legacy paid"),
    ]


def every_kind() -> list[Hostile]:
    return [*cloud_event_kinds(), *legacy_kinds()]
