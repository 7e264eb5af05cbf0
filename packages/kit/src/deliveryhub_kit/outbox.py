"""Transactional outbox: events written in the caller's transaction, published later by a relay."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta
from typing import Protocol

from opentelemetry.trace import SpanKind
from sqlalchemy import (
    BigInteger,
    Index,
    Integer,
    String,
    Table,
    Text,
    any_,
    bindparam,
    delete,
    func,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, declared_attr, mapped_column
from sqlalchemy.sql import ColumnElement

from deliveryhub_contracts.events import Payload, make_envelope
from deliveryhub_kit.broker import (
    Broker,
    BrokerError,
    BrokerUnavailable,
    OutgoingMessage,
)
from deliveryhub_kit.context import current_correlation_id, current_traceparent
from deliveryhub_kit.db import Database, UtcDateTime, utcnow
from deliveryhub_kit.metrics import Metrics
from deliveryhub_kit.tracing import exporting, message_span
from deliveryhub_kit.unit_of_work import UnitOfWork

logger = logging.getLogger(__name__)


class OutboxMessageMixin:
    """Columns of a service's `outbox` table; the service maps it on its own metadata."""

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True
    )
    event_id: Mapped[uuid.UUID] = mapped_column(unique=True)
    routing_key: Mapped[str] = mapped_column(String(100))
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    published_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    attempts: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    next_attempt_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    traceparent: Mapped[str | None] = mapped_column(String(64))
    correlation_id: Mapped[str | None] = mapped_column(String(128))

    @declared_attr.directive
    @classmethod
    def __table_args__(cls) -> tuple[Index, ...]:
        # Only waiting rows are indexed: the relay's query stays fast however many are published.
        return (
            Index(
                "ix_outbox_waiting",
                "next_attempt_at",
                "id",
                postgresql_where="published_at IS NULL",
                sqlite_where=text("published_at IS NULL"),
            ),
            Index("ix_outbox_published_at", "published_at"),
        )


class EventSink(Protocol):
    """Where a service layer emits its events; the outbox in production, a list in unit tests."""

    def emit(self, payload: Payload, *, subject: str) -> None: ...


class Outbox:
    """Writes events into the outbox table inside the caller's transaction."""

    def __init__(self, work: UnitOfWork, model: type[OutboxMessageMixin], source: str) -> None:
        self._work = work
        self._table: Table = getattr(model, "__table__")  # noqa: B009 (a mixin does not declare it)
        self._source = source

    def emit(self, payload: Payload, *, subject: str) -> None:
        traceparent, correlation_id = current_traceparent(), current_correlation_id()
        envelope = make_envelope(
            payload,
            source=self._source,
            subject=subject,
            time=utcnow(),
            traceparent=traceparent,
            correlation_id=correlation_id,
        )
        # Kept by the unit of work and written as it commits: cheaper than a tracked object.
        now = utcnow()
        self._work.insert_at_commit(
            self._table,
            {
                "event_id": envelope.id,
                "routing_key": envelope.routing_key,
                "body": envelope.to_json().decode(),
                "traceparent": traceparent,
                "correlation_id": correlation_id,
                "created_at": now,
                "next_attempt_at": now,
                "attempts": 0,
            },
            event=True,
        )


class OutboxRelay:
    """Publishes waiting outbox rows in order, with confirms, and marks them only once confirmed."""

    def __init__(
        self,
        database: Database,
        broker: Broker,
        model: type[OutboxMessageMixin],
        *,
        exchange: str,
        batch_size: int = 200,
        poll_seconds: float = 1.0,
        linger_seconds: float = 0.005,
        retention_seconds: float = 7 * 24 * 3600,
        prune_every_seconds: float = 600.0,
        metrics: Metrics | None = None,
    ) -> None:
        self._database = database
        self._broker = broker
        self._model = model
        self._table: Table = getattr(model, "__table__")  # noqa: B009 (a mixin does not declare it)
        self._exchange = exchange
        self._batch_size = batch_size
        self._poll_seconds = poll_seconds
        self._linger_seconds = linger_seconds
        self._retention = timedelta(seconds=retention_seconds)
        self._prune_every = timedelta(seconds=prune_every_seconds)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._last_pruned_at: datetime | None = None
        self._last_measured_at = 0.0
        self._metrics = metrics or Metrics()
        database.on_commit(self._after_commit)

    def _after_commit(self, work: UnitOfWork) -> None:
        if work.pending.emitted:
            self._wake.set()

    def wake(self) -> None:
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="outbox-relay")

    async def stop(self) -> None:
        """Finish the batch in hand, then stop."""
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            await self._task
            self._task = None

    async def _run(self) -> None:
        failures = 0
        while not self._stopping:
            published = 0
            # While the broker is away the rows wait untouched; polling resumes them within a poll.
            if self._broker.connected:
                try:
                    published = await self.relay_batch()
                    await self._prune_if_due()
                    await self._measure_if_due()
                    failures = 0
                except Exception as error:  # keep relaying whatever one round met
                    failures += 1
                    logger.warning("outbox relay round failed (%s): %s", type(error).__name__, error)
            if published >= self._batch_size:
                continue  # more are waiting
            delay = self._poll_seconds * min(2**failures, 30)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=delay)
            self._wake.clear()
            if not self._stopping:
                # Commits come in bursts: a moment's wait lets one claim take a burst together
                # instead of one round of claim, publish and mark per commit.
                await asyncio.sleep(self._linger_seconds)

    async def relay_batch(self) -> int:
        """Publish one batch in its own transaction; the number of rows confirmed."""
        async with self._database.transaction() as session:
            return await self.relay_in(session)

    async def relay_in(self, session: AsyncSession) -> int:
        """Claim, publish and mark one batch within `session`'s transaction."""
        events = await self.claim(session)
        if not events:
            return 0
        round_ = await self.publish(events)
        await self.mark(session, round_)
        return len(round_.published)

    async def claim(self, session: AsyncSession) -> list[WaitingEvent]:
        """Lock the oldest waiting rows that are due."""
        table = self._table
        query = (
            select(*(table.c[name] for name in _CLAIMED))
            .where(table.c.published_at.is_(None), table.c.next_attempt_at <= utcnow())
            .order_by(table.c.id)
            .limit(self._batch_size)
            # SQLite has no row locks and drops this: its transactions hold the whole file instead.
            .with_for_update(skip_locked=True)
        )
        return [WaitingEvent(*row) for row in await session.execute(query)]

    async def publish(self, events: Sequence[WaitingEvent]) -> PublishRound:
        """Publish events in order; what became of each (nothing is written yet)."""
        if not self._broker.connected:
            raise BrokerUnavailable("the broker is not connected; the outbox keeps the events")
        # Sent in order on one channel; the confirms are awaited together.
        # Asked once a round: the tracer provider is looked up in the environment each time.
        recording = exporting()
        outcomes = await asyncio.gather(
            *(self._publish_one(each, recording) for each in events), return_exceptions=True
        )
        round_ = PublishRound(at=utcnow())
        for event, outcome in zip(events, outcomes, strict=True):
            if outcome is None:
                round_.published.append(event.id)
                self._metrics.events_published.labels(event.routing_key).inc()
            elif isinstance(outcome, BrokerUnavailable):
                # Not the event's fault: it stays as it is and goes out first after the reconnect.
                logger.info("outbox event %s waits for the broker: %s", event.event_id, outcome)
            elif isinstance(outcome, BrokerError):
                self._metrics.publish_failures.labels(type(outcome).__name__).inc()
                refused = Refused.after(event, outcome, round_.at)
                round_.refused.append(refused)
                logger.warning("outbox event %s not published: %s", event.event_id, refused.last_error)
            else:
                raise outcome
        return round_

    async def mark(self, session: AsyncSession, round_: PublishRound) -> None:
        """Write what a round met: the confirmed rows published, in one statement; each refused
        row its attempt, its reason and when to try again."""
        table = self._table
        if round_.published:
            await session.execute(
                update(table)
                .where(_one_of(session, table.c.id, round_.published))
                .values(published_at=round_.at)
            )
        for refused in round_.refused:
            await session.execute(
                update(table)
                .where(table.c.id == refused.id)
                .values(
                    attempts=refused.attempts,
                    last_error=refused.last_error,
                    next_attempt_at=refused.next_attempt_at,
                )
            )

    async def _publish_one(self, event: WaitingEvent, recording: bool) -> None:
        # A producer span continues the trace of the request that wrote the row (the message
        # carries the row's trace either way).
        span: contextlib.AbstractContextManager[object] = (
            message_span(
                f"{event.routing_key} publish", event.traceparent, SpanKind.PRODUCER, str(event.event_id)
            )
            if recording
            else contextlib.nullcontext()
        )
        with span:
            await self._broker.publish(self._exchange, event.routing_key, event.message())

    async def _measure_if_due(self) -> None:
        """Refresh the outbox gauges, at most once a second."""
        if time.monotonic() - self._last_measured_at < 1.0:
            return
        self._last_measured_at = time.monotonic()
        model = self._model
        async with self._database.transaction() as session:
            waiting, oldest = (
                await session.execute(
                    select(func.count(), func.min(model.created_at)).where(model.published_at.is_(None))
                )
            ).one()
        self._metrics.outbox_waiting.set(waiting)
        self._metrics.outbox_oldest_age.set((utcnow() - oldest).total_seconds() if oldest else 0.0)

    async def _prune_if_due(self) -> None:
        now = utcnow()
        if self._last_pruned_at is not None and now - self._last_pruned_at < self._prune_every:
            return
        self._last_pruned_at = now
        await self.prune(older_than=now - self._retention)

    async def prune(self, *, older_than: datetime) -> int:
        """Delete rows published before `older_than`; the number deleted."""
        model = self._model
        async with self._database.transaction() as session:
            result = await session.execute(
                delete(model).where(model.published_at.is_not(None), model.published_at < older_than)
            )
        return int(getattr(result, "rowcount", 0) or 0)


def _one_of(session: AsyncSession, column: ColumnElement[int], ids: list[int]) -> ColumnElement[bool]:
    """`column` is one of `ids`: one array parameter on PostgreSQL, so that every batch size is the
    same prepared statement; SQLite has no arrays and takes the list."""
    if session.bind is not None and session.bind.dialect.name == "postgresql":
        return column == any_(bindparam("ids", ids, type_=postgresql.ARRAY(BigInteger)))
    return column.in_(ids)


@dataclass(frozen=True, slots=True)
class WaitingEvent:
    """An outbox row the relay claimed: what it publishes."""

    id: int
    event_id: uuid.UUID
    routing_key: str
    body: str
    attempts: int
    traceparent: str | None
    correlation_id: str | None

    def message(self) -> OutgoingMessage:
        headers = {"traceparent": self.traceparent} if self.traceparent else {}
        if self.correlation_id:
            headers["x-request-id"] = self.correlation_id
        return OutgoingMessage(
            body=self.body.encode(), message_id=str(self.event_id), type=self.routing_key, headers=headers
        )


# The columns the relay reads, in WaitingEvent's order.
_CLAIMED = tuple(field.name for field in fields(WaitingEvent))


@dataclass(frozen=True, slots=True)
class Refused:
    """A row the broker refused: its next attempt waits longer each time, up to 5 minutes."""

    id: int
    attempts: int
    last_error: str
    next_attempt_at: datetime

    @classmethod
    def after(cls, event: WaitingEvent, error: BrokerError, now: datetime) -> Refused:
        attempts = event.attempts + 1
        return cls(
            id=event.id,
            attempts=attempts,
            last_error=f"{type(error).__name__}: {error}",
            next_attempt_at=now + timedelta(seconds=min(2**attempts, 300)),
        )


@dataclass
class PublishRound:
    """What one round of publishing met: the ids confirmed and the rows refused."""

    at: datetime
    published: list[int] = field(default_factory=list)
    refused: list[Refused] = field(default_factory=list)
