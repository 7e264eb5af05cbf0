"""Rows of several tables changed and inserted by one PostgreSQL statement, run on the driver's
connection.

A transaction that only inserts rows (an order and its event) needs no BEGIN and COMMIT around
them: one statement is atomic on its own. `WITH w1 AS (INSERT …), w2 AS (INSERT …) INSERT …`
writes every row or none, in one round trip; PostgreSQL runs each data-modifying WITH once and to
completion whether or not the main statement reads it. A transaction that changes rows it has
locked (an order paid, and its event) writes the changes the same way, an `UPDATE … WHERE` by
primary key for each, ahead of the inserts. The statement is built once for each shape (which
columns of which tables, how many rows) and asyncpg keeps it prepared; each call only brings its
values, turned into what the driver takes by the columns' own SQLAlchemy types, and the columns an
inserted row leaves out get their Python-side defaults, as an `insert(table)` would give them.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Column, Table
from sqlalchemy.engine import Dialect

from deliveryhub_kit.unit_of_work import RowChange

Rows = dict[Table, list[dict[str, object]]]
# Which columns of which tables, how many rows of each, in order.
Shape = tuple[tuple[Table, tuple[str, ...], int], ...]
# Which columns each change sets, of which table, in order.
ChangeShape = tuple[tuple[Table, tuple[str, ...]], ...]


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


@dataclass(frozen=True)
class _Update:
    """The UPDATE of one table's row by primary key, setting these columns."""

    sets: tuple[str, ...]  # SET's "column = " of each column, in order
    table: str
    set_values: tuple[_Value, ...]
    key_names: tuple[str, ...]  # the primary key's columns
    key_values: tuple[_Value, ...]


class OneStatement:
    """Builds the one statement for a set of rows, in a dialect, and the arguments it takes."""

    def __init__(self, dialect: Dialect) -> None:
        self._dialect = dialect
        self._shape = functools.lru_cache(maxsize=256)(self._build)
        self._insert = functools.lru_cache(maxsize=256)(self._insert_of)
        self._update = functools.lru_cache(maxsize=256)(self._update_of)

    def __call__(self, rows: Rows, changes: Sequence[RowChange] = ()) -> tuple[str, list[object]]:
        """The statement writing these changes, then these rows by table in order, and its
        positional arguments."""
        arguments: list[object] = []
        changed = tuple((change.table, tuple(change.values)) for change in changes)
        for (table, keys), change in zip(changed, changes, strict=True):
            update = self._update(table, keys)
            for value in update.set_values:
                arguments.append(_processed(value, change.values[value.key]))
            for value in update.key_values:
                arguments.append(_processed(value, change.key[value.key]))
        groups: list[tuple[Table, tuple[str, ...], list[dict[str, object]]]] = []
        for table, table_rows in rows.items():
            for row in table_rows:
                keys = tuple(row)
                if groups and groups[-1][0] is table and groups[-1][1] == keys:
                    groups[-1][2].append(row)
                else:
                    groups.append((table, keys, [row]))
        statement, inserts = self._shape(
            changed, tuple((table, keys, len(group)) for table, keys, group in groups)
        )
        for insert, (_, _, group) in zip(inserts, groups, strict=True):
            for row in group:
                for value in insert.values:
                    given = row[value.key] if value.default is None else value.default()
                    arguments.append(_processed(value, given))
        return statement, arguments

    def _update_parts(self, changes: ChangeShape) -> tuple[list[str], int]:
        parts: list[str] = []
        number = 0
        for table, keys in changes:
            update = self._update(table, keys)
            sets = ", ".join(f"{set_} ${number + index + 1}" for index, set_ in enumerate(update.sets))
            number += len(update.sets)
            where = " AND ".join(
                f"{name} = ${number + index + 1}" for index, name in enumerate(update.key_names)
            )
            number += len(update.key_names)
            # Names from the table's metadata, quoted by the dialect; the values are all parameters.
            parts.append(f"UPDATE {update.table} SET {sets} WHERE {where}")  # noqa: S608
        return parts, number

    @staticmethod
    def _written(parts: Sequence[str]) -> str:
        return ", ".join(f"w{index} AS ({part})" for index, part in enumerate(parts))

    def _build(self, changes: ChangeShape, shape: Shape) -> tuple[str, tuple[_Insert, ...]]:
        inserts = tuple(self._insert(table, keys) for table, keys, _ in shape)
        parts, number = self._update_parts(changes)
        for insert, (_, _, count) in zip(inserts, shape, strict=True):
            tuples = []
            for _ in range(count):
                places = ", ".join(f"${number + index + 1}" for index in range(len(insert.values)))
                number += len(insert.values)
                tuples.append(f"({places})")
            parts.append(f"{insert.head} {', '.join(tuples)}")
        *ahead, last = parts
        return (f"WITH {self._written(ahead)} {last}" if ahead else last), inserts

    def _update_of(self, table: Table, keys: tuple[str, ...]) -> _Update:
        quote = self._dialect.identifier_preparer
        unknown = set(keys) - set(table.columns.keys())
        if unknown:
            raise KeyError(f"{table.name} has no column {', '.join(sorted(unknown))}")
        primary = tuple(table.primary_key.columns)
        return _Update(
            sets=tuple(f"{quote.quote(table.columns[key].name)} =" for key in keys),
            table=quote.format_table(table),
            set_values=tuple(_Value(key, None, self._processor(table.columns[key])) for key in keys),
            key_names=tuple(quote.quote(column.name) for column in primary),
            key_values=tuple(_Value(column.key, None, self._processor(column)) for column in primary),
        )

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


def _processed(value: _Value, given: object) -> object:
    return value.process(given) if value.process is not None else given


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
