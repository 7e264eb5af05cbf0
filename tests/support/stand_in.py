"""A stand-in service's tables, for the kit's tests: its outbox, its inbox and what its handler applied."""

from __future__ import annotations

import uuid

from sqlalchemy import String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from deliveryhub_kit.db import make_metadata
from deliveryhub_kit.inbox import InboxMessageMixin
from deliveryhub_kit.outbox import OutboxMessageMixin


class StandInBase(DeclarativeBase):
    metadata = make_metadata()


class StandInOutbox(OutboxMessageMixin, StandInBase):
    """The outbox of a stand-in producer service (e.g. orders, as far as delivery can tell)."""

    __tablename__ = "outbox"


class StandInInbox(InboxMessageMixin, StandInBase):
    __tablename__ = "inbox"


class StandInApplied(StandInBase):
    """One row each time a stand-in consumer's handler applies an event."""

    __tablename__ = "applied"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    order_id: Mapped[uuid.UUID]
    event_type: Mapped[str] = mapped_column(String(100))
