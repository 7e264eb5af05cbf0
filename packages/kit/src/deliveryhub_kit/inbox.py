"""Inbox: the ids of the events a consumer has applied, written in the same transaction."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import String
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from deliveryhub_kit.db import UtcDateTime, dialect_insert, utcnow


class InboxMessageMixin:
    """Columns of a service's `inbox` table; the service maps it on its own metadata."""

    event_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    event_type: Mapped[str] = mapped_column(String(100))
    received_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


async def record_in_inbox(
    session: AsyncSession, model: type[InboxMessageMixin], events: Sequence[tuple[uuid.UUID, str]]
) -> set[uuid.UUID]:
    """Record events as applied, in one statement; the ids of those not applied before."""
    received_at = utcnow()
    rows = dict(events)  # one row per id
    values = [
        {"event_id": event_id, "event_type": event_type, "received_at": received_at}
        for event_id, event_type in rows.items()
    ]
    statement = (
        dialect_insert(session, model).values(values).on_conflict_do_nothing().returning(model.event_id)
    )
    return set((await session.execute(statement)).scalars())
