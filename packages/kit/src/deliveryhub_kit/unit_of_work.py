"""One transaction of a service: its session, the events it emits and the rows a batch locked.

`Database.transaction()` opens a `UnitOfWork` and commits it when the block ends (or rolls it back
if the block raises). What the transaction carries lives in typed attributes, not in
`session.info`: the events emitted into it (`events`, written to the outbox table just before the
commit) and the rows it has locked already (`locked`, so that the handlers of a batch of messages
find them without a query each).
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import Insert, Table, event, insert
from sqlalchemy.ext.asyncio import AsyncSession, async_session
from sqlalchemy.orm import Session, SessionTransaction, sessionmaker

Row = TypeVar("Row")


@dataclass(frozen=True)
class PendingEvent:
    """An outbox row emitted in a transaction and not yet written."""

    transaction: SessionTransaction  # the transaction (or savepoint) it was emitted in
    table: Table
    values: dict[str, object]


class PendingEvents:
    """The events a unit of work has emitted; written with one INSERT a table before it commits."""

    def __init__(self, start_writing: Callable[[], None]) -> None:
        self._start_writing = start_writing
        self._rows: list[PendingEvent] = []
        # Something was emitted and its transaction has not rolled back: the relay has work.
        self.emitted = False

    def add(self, pending: PendingEvent) -> None:
        if not self.emitted:
            self._start_writing()
        self._rows.append(pending)
        self.emitted = True

    def take(self) -> dict[Table, list[dict[str, object]]]:
        """The rows to write now, by table; none are kept."""
        rows, self._rows = self._rows, []
        by_table: dict[Table, list[dict[str, object]]] = {}
        for row in rows:
            by_table.setdefault(row.table, []).append(row.values)
        return by_table

    def forget(self, rolled_back: SessionTransaction) -> None:
        """Events emitted in a transaction (or savepoint) that rolled back go with it."""
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

    def __init__(self, *args: Any, start_writing_events: Callable[[], None], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.events = PendingEvents(start_writing_events)
        self.locked = LockedRows()


def write_events_before_commit(sessions: sessionmaker[Session]) -> None:
    """Have each transaction of these sessions write the events emitted into it as it commits,
    whoever commits, and forget those of a transaction or savepoint that rolls back."""
    event.listen(sessions, "before_commit", _write_pending_events)
    event.listen(sessions, "after_soft_rollback", _forget_rolled_back_events)


def _work_of(session: Session) -> UnitOfWork | None:
    work = async_session(session)
    return work if isinstance(work, UnitOfWork) else None


def _write_pending_events(session: Session) -> None:
    work = _work_of(session)
    if work is None:
        return
    for table, rows in work.events.take().items():
        session.execute(_insert_into(table), rows)


@functools.cache
def _insert_into(table: Table) -> Insert:
    """One INSERT statement a table, built once: its compiled form is then found at once."""
    return insert(table)


def _forget_rolled_back_events(session: Session, previous: SessionTransaction) -> None:
    work = _work_of(session)
    if work is not None:
        work.events.forget(previous)


def _within(transaction: SessionTransaction, outer: SessionTransaction) -> bool:
    current: SessionTransaction | None = transaction
    while current is not None:
        if current is outer:
            return True
        current = current.parent
    return False
