"""The bounds of the values an order carries, shared by the APIs' input and the events' data.

An event is held to the same bounds as the request that made it: a value the orders API would refuse
is not one this system sends, so a consumer refuses it too instead of trying to store it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Final

from pydantic import AfterValidator, AwareDatetime, Field, StringConstraints

MAX_ADDRESS_LENGTH: Final = 500
MAX_NAME_LENGTH: Final = 200
MAX_REASON_LENGTH: Final = 500
# Versions are stored as 32-bit integers.
MAX_VERSION: Final = 2**31 - 1
# The largest amount a Numeric(14, 2) column holds.
MAX_AMOUNT: Final = Decimal("999999999999.99")
# Request ids travel as the CloudEvents `correlationid`; the services accept no longer ones.
MAX_CORRELATION_ID_LENGTH: Final = 128


def storable_text(text: str) -> str:
    """Refuse what no database column of text takes: NUL, and code points UTF-8 cannot encode."""
    if "\x00" in text:
        raise ValueError("must not contain the NUL character")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        raise ValueError(f"is not valid Unicode ({error.reason} at position {error.start})") from None
    return text


def storable_moment(value: datetime) -> datetime:
    """Refuse a moment that has no UTC equivalent in the years 1 to 9999 (a naive one is UTC)."""
    try:
        if value.tzinfo is not None:
            value.astimezone(UTC)
    except OverflowError as error:
        raise ValueError("the date is out of range") from error
    return value


Address = Annotated[
    str, StringConstraints(min_length=1, max_length=MAX_ADDRESS_LENGTH), AfterValidator(storable_text)
]
PersonName = Annotated[
    str, StringConstraints(min_length=1, max_length=MAX_NAME_LENGTH), AfterValidator(storable_text)
]
Reason = Annotated[str, StringConstraints(max_length=MAX_REASON_LENGTH), AfterValidator(storable_text)]
Moment = Annotated[AwareDatetime, AfterValidator(storable_moment)]
Version = Annotated[int, Field(ge=1, le=MAX_VERSION)]
