"""Reading whatever a producer put in a message's AMQP properties, without losing the connection.

RabbitMQ passes a message's properties and headers on as the producer wrote them. pamqp, the AMQP
codec under aio-pika, raises on two things a careless or hostile producer can send and RabbitMQ
accepts: a timestamp outside Python's years 1 to 9999, and a short string (a message id, a header's
name) that is not UTF-8. The error surfaces while a frame is read, so the client closes the whole
connection, the broker hands the same message out again to the next one, and the consumer never
gets past it; every message it holds is counted toward its queue's delivery limit meanwhile.

`read_any_properties()` makes those values readable instead: a timestamp that is no date stays its
integer, bytes that are not UTF-8 are decoded with replacement characters. The consumer then sees
the message and settles it like any other.
"""

from __future__ import annotations

import datetime
import struct
from typing import Final

from pamqp import common
from pamqp import decode as pamqp_decode

_STRICT_TIMESTAMP: Final = pamqp_decode.timestamp
_TIMESTAMP: Final = struct.Struct(">Q")


def _timestamp(value: bytes) -> tuple[int, datetime.datetime | int]:
    try:
        return _STRICT_TIMESTAMP(value)
    except (ValueError, OverflowError, OSError):
        if len(value) < _TIMESTAMP.size:
            raise ValueError("Could not unpack timestamp value") from None
        return _TIMESTAMP.size, int(_TIMESTAMP.unpack_from(value)[0])


def _short_str(value: bytes) -> tuple[int, str]:
    if not value:
        raise ValueError("Could not unpack short string value")
    length = value[0]
    return length + 1, value[1 : length + 1].decode("utf-8", "replace")


def _field_table(value: bytes) -> tuple[int, common.FieldTable]:
    if len(value) < 4:
        raise ValueError("Could not unpack field table")
    end = 4 + int.from_bytes(value[:4], "big")
    if end > len(value):
        raise ValueError("Field table length exceeds available data")
    table: common.FieldTable = {}
    offset = 4
    while offset < end:
        name_length = value[offset]
        offset += 1
        if offset + name_length > end:
            raise ValueError("Field table key length exceeds data")
        name = value[offset : offset + name_length].decode("utf-8", "replace")
        offset += name_length
        consumed, item = pamqp_decode.embedded_value(value[offset:])
        offset += consumed
        table[name] = item
    return end, table


def read_any_properties() -> None:
    """Have pamqp read out-of-range timestamps and non-UTF-8 short strings instead of failing
    the frame (and with it the connection); idempotent, for the whole process."""
    pamqp_decode.METHODS["timestamp"] = _timestamp
    pamqp_decode.METHODS["shortstr"] = _short_str
    pamqp_decode.METHODS["table"] = _field_table
    pamqp_decode.TABLE_MAPPING[b"T"] = _timestamp
    pamqp_decode.TABLE_MAPPING[b"F"] = _field_table
