"""One transaction of a service: its session, the rows it writes at commit and the rows a batch
locked.

`Database.transaction()` opens a `UnitOfWork` and commits it when the block ends (or rolls it back
if the block raises). What the transaction carries lives in typed attributes, not in
`session.info`: the rows it inserts at commit (`pending`: the events emitted into it, for the
outbox table, and whatever `insert_at_commit` was given) and the rows it has locked already
(`locked`, so that the handlers of a batch of messages find them without a query each).

A row inserted at commit is not written before: a query of the same transaction does not see it.
On PostgreSQL `Database.transaction` writes a transaction's rows with one statement just before it
commits, or, when the transaction ran nothing else, with no BEGIN and COMMIT around that statement.
Elsewhere (SQLite, a session committed by hand) they are written by one INSERT a table as the
session commits.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import Connection, Insert, Table, event, insert
from sqlalchemy.ext.asyncio import AsyncSession, async_session
from sqlalchemy.orm import Session, SessionTransaction, sessionmaker

Row = TypeVar("Row")


@dataclass(frozen=True)
class PendingRow:
    """A row inserted in a transaction and not yet written."""

    transaction: SessionTransaction  # the transaction (or savepoint) it was inserted in
    table: Table
    values: dict[str, object]


class PendingRows:
    """The rows a unit of work inserts at commit, in the order they were given."""

    def __init__(self, start_writing: Callable[[], None]) -> None:
        self._start_writing = start_writing
        self._rows: list[PendingRow] = []
        self._writing = False
        # An event was emitted and its transaction has not rolled back: the relay has work.
        self.emitted = False

    def __bool__(self) -> bool:
        return bool(self._rows)

    def add(self, pending: PendingRow, *, event: bool = False) -> None:
        if not self._writing:
            self._start_writing()
            self._writing = True
        self._rows.append(pending)
        self.emitted = self.emitted or event

    def take(self) -> dict[Table, list[dict[str, object]]]:
        """The rows to write now, by table in the order of their first row; none are kept."""
        rows, self._rows = self._rows, []
        by_table: dict[Table, list[dict[str, object]]] = {}
        for row in rows:
            by_table.setdefault(row.table, []).append(row.values)
        return by_table

    def forget(self, rolled_back: SessionTransaction) -> None:
        """Rows inserted in a transaction (or savepoint) that rolled back go with it."""
        self._rows = [row for row in self._rows if not _within(row.transaction, rolled_back)]
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
        sync_session = self.sync_session
        # The row belongs to the transaction in progress (begun here if none is: no I/O yet), so
        # that its rollback, or a savepoint's, takes the row with it.
        transaction = (
            sync_session.get_nested_transaction() or sync_session.get_transaction() or sync_session.begin()
        )
        self.pending.add(PendingRow(transaction, table, values), event=event)


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
