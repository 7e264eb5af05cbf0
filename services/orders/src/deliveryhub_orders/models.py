"""Tables of the orders service."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import JSON, CheckConstraint, Index, String, Text, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from deliveryhub_kit.db import ExactDecimal, UtcDateTime, make_metadata, utcnow
from deliveryhub_kit.inbox import InboxMessageMixin
from deliveryhub_kit.outbox import OutboxMessageMixin


class Base(DeclarativeBase):
    metadata = make_metadata()


JsonDocument = JSON().with_variant(JSONB(), "postgresql")


class Order(Base):
    """A customer's order; `version` grows with every change and travels with its events."""

    __tablename__ = "orders"
    __table_args__ = (
        CheckConstraint("status IN ('created', 'paid', 'canceling', 'delivered', 'canceled')", name="status"),
        Index("ix_orders_customer_id_created_at", "customer_id", "created_at"),
        Index("ix_orders_status_created_at", "status", "created_at"),
        Index("ix_orders_created_at", "created_at"),
        # The latest changes first (`sort=updated`), which the console's live view follows.
        Index("ix_orders_updated", "updated_at", "id"),
        # Serves `q`'s address words on PostgreSQL (deliveryhub_kit.search): SQLite has no such index.
        Index(
            "ix_orders_address_words",
            text("to_tsvector('simple'::regconfig, address)"),
            postgresql_using="gin",
        ).ddl_if(dialect="postgresql"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    customer_id: Mapped[uuid.UUID]
    address: Mapped[str] = mapped_column(Text)
    date: Mapped[datetime] = mapped_column(UtcDateTime)
    items: Mapped[list[dict[str, Any]]] = mapped_column(JsonDocument)
    total: Mapped[Decimal] = mapped_column(ExactDecimal(14, 2))
    status: Mapped[str] = mapped_column(String(16))
    version: Mapped[int] = mapped_column(default=1)
    deliveryman_id: Mapped[uuid.UUID | None]
    deliveryman_name: Mapped[str | None] = mapped_column(String(200))
    # The delivery's version when it appointed the courier shown: an older appointment is ignored.
    courier_version: Mapped[int] = mapped_column(default=0, server_default="0")
    cancel_reason: Mapped[str | None] = mapped_column(Text)
    cancel_requested_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    # Why a requested cancel did not happen ("too late: delivered at ...").
    cancel_refused: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    paid_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    delivered_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    canceled_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class IdempotencyRecord(Base):
    """The first answer to a customer's `Idempotency-Key`, returned again for a repeat."""

    __tablename__ = "idempotency_keys"

    customer_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    order_id: Mapped[uuid.UUID]
    response: Mapped[dict[str, Any]] = mapped_column(JsonDocument)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class OutboxMessage(OutboxMessageMixin, Base):
    __tablename__ = "outbox"


class InboxMessage(InboxMessageMixin, Base):
    __tablename__ = "inbox"
