"""Inbox: the ids of the events a consumer has applied, written in the same transaction."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import Insert, String, Table, bindparam, delete, func, select
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from deliveryhub_kit.db import Database, UtcDateTime, dialect_insert, dialect_name, utcnow

logger = logging.getLogger(__name__)


class InboxMessageMixin:
    """Columns of a service's `inbox` table; the service maps it on its own metadata."""

    event_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    event_type: Mapped[str] = mapped_column(String(100))
    # Indexed: the inbox is pruned by age.
    received_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, index=True)


async def record_in_inbox(
    session: AsyncSession, model: type[InboxMessageMixin], events: Sequence[tuple[uuid.UUID, str]]
) -> set[uuid.UUID]:
    """Record events as applied, in one statement; the ids of those not applied before."""
    received_at = utcnow()
    rows = dict(events)  # one row per id
    # On the table, not the mapped class: a plain INSERT, without the ORM's bulk-insert layer.
    table = getattr(model, "__table__")  # noqa: B009 (a mixin does not declare it)
    if dialect_name(session) == "postgresql":
        # One statement for any number of events, compiled once and kept prepared by the driver:
        # the ids and types travel as two arrays.
        found = await session.execute(
            _unnested_insert(table),
            {"ids": list(rows), "types": list(rows.values()), "received_at": received_at},
        )
        return set(found.scalars())
    values = [
        {"event_id": event_id, "event_type": event_type, "received_at": received_at}
        for event_id, event_type in rows.items()
    ]
    statement = (
        dialect_insert(session, table).values(values).on_conflict_do_nothing().returning(table.c.event_id)
    )
    return set((await session.execute(statement)).scalars())


@functools.cache
def _unnested_insert(table: Table) -> Insert:
    """`INSERT INTO inbox (…) SELECT … FROM unnest(:ids, :types) ON CONFLICT DO NOTHING RETURNING
    event_id` for one inbox table (PostgreSQL)."""
    given = (
        func.unnest(
            bindparam("ids", type_=postgresql.ARRAY(table.c.event_id.type)),
            bindparam("types", type_=postgresql.ARRAY(table.c.event_type.type)),
        )
        .table_valued("event_id", "event_type")
        .render_derived(name="given")
    )
    received_at = bindparam("received_at", type_=table.c.received_at.type)
    rows = select(given.c.event_id, given.c.event_type, received_at)
    return (
        postgresql.insert(table)
        .from_select(["event_id", "event_type", "received_at"], rows)
        .on_conflict_do_nothing()
        .returning(table.c.event_id)
    )


async def prune_inbox(
    database: Database, model: type[InboxMessageMixin], *, older_than: datetime, batch_size: int = 5_000
) -> int:
    """Forget the events received before `older_than`, a batch per transaction; how many."""
    deleted = 0
    while True:
        async with database.transaction() as session:
            oldest = (
                select(model.event_id)
                .where(model.received_at < older_than)
                .order_by(model.received_at)
                .limit(batch_size)
            )
            result = await session.execute(delete(model).where(model.event_id.in_(oldest.scalar_subquery())))
        count = int(getattr(result, "rowcount", 0) or 0)
        deleted += count
        if count < batch_size:
            return deleted


class InboxPruner:
    """Keeps a service's inbox from growing forever: every `every_seconds` it forgets the event ids
    received longer ago than `retention_seconds`, which is far longer than any copy of an event
    can take to arrive (a redelivery, a second publish after a relay crash, a delayed retry)."""

    def __init__(
        self,
        database: Database,
        model: type[InboxMessageMixin],
        *,
        retention_seconds: float,
        every_seconds: float = 600.0,
    ) -> None:
        self._database = database
        self._model = model
        self._retention = timedelta(seconds=retention_seconds)
        self._every = every_seconds
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="inbox-pruner")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._every)
            try:
                pruned = await prune_inbox(self._database, self._model, older_than=utcnow() - self._retention)
            except Exception as error:  # the next round tries again; an outage is not this task's to report
                logger.info("pruning the inbox failed (%s): %s", type(error).__name__, error)
                continue
            if pruned:
                logger.info("pruned %d events from the inbox", pruned)
