"""The kit's outbox, inbox and retries on the embedded adapters: SQLite files and the in-process
broker, through the same code that runs on PostgreSQL and RabbitMQ."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import Integer, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from deliveryhub_contracts.events import ORDERS_SOURCE, OrderCreated
from deliveryhub_contracts.topology import Names, QueueSpec
from deliveryhub_kit.broker import IncomingMessage, OutgoingMessage
from deliveryhub_kit.consumer import ConsumerOptions, InboxConsumer
from deliveryhub_kit.db import Database, make_metadata
from deliveryhub_kit.failures import RetryLater
from deliveryhub_kit.memory_broker import MemoryBroker, MemoryHub
from deliveryhub_kit.outbox import Outbox, OutboxRelay
from deliveryhub_kit.topology import service_topology
from tests.support.stand_in import (
    Apply,
    StandInBase,
    StandInOutbox,
    applied,
    order_created,
    order_created_event,
    record,
    stand_in_consumer,
)
from tests.support.waiting import WaitFor

pytestmark = pytest.mark.embedded

EVENTS = QueueSpec("kit.embedded-events", ("order.*",))
NAMES = Names("")
QUEUE = NAMES.queue(EVENTS)
DELAYS = (0.2, 0.4)


@pytest.fixture
async def database(tmp_path: Path) -> AsyncIterator[Database]:
    """An SQLite file with the stand-in service's outbox, inbox and `applied` tables."""
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'stand-in.sqlite3'}", pool_size=5, max_overflow=5)
    async with database.engine.begin() as connection:
        await connection.run_sync(StandInBase.metadata.create_all)
    yield database
    await database.dispose()


@pytest.fixture
async def broker(tmp_path: Path) -> AsyncIterator[MemoryBroker]:
    broker = MemoryBroker(hub=MemoryHub(tmp_path / "broker.sqlite3"))
    await broker.connect()
    await broker.declare(service_topology(NAMES, consumes=EVENTS, retry_delays=DELAYS))
    yield broker
    await broker.close()


def consumer(database: Database, broker: MemoryBroker, apply: Apply = record) -> InboxConsumer:
    return stand_in_consumer(
        "embedded-test", QUEUE, database, broker, apply, ConsumerOptions(retry_delays=DELAYS)
    )


async def test_the_relay_publishes_what_the_consumer_applies_once(
    database: Database, broker: MemoryBroker, wait_for: WaitFor
) -> None:
    relay = OutboxRelay(database, broker, StandInOutbox, exchange=NAMES.exchange, poll_seconds=30.0)
    started = consumer(database, broker)
    await started.start()
    relay.start()
    payloads = [order_created() for _ in range(5)]
    async with database.transaction() as session:
        outbox = Outbox(session, StandInOutbox, ORDERS_SOURCE)
        for payload in payloads:
            outbox.emit(payload, subject=str(payload.order_id))

    async def all_applied() -> bool:
        return all([await applied(database, payload.order_id) for payload in payloads])

    await wait_for(all_applied, message="every event to be applied")
    async with database.transaction() as session:
        rows = (await session.scalars(select(StandInOutbox))).all()
        # The same event published again, as after a crash between confirm and mark: no effect.
        again = OutgoingMessage(body=rows[0].body.encode(), message_id=str(rows[0].event_id))
        broker.hub.publish(NAMES.exchange, "order.created", again)
    await wait_for(lambda: broker.hub.unsettled_count(QUEUE) == 0, message="the copy to be settled")

    await relay.stop()
    await started.stop()
    assert all(row.published_at is not None for row in rows)
    assert [await applied(database, payload.order_id) for payload in payloads] == [1] * 5
    assert broker.hub.message_count(QUEUE) == 0


async def test_a_passing_failure_waits_in_the_delay_queues_then_applies_once(
    database: Database, broker: MemoryBroker, wait_for: WaitFor
) -> None:
    tried_at: list[float] = []

    async def not_yet_twice(session: AsyncSession, payload: OrderCreated) -> None:
        tried_at.append(time.monotonic())
        if len(tried_at) <= 2:
            raise RetryLater("the order is not here yet")
        await record(session, payload)

    started = consumer(database, broker, not_yet_twice)
    await started.start()
    event = order_created_event()
    await broker.publish(NAMES.exchange, event.routing_key, OutgoingMessage(event.to_json(), str(event.id)))
    order_id = uuid.UUID(str(event.data["order_id"]))

    await wait_for(lambda: applied(database, order_id), timeout=5, message="the event to apply")
    await started.stop()
    assert len(tried_at) == 3
    assert tried_at[1] - tried_at[0] >= DELAYS[0] * 0.9
    assert tried_at[2] - tried_at[1] >= DELAYS[1] * 0.9
    assert broker.hub.message_count(Names.dead_letter_queue(QUEUE)) == 0


async def test_after_the_last_delay_the_message_is_parked_with_its_story(
    database: Database, broker: MemoryBroker, wait_for: WaitFor
) -> None:
    async def never(session: AsyncSession, payload: OrderCreated) -> None:
        raise RetryLater("the order never comes")

    started = consumer(database, broker, never)
    await started.start()
    event = order_created_event()
    await broker.publish(NAMES.exchange, event.routing_key, OutgoingMessage(event.to_json(), str(event.id)))
    dead_letters = Names.dead_letter_queue(QUEUE)

    await wait_for(lambda: broker.hub.message_count(dead_letters) == 1, timeout=5, message="the dead letter")
    await started.stop()
    parked: list[dict[str, object]] = []

    async def look(incoming: IncomingMessage) -> None:
        parked.append(dict(incoming.headers))

    await broker.consume(dead_letters, look, prefetch=1)
    await wait_for(lambda: parked)
    assert parked[0]["x-attempts"] == len(DELAYS) + 1
    assert parked[0]["x-error-class"] == "RetryLater"
    assert parked[0]["x-original-queue"] == QUEUE


class CounterBase(DeclarativeBase):
    metadata = make_metadata()


class Counter(CounterBase):
    __tablename__ = "counter"

    id: Mapped[int] = mapped_column(primary_key=True)
    value: Mapped[int] = mapped_column(Integer)


async def test_concurrent_transactions_that_read_then_write_take_turns(tmp_path: Path) -> None:
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'counter.sqlite3'}", pool_size=10)
    async with database.engine.begin() as connection:
        await connection.run_sync(CounterBase.metadata.create_all)
    async with database.transaction() as session:
        session.add(Counter(id=1, value=0))

    async def increment() -> None:
        async with database.transaction() as session:
            counter = await session.get_one(Counter, 1)
            await asyncio.sleep(0.001)  # another transaction gets the loop between the read and the write
            counter.value += 1

    await asyncio.gather(*(increment() for _ in range(20)))

    async with database.transaction() as session:
        assert (await session.get_one(Counter, 1)).value == 20
    await database.dispose()
