"""A Core SELECT that a read route runs on the driver's connection: compiled by SQLAlchemy once,
its values processed by its columns' own types, its rows named tuples.

On a read of one row, SQLAlchemy's execution of a compiled statement (the execution context, the
cursor adapter, the result object and the hops between the event loop and its greenlet) costs more
CPU than everything the driver does for it. A `DriverRead` hands the SQL that SQLAlchemy compiled
for the statement straight to asyncpg, which keeps it prepared, and turns each value as the
column's type would (a timestamp made aware, say), so the rows are what SQLAlchemy would have
returned. Inside a transaction, and on any other database (SQLite, in the embedded mode), the
statement runs through SQLAlchemy and comes back as the same named tuples.
"""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import Select
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import MultipleResultsFound
from sqlalchemy.ext.asyncio import AsyncConnection

from deliveryhub_kit.db import driver_of, invalidate_if_stale

Process = Callable[[Any], Any] | None


class ReadRow(Protocol):
    """A row of a `DriverRead`: its columns as attributes, by their keys in the statement."""

    def __getattr__(self, name: str) -> Any: ...

    def _asdict(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class _Parameter:
    name: str
    process: Process
    value: object  # the statement's own (a literal in it), unless the caller must name it
    required: bool


def _argument(parameter: _Parameter, given: dict[str, object]) -> object:
    if parameter.name in given:
        value = given[parameter.name]
    elif parameter.required:
        raise KeyError(f"the read needs a value for {parameter.name!r}")
    else:
        value = parameter.value
    return value if parameter.process is None else parameter.process(value)


@dataclass(frozen=True)
class _Compiled:
    dialect: Dialect
    sql: str
    parameters: tuple[_Parameter, ...]  # in the order of $1, $2, …
    columns: tuple[Process, ...]  # each selected column's result processing
    processed: bool  # some column's value is processed


class DriverRead:
    """One SELECT, compiled for the dialect it first runs on and run on its driver."""

    def __init__(self, statement: Select[*tuple[Any, ...]]) -> None:
        self._statement = statement
        keys = [column.key for column in statement.selected_columns if column.key is not None]
        if len(keys) != len(statement.selected_columns):
            raise ValueError("every column a driver read selects needs a name")
        # A named tuple's type of its own, with fields the statement names only when it runs.
        self._row_type: Any = namedtuple("ReadRow", keys)  # type: ignore[misc]
        self._compiled: _Compiled | None = None

    async def all(self, connection: AsyncConnection, **parameters: object) -> list[ReadRow]:
        """The rows of the statement with these parameters, on this connection: on its driver when
        no transaction is open on it (a reading unit of work's), otherwise through SQLAlchemy, which
        sends the BEGIN it has put off until the first statement."""
        if connection.dialect.driver != "asyncpg" or connection.in_transaction():
            return [
                self._row_type._make(row) for row in await connection.execute(self._statement, parameters)
            ]
        driver = await driver_of(connection)
        try:
            compiled = self._compiled
            if compiled is None or compiled.dialect is not connection.dialect:
                compiled = self._compiled = await _compile(self._statement, connection.dialect, driver)
            arguments = [_argument(parameter, parameters) for parameter in compiled.parameters]
            records = await driver.fetch(compiled.sql, *arguments)
        except BaseException as error:
            await invalidate_if_stale(connection, error)
            raise
        if not compiled.processed:
            return [self._row_type._make(record) for record in records]
        return [
            self._row_type._make(
                value if process is None else process(value)
                for process, value in zip(compiled.columns, record, strict=True)
            )
            for record in records
        ]

    async def one_or_none(self, connection: AsyncConnection, **parameters: object) -> ReadRow | None:
        """The one row of the statement, or None if it has none."""
        rows = await self.all(connection, **parameters)
        if len(rows) > 1:
            raise MultipleResultsFound(f"{len(rows)} rows where one at most was expected")
        return rows[0] if rows else None


async def _compile(statement: Select[*tuple[Any, ...]], dialect: Dialect, driver: Any) -> _Compiled:
    """The statement compiled for the dialect; what becomes of a column's value depends on the
    type the server sends it as (a float for a numeric column, say), which its prepared statement
    names."""
    compiled = statement.compile(dialect=dialect)
    names: Sequence[str] = compiled.positiontup or ()
    binds = compiled.binds
    expanding = [name for name in names if binds[name].expanding]
    if expanding:
        raise ValueError(f"a driver read takes no expanding parameters ({', '.join(expanding)})")
    sent_as = [attribute.type.oid for attribute in (await driver.prepare(compiled.string)).get_attributes()]
    columns = tuple(
        column.type.dialect_impl(dialect).result_processor(dialect, oid)
        for column, oid in zip(statement.selected_columns, sent_as, strict=True)
    )
    return _Compiled(
        dialect=dialect,
        sql=compiled.string,
        parameters=tuple(
            _Parameter(
                name,
                binds[name].type.dialect_impl(dialect).bind_processor(dialect),
                None if binds[name].required else binds[name].effective_value,
                binds[name].required,
            )
            for name in names
        ),
        columns=columns,
        processed=any(process is not None for process in columns),
    )
