"""Rows of several tables inserted by one PostgreSQL statement, run on the driver's connection.

A transaction that only inserts rows (an order and its event) needs no BEGIN and COMMIT around
them: one statement is atomic on its own. `WITH w1 AS (INSERT …), w2 AS (INSERT …) INSERT …`
writes every row or none, in one round trip; PostgreSQL runs each data-modifying WITH once and to
completion whether or not the main statement reads it. The statement is built once for each shape
(which columns of which tables, how many rows) and asyncpg keeps it prepared; each call only
brings its values, turned into what the driver takes by the columns' own SQLAlchemy types, and the
columns a row leaves out get their Python-side defaults, as an `insert(table)` would give them.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Column, Table
from sqlalchemy.engine import Dialect

Rows = dict[Table, list[dict[str, object]]]
# Which columns of which tables, how many rows of each, in order.
Shape = tuple[tuple[Table, tuple[str, ...], int], ...]


@dataclass(frozen=True)
class _Value:
    """How one column's value is found in a row and made into what the driver takes."""

    key: str
    default: Callable[[], object] | None  # the rows of this shape leave the column out
    process: Callable[[Any], Any] | None


@dataclass(frozen=True)
class _Insert:
    """The INSERT of one table's rows that name these columns."""

    head: str  # INSERT INTO table (columns) VALUES
    values: tuple[_Value, ...]


class OneStatement:
    """Builds the one statement for a set of rows, in a dialect, and the arguments it takes."""

    def __init__(self, dialect: Dialect) -> None:
        self._dialect = dialect
        self._shape = functools.lru_cache(maxsize=256)(self._build)
        self._insert = functools.lru_cache(maxsize=256)(self._insert_of)

    def __call__(self, rows: Rows) -> tuple[str, list[object]]:
        """The statement writing these rows, by table in order, and its positional arguments."""
        groups: list[tuple[Table, tuple[str, ...], list[dict[str, object]]]] = []
        for table, table_rows in rows.items():
            for row in table_rows:
                keys = tuple(row)
                if groups and groups[-1][0] is table and groups[-1][1] == keys:
                    groups[-1][2].append(row)
                else:
                    groups.append((table, keys, [row]))
        statement, inserts = self._shape(tuple((table, keys, len(group)) for table, keys, group in groups))
        arguments: list[object] = []
        for insert, (_, _, group) in zip(inserts, groups, strict=True):
            for row in group:
                for value in insert.values:
                    given = row[value.key] if value.default is None else value.default()
                    arguments.append(value.process(given) if value.process is not None else given)
        return statement, arguments

    def _build(self, shape: Shape) -> tuple[str, tuple[_Insert, ...]]:
        inserts = tuple(self._insert(table, keys) for table, keys, _ in shape)
        parts: list[str] = []
        number = 0
        for insert, (_, _, count) in zip(inserts, shape, strict=True):
            tuples = []
            for _ in range(count):
                places = ", ".join(f"${number + index + 1}" for index in range(len(insert.values)))
                number += len(insert.values)
                tuples.append(f"({places})")
            parts.append(f"{insert.head} {', '.join(tuples)}")
        *ahead, last = parts
        if not ahead:
            return last, inserts
        written = ", ".join(f"w{index} AS ({part})" for index, part in enumerate(ahead))
        return f"WITH {written} {last}", inserts

    def _insert_of(self, table: Table, keys: tuple[str, ...]) -> _Insert:
        quote = self._dialect.identifier_preparer
        values: list[_Value] = []
        for column in table.columns:
            if column.key in keys:
                values.append(_Value(column.key, None, self._processor(column)))
                continue
            default = _python_default(column)
            if default is not None:
                values.append(_Value(column.key, default, self._processor(column)))
        unknown = set(keys) - set(table.columns.keys())
        if unknown:
            raise KeyError(f"{table.name} has no column {', '.join(sorted(unknown))}")
        names = ", ".join(quote.quote(table.columns[value.key].name) for value in values)
        return _Insert(f"INSERT INTO {quote.format_table(table)} ({names}) VALUES", tuple(values))

    def _processor(self, column: Column[Any]) -> Callable[[Any], Any] | None:
        processor: Callable[[Any], Any] | None = column.type.dialect_impl(self._dialect).bind_processor(
            self._dialect
        )
        return processor


def _python_default(column: Column[Any]) -> Callable[[], object] | None:
    """The value SQLAlchemy's INSERT would give a column a row leaves out, if it is made in Python;
    None where the database gives it (a sequence, a server default) or nothing does (NULL)."""
    default = column.default
    if default is None or getattr(default, "is_sequence", False):
        return None
    if getattr(default, "is_clause_element", False):
        raise ValueError(f"{column} has an SQL default: name its value in the row")
    made = getattr(default, "arg")  # noqa: B009 (a scalar or a callable taking the context)
    if getattr(default, "is_callable", False):
        return lambda: made(None)
    return lambda: made
