"""What the services' lists share: one page of a list with the number of all its matches, its order."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import ColumnElement, UnaryExpression
from sqlalchemy.orm import InstrumentedAttribute

T = TypeVar("T")
# A column to order by: a mapped attribute, or a table's column in a statement read without the ORM.
Orderable = InstrumentedAttribute[Any] | ColumnElement[Any]


class Sort(enum.StrEnum):
    """By when the record was made, the newest first (every list's default) or the oldest; or by
    when it last changed, the latest change first (what a live view follows)."""

    NEWEST = "newest"
    OLDEST = "oldest"
    UPDATED = "updated"


def ordering(
    sort: Sort,
    *,
    created_at: Orderable,
    updated_at: Orderable,
    id: Orderable,
) -> tuple[UnaryExpression[Any], UnaryExpression[Any]]:
    """The ORDER BY of a list: by (created_at, id) either way, so that one index serves both
    orders; by (updated_at, id) for the latest changes."""
    if sort is Sort.OLDEST:
        return created_at.asc(), id.asc()
    if sort is Sort.UPDATED:
        return updated_at.desc(), id.desc()
    return created_at.desc(), id.desc()


@dataclass(frozen=True)
class Page(Generic[T]):
    """The items of one page and how many match in all (answered as `X-Total-Count`)."""

    items: Sequence[T]
    total: int


TOTAL_HEADER = "X-Total-Count"
