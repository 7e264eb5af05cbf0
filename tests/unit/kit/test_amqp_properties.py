"""Message properties RabbitMQ passes on as a producer wrote them are read, not refused."""

from __future__ import annotations

import struct
from datetime import UTC, datetime

import pytest
from pamqp import decode, encode

from deliveryhub_kit.amqp_properties import read_any_properties


def table(*items: bytes) -> bytes:
    body = b"".join(items)
    return struct.pack(">I", len(body)) + body


def name(raw: bytes) -> bytes:
    return bytes([len(raw)]) + raw


def test_a_timestamp_no_date_holds_is_read_as_its_seconds() -> None:
    read_any_properties()
    far = table(name(b"sent-at"), b"T" + struct.pack(">Q", 2**50), name(b"ok"), b"T" + struct.pack(">Q", 0))

    consumed, headers = decode.by_type(far, "table")

    assert consumed == len(far)
    assert headers == {"sent-at": 2**50, "ok": datetime(1970, 1, 1, tzinfo=UTC)}


def test_names_and_short_strings_that_are_not_utf8_are_read_with_replacement_characters() -> None:
    read_any_properties()
    headers = table(name(b"x-\xff-origin"), b"S" + struct.pack(">I", 4) + b"shop")

    assert decode.by_type(headers, "table")[1] == {"x-\ufffd-origin": "shop"}
    assert decode.by_type(name(b"order-\xfe1"), "shortstr") == (9, "order-\ufffd1")


def test_what_was_readable_reads_as_before() -> None:
    read_any_properties()
    written = encode.field_table({"a": 1, "b": "two", "c": {"d": [True, 2.5]}})

    assert decode.by_type(written, "table") == (len(written), {"a": 1, "b": "two", "c": {"d": [True, 2.5]}})


def test_a_truncated_table_is_still_an_error() -> None:
    read_any_properties()

    with pytest.raises(ValueError, match="exceeds"):
        decode.by_type(struct.pack(">I", 50) + b"\x01a", "table")
