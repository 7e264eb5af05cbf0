"""A list's search box: the first characters of an id, or words of an address.

`q` matches a record when its id starts with `q` (hex digits, hyphens ignored) or when every word
of `q` begins a word of its address, case aside: "тверская 12" finds "Москва, Тверская улица, 12а".
On PostgreSQL the words are a full-text query on the address (`simple` configuration, each word a
prefix), which a GIN index on `to_tsvector('simple', address)` serves; on SQLite, where there is
no such index, each word is looked for in the case-folded address.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import BindParameter, ColumnElement, bindparam, or_
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.expression import ColumnClause
from sqlalchemy.sql.sqltypes import Boolean

# The longest `q` a list takes, and how many of its words count: a search box, not a document.
MAX_QUERY_CHARACTERS = 200
MAX_WORDS = 8
MAX_WORD_CHARACTERS = 50

# Letters and digits in any script; everything else separates words.
_WORD = re.compile(r"[^\W_]+")
_ID_PREFIX = re.compile(r"[0-9a-fA-F-]+")
# The name SQLite knows the case-folding function by (registered on each of its connections).
SQLITE_FOLD = "deliveryhub_fold"


@dataclass(frozen=True)
class Search:
    """What a search box's text asks for."""

    id_prefix: str | None  # lower-case hex digits, 1 to 32 of them
    words: tuple[str, ...]

    @classmethod
    def parse(cls, text: str | None) -> Search | None:
        """None when the text asks for nothing (empty, or punctuation alone)."""
        if text is None:
            return None
        text = text.strip()
        prefix = None
        if _ID_PREFIX.fullmatch(text):
            digits = text.replace("-", "").lower()
            if 0 < len(digits) <= 32:
                prefix = digits
        words = tuple(word.casefold()[:MAX_WORD_CHARACTERS] for word in _WORD.findall(text)[:MAX_WORDS])
        if prefix is None and not words:
            return None
        return cls(prefix, words)

    def id_range(self) -> tuple[uuid.UUID, uuid.UUID] | None:
        """The lowest and the highest id that start with the prefix."""
        if self.id_prefix is None:
            return None
        return uuid.UUID(self.id_prefix.ljust(32, "0")), uuid.UUID(self.id_prefix.ljust(32, "f"))

    def condition(self, id_column: Any, address_column: Any) -> ColumnElement[bool]:
        """The WHERE clause of this search over a table's id and address columns."""
        matches: list[ColumnElement[bool]] = []
        if (bounds := self.id_range()) is not None:
            matches.append(id_column.between(*bounds))
        if self.words:
            matches.append(AddressHasWords(address_column, self.words))
        return or_(*matches)  # parse() makes no search without a prefix or a word


class AddressHasWords(ColumnElement[bool]):
    """Every word begins a word of the address (PostgreSQL) or occurs in it (SQLite)."""

    inherit_cache = False
    type = Boolean()

    def __init__(self, column: ColumnClause[Any], words: tuple[str, ...]) -> None:
        self.column = column
        self.words = words


def ts_query(words: tuple[str, ...]) -> str:
    """The words as a `to_tsquery` text: each quoted (they hold no quote) and a prefix, all required."""
    return " & ".join(f"'{word}':*" for word in words)


@compiles(AddressHasWords, "postgresql")
def _address_words_on_postgresql(element: AddressHasWords, compiler: Any, **kw: Any) -> str:
    column = compiler.process(element.column, **kw)
    query = compiler.process(_bound(ts_query(element.words)), **kw)
    # The configuration is written out, not bound: the index's expression must match it exactly.
    return f"to_tsvector('simple'::regconfig, {column}) @@ to_tsquery('simple'::regconfig, {query})"


@compiles(AddressHasWords)
def _address_words_elsewhere(element: AddressHasWords, compiler: Any, **kw: Any) -> str:
    column = compiler.process(element.column, **kw)
    clauses = []
    for word in element.words:
        pattern = compiler.process(_bound("%" + _escape_like(word) + "%"), **kw)
        clauses.append(f"{SQLITE_FOLD}({column}) LIKE {pattern} ESCAPE '\\'")
    return "(" + " AND ".join(clauses) + ")"


def _bound(value: str) -> BindParameter[str]:
    return bindparam(None, value, unique=True)


def _escape_like(word: str) -> str:
    return word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def fold(value: str | None) -> str | None:
    """SQLite's case folding for the search: Python's, which knows every script."""
    return value.casefold() if value is not None else None
