"""What the services' lists share: one page of a list with the number of all its matches, its order."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


class Sort(enum.StrEnum):
    """By when the record was made: the newest first (every list's default) or the oldest."""

    NEWEST = "newest"
    OLDEST = "oldest"


@dataclass(frozen=True)
class Page(Generic[T]):
    """The items of one page and how many match in all (answered as `X-Total-Count`)."""

    items: Sequence[T]
    total: int


TOTAL_HEADER = "X-Total-Count"
