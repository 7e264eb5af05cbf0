"""A stand-in service for the kit's tests: its tables (outbox, inbox, what its handler applied), its
handler, and the events it is sent."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from decimal import Decimal

from sqlalchemy import String, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from deliveryhub_contracts.events import ORDERS_SOURCE, Envelope, OrderCreated, make_envelope
from deliveryhub_contracts.topology import Names
from deliveryhub_kit.broker import Broker
from deliveryhub_kit.consumer import ConsumerOptions, InboxConsumer, Route
from deliveryhub_kit.db import Database, make_metadata, utcnow
from deliveryhub_kit.inbox import InboxMessageMixin
from deliveryhub_kit.metrics import Metrics
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


Apply = Callable[[AsyncSession, OrderCreated], Awaitable[None]]


async def record(session: AsyncSession, event: OrderCreated) -> None:
    """The stand-in side effect: one `applied` row per application."""
    session.add(StandInApplied(order_id=event.order_id, event_type="order.created"))


async def applied(database: Database, order_id: uuid.UUID) -> int:
    async with database.transaction() as session:
        rows = await session.scalars(select(StandInApplied).where(StandInApplied.order_id == order_id))
        return len(rows.all())


def order_created(order_id: uuid.UUID | None = None) -> OrderCreated:
    return OrderCreated(
        order_id=order_id or uuid.uuid4(),
        customer_id=uuid.uuid4(),
        address="Санкт-Петербург, Невский проспект, 28",
        date=datetime(2030, 1, 2, 10, 0, tzinfo=UTC),
        total=Decimal("99.90"),
        version=1,
    )


def order_created_event(order_id: uuid.UUID | None = None, version: int = 1) -> Envelope:
    payload = OrderCreated(
        order_id=order_id or uuid.uuid4(),
        customer_id=uuid.uuid4(),
        address="Казань, улица Баумана, 1",
        date=datetime(2030, 3, 4, 12, 0, tzinfo=UTC),
        total=Decimal("10.00"),
        version=version,
    )
    return make_envelope(payload, source=ORDERS_SOURCE, subject=str(payload.order_id), time=utcnow())


def stand_in_consumer(
    name: str,
    queue: str,
    database: Database,
    broker: Broker,
    apply: Apply,
    options: ConsumerOptions,
    metrics: Metrics | None = None,
) -> InboxConsumer:
    """The stand-in service's consumer of `order.created` on `queue`, applying with `apply`."""
    return InboxConsumer(
        name=name,
        queue=queue,
        dead_letter_queue=Names.dead_letter_queue(queue),
        database=database,
        broker=broker,
        inbox_model=StandInInbox,
        routes={"order.created": Route(OrderCreated, apply)},
        options=options,
        metrics=metrics,
    )
