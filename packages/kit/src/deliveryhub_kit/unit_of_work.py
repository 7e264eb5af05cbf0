"""One transaction of a service: its session, the rows it writes at commit and the rows a batch
locked.

`Database.transaction()` opens a `UnitOfWork` and commits it when the block ends (or rolls it back
if the block raises). What the transaction carries lives in typed attributes, not in
`session.info`: the rows it inserts at commit (`pending`: the events emitted into it, for the
outbox table, and whatever `insert_at_commit` and `insert_record_at_commit` were given), the
rows it read to change and writes back at commit (`change_at_commit`), and the rows it has locked
already (`locked`, so that the handlers of a batch of messages find them without a query each).

A row inserted at commit is not written before: a query of the same transaction does not see it.
Nor is a change: a row read to change is a plain object the session does not track, compared with
what was read as the transaction commits, and only the columns that differ are written. On
PostgreSQL `Database.transaction` writes a transaction's changes and rows with one statement just
before it commits, or, when the transaction ran nothing else, with no BEGIN and COMMIT around that
statement. Elsewhere (SQLite, a session committed by hand) they are written by one UPDATE a
changed row and one INSERT a table as the session commits.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import Connection, Insert, Table, event, insert, update
from sqlalchemy.engine.interfaces import CoreExecuteOptionsParameter
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession, async_session
from sqlalchemy.orm import Session, SessionTransaction, sessionmaker

Row = TypeVar("Row")


@dataclass(frozen=True)
class PendingRow:
    """A row inserted in a transaction and not yet written: its values, or the object whose
    attributes of these columns are its values when it is written."""

    transaction: SessionTransaction  # the transaction (or savepoint) it was inserted in
    table: Table
    values: dict[str, object]
    record: object | None = None
    columns: tuple[str, ...] = ()

    def written(self) -> dict[str, object]:
        if self.record is None:
            return self.values
        return {column: getattr(self.record, column) for column in self.columns}


@dataclass(frozen=True)
class RowChange:
    """The columns of one row to set, and the row's primary key."""

    table: Table
    key: dict[str, object]
    values: dict[str, object]


@dataclass(frozen=True)
class ChangedRow:
    """A row read to change in a transaction: the object holding it and what was read."""

    transaction: SessionTransaction
    table: Table
    record: object
    read: dict[str, object]

    def change(self) -> RowChange | None:
        """What differs from what was read, if anything."""
        values = {}
        for column, was in self.read.items():
            now = getattr(self.record, column)
            if now != was:
                values[column] = now
        if not values:
            return None
        key = {column.key: self.read[column.key] for column in self.table.primary_key.columns}
        return RowChange(self.table, key, values)


class PendingRows:
    """The rows a unit of work writes at commit: the ones it changes, and the ones it inserts in
    the order they were given."""

    def __init__(self, start_writing: Callable[[], None]) -> None:
        self._start_writing = start_writing
        self._rows: list[PendingRow] = []
        self._changed: list[ChangedRow] = []
        self._writing = False
        # An event was emitted and its transaction has not rolled back: the relay has work.
        self.emitted = False

    def __bool__(self) -> bool:
        return bool(self._rows) or bool(self._changed)

    def add(self, pending: PendingRow, *, event: bool = False) -> None:
        self._started()
        self._rows.append(pending)
        self.emitted = self.emitted or event

    def watch(self, changed: ChangedRow) -> None:
        self._started()
        self._changed.append(changed)

    def _started(self) -> None:
        if not self._writing:
            self._start_writing()
            self._writing = True

    def take(self) -> dict[Table, list[dict[str, object]]]:
        """The rows to insert now, by table in the order of their first row; none are kept."""
        rows, self._rows = self._rows, []
        by_table: dict[Table, list[dict[str, object]]] = {}
        for row in rows:
            by_table.setdefault(row.table, []).append(row.written())
        return by_table

    def take_changes(self) -> list[RowChange]:
        """The changes to write now, of the rows that differ from what was read; none are kept."""
        changed, self._changed = self._changed, []
        return [change for row in changed if (change := row.change()) is not None]

    def forget(self, rolled_back: SessionTransaction) -> None:
        """Rows inserted or read to change in a transaction (or savepoint) that rolled back go with it."""
        self._rows = [row for row in self._rows if not _within(row.transaction, rolled_back)]
        self._changed = [row for row in self._changed if not _within(row.transaction, rolled_back)]
        if rolled_back.parent is None:
            self.emitted = False


class LockedRows:
    """The rows this transaction holds locked, by model and id (None: there is no such row)."""

    def __init__(self) -> None:
        self._by_model: dict[type[Any], dict[uuid.UUID, Any]] = {}

    def of(self, model: type[Row]) -> dict[uuid.UUID, Row | None]:
        """The locked rows of one model; what is put here stays for the rest of the transaction."""
        return self._by_model.setdefault(model, {})


class UnitOfWork(AsyncSession):
    """The session of one transaction, with what that transaction carries."""

    def __init__(self, *args: Any, start_writing: Callable[[], None], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pending = PendingRows(start_writing)
        self.locked = LockedRows()
        # A statement has run: the transaction holds a connection (set by `track_connections`).
        self.connected = False

    def insert_at_commit(self, table: Table, values: dict[str, object], *, event: bool = False) -> None:
        """Insert this row when the transaction commits; `event`: it is an outbox row."""
        self.pending.add(PendingRow(self._in_progress(), table, values), event=event)

    def insert_record_at_commit(self, table: Table, record: object, columns: tuple[str, ...]) -> None:
        """Insert a row of `record`'s attributes of these columns, as they are when the transaction
        commits: a plain object the session does not track, which the transaction may go on
        changing (a delivery created by one event of a batch and activated by the next)."""
        self.pending.add(PendingRow(self._in_progress(), table, {}, record, columns))

    def change_at_commit(self, table: Table, record: object, read: dict[str, object]) -> None:
        """Write back, as the transaction commits, the columns of `record` that then differ from
        `read` (what was read of the row, primary key included, for these columns). The record is
        a plain object the session does not track: the caller has locked its row, and changes it
        by assigning its attributes (a value changed in place is not seen)."""
        self.pending.watch(ChangedRow(self._in_progress(), table, record, read))

    def _in_progress(self) -> SessionTransaction:
        # A row belongs to the transaction in progress (begun here if none is: no I/O yet), so that
        # its rollback, or a savepoint's, takes the row with it.
        sync_session = self.sync_session
        return sync_session.get_nested_transaction() or sync_session.get_transaction() or sync_session.begin()


class ReadingWork(UnitOfWork):
    """A unit of work that only reads, bound to a connection of its own with no transaction on it.
    Its Core statements run on that connection as it is (`connection()`), without the session's
    transaction bookkeeping around each request; the session's own statements (ORM queries) use
    the same connection, so a read holds one connection however it asks."""

    async def connection(
        self,
        bind_arguments: dict[str, Any] | None = None,
        execution_options: CoreExecuteOptionsParameter | None = None,
        **kw: Any,
    ) -> AsyncConnection:
        bound = self.bind
        if bind_arguments or execution_options or not isinstance(bound, AsyncConnection):
            return await super().connection(bind_arguments, execution_options, **kw)
        return bound


def track_connections(sessions: sessionmaker[Session]) -> None:
    """Have each unit of work of these sessions note when its transaction first uses a connection."""
    event.listen(sessions, "after_begin", _note_connected)


def write_pending_before_commit(sessions: sessionmaker[Session]) -> None:
    """Have each transaction of these sessions write the rows inserted into it as it commits,
    whoever commits, and forget those of a transaction or savepoint that rolls back."""
    event.listen(sessions, "before_commit", _write_pending_rows)
    event.listen(sessions, "after_soft_rollback", _forget_rolled_back_rows)


def _work_of(session: Session) -> UnitOfWork | None:
    work = async_session(session)
    return work if isinstance(work, UnitOfWork) else None


def _note_connected(session: Session, _transaction: SessionTransaction, _connection: Connection) -> None:
    work = _work_of(session)
    if work is not None:
        work.connected = True


def _write_pending_rows(session: Session) -> None:
    work = _work_of(session)
    if work is None:
        return
    for change in work.pending.take_changes():
        keys = (column == change.key[column.key] for column in change.table.primary_key.columns)
        session.execute(update(change.table).where(*keys).values(change.values))
    for table, rows in work.pending.take().items():
        session.execute(_insert_into(table), rows)


@functools.cache
def _insert_into(table: Table) -> Insert:
    """One INSERT statement a table, built once: its compiled form is then found at once."""
    return insert(table)


def _forget_rolled_back_rows(session: Session, previous: SessionTransaction) -> None:
    work = _work_of(session)
    if work is not None:
        work.pending.forget(previous)


def _within(transaction: SessionTransaction, outer: SessionTransaction) -> bool:
    current: SessionTransaction | None = transaction
    while current is not None:
        if current is outer:
            return True
        current = current.parent
    return False
