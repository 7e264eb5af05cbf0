"""Tables of the delivery service."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, ColumnElement, ForeignKey, Index, String, Text, text
from sqlalchemy.ext.hybrid import hybrid_property
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from deliveryhub_kit.db import UtcDateTime, make_metadata, utcnow
from deliveryhub_kit.inbox import InboxMessageMixin
from deliveryhub_kit.outbox import OutboxMessageMixin


class Base(DeclarativeBase):
    metadata = make_metadata()


class Deliveryman(Base):
    """A courier of the shop."""

    __tablename__ = "deliverymen"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))


# A delivery the lists show (one waiting for its order's snapshot has no address), and one waiting
# for a courier: activated, nobody appointed yet.
LISTED = "address IS NOT NULL"
WAITING = "status = 'activated' AND deliveryman_id IS NULL"
# In a courier's hands: appointed, not done or canceled (the couriers' list counts these).
OPEN = "status = 'activated' AND deliveryman_id IS NOT NULL"


def _where(condition: str) -> dict[str, Any]:
    return {"postgresql_where": text(condition), "sqlite_where": text(condition)}


_listed = _where(LISTED)

# Serves `q`'s address words on PostgreSQL (deliveryhub_kit.search): SQLite has no such index.
ADDRESS_WORDS_INDEX = "ix_deliveries_address_words"
ADDRESS_WORDS = text("to_tsvector('simple'::regconfig, address)")


class Delivery(Base):
    """The delivery of one order; its id is the order's id.

    A record whose order snapshot has not arrived yet (an `order.canceled` or
    `order.cancel-requested` seen first) has no address; it is kept so that late events cannot
    revive the order, and hidden from the API.
    """

    __tablename__ = "deliveries"
    __table_args__ = (
        CheckConstraint("status IN ('created', 'activated', 'done', 'canceled')", name="status"),
        # Each list the APIs answer has an index that walks it in order and counts it; the search's
        # GIN index on the address words is PostgreSQL's alone (see ADDRESS_WORDS_INDEX).
        Index("ix_deliveries_listed", "created_at", "id", **_listed),
        Index("ix_deliveries_status_listed", "status", "created_at", "id", **_listed),
        Index("ix_deliveries_waiting", "created_at", "id", **_where(f"{LISTED} AND {WAITING}")),
        Index("ix_deliveries_courier_listed", "deliveryman_id", "status", "created_at", "id", **_listed),
        Index("ix_deliveries_open", "deliveryman_id", **_where(f"{LISTED} AND {OPEN}")),
        Index("ix_deliveries_updated", "updated_at", "id", **_listed),
        Index(ADDRESS_WORDS_INDEX, ADDRESS_WORDS, postgresql_using="gin").ddl_if(dialect="postgresql"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    customer_id: Mapped[uuid.UUID | None]
    address: Mapped[str | None] = mapped_column(Text)
    date: Mapped[datetime | None] = mapped_column(UtcDateTime)
    status: Mapped[str] = mapped_column(String(16))
    deliveryman_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("deliverymen.id"))
    order_version: Mapped[int] = mapped_column(default=0)
    # Grows with every change of the delivery and travels with its events.
    version: Mapped[int] = mapped_column(default=1, server_default="1")
    cancel_reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, onupdate=utcnow)
    activated_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    canceled_at: Mapped[datetime | None] = mapped_column(UtcDateTime)

    deliveryman: Mapped[Deliveryman | None] = relationship(lazy="joined")

    @hybrid_property
    def awaits_snapshot(self) -> bool:
        """A placeholder: kept for an order whose snapshot has not arrived (no address yet), so that
        late events cannot revive it; never shown. In a query, the same test as SQL."""
        return self.address is None

    @awaits_snapshot.inplace.expression
    @classmethod
    def _awaits_snapshot_expression(cls) -> ColumnElement[bool]:
        return cls.address.is_(None)


class OutboxMessage(OutboxMessageMixin, Base):
    __tablename__ = "outbox"


class InboxMessage(InboxMessageMixin, Base):
    __tablename__ = "inbox"
