"""The outbox relay on the real PostgreSQL and RabbitMQ: what it publishes, when it marks, what it keeps."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta

import pytest
from sqlalchemy import select, update

from deliveryhub_contracts.events import ORDERS_SOURCE, OrderCanceled, Payload
from deliveryhub_kit.broker import BrokerUnavailable
from deliveryhub_kit.db import Database, utcnow
from deliveryhub_kit.outbox import Outbox, OutboxRelay
from deliveryhub_kit.rabbitmq import RabbitBroker
from deliveryhub_kit.topology import service_topology
from tests.support.broker import AMQP_URL, Amqp, BrokerNamespace
from tests.support.stand_in import StandInOutbox, order_created
from tests.support.waiting import WaitFor

pytestmark = pytest.mark.integration


async def emit(database: Database, *payloads: Payload) -> None:
    """Write events into the outbox in one transaction, as a service's write does."""
    async with database.transaction() as session:
        outbox = Outbox(session, StandInOutbox, ORDERS_SOURCE)
        for payload in payloads:
            outbox.emit(payload, subject=str(getattr(payload, "order_id", "")))


async def outbox_rows(database: Database) -> list[StandInOutbox]:
    async with database.transaction() as session:
        return list(await session.scalars(select(StandInOutbox).order_by(StandInOutbox.id)))


@pytest.fixture
def relay(
    stand_in_database: Database, rabbit_broker: RabbitBroker, broker_namespace: BrokerNamespace
) -> OutboxRelay:
    return OutboxRelay(
        stand_in_database,
        rabbit_broker,
        StandInOutbox,
        exchange=broker_namespace.exchange,
        poll_seconds=30.0,  # long: a test that sees a publish sooner proves the relay was woken
    )


@pytest.fixture
async def running_relay(relay: OutboxRelay) -> AsyncIterator[OutboxRelay]:
    relay.start()
    yield relay
    await relay.stop()


async def test_an_outbox_row_is_published_as_a_cloud_event_routed_by_its_short_type(
    relay: OutboxRelay, stand_in_database: Database, amqp: Amqp
) -> None:
    tap = await amqp.tap("order.*")
    payload = order_created()
    await emit(stand_in_database, payload)
    [row] = await outbox_rows(stand_in_database)
    assert row.published_at is None

    assert await relay.relay_batch() == 1

    [message] = await tap.take(1)
    assert message.routing_key == "order.created"
    assert message.exchange == amqp.namespace.exchange
    assert message.message_id == str(row.event_id)
    assert message.content_type == "application/json"
    assert message.delivery_mode == 2  # persistent
    event = json.loads(message.body)
    assert set(event) == {"specversion", "id", "source", "type", "time", "subject", "datacontenttype", "data"}
    assert event["specversion"] == "1.0"
    assert event["id"] == str(row.event_id)
    assert event["source"] == "/orders"
    assert event["type"] == "deliveryhub.order.created"
    assert datetime.fromisoformat(event["time"]).tzinfo is not None
    assert event["subject"] == str(payload.order_id)
    assert event["datacontenttype"] == "application/json"
    assert event["data"] == {
        "order_id": str(payload.order_id),
        "customer_id": str(payload.customer_id),
        "address": payload.address,
        "date": "2030-01-02T10:00:00Z",
        "total": 99.9,
        "version": 1,
    }
    [published] = await outbox_rows(stand_in_database)
    assert published.published_at is not None
    assert published.attempts == 0
    assert published.last_error is None


async def test_waiting_rows_are_published_in_the_order_they_were_written(
    relay: OutboxRelay, stand_in_database: Database, amqp: Amqp
) -> None:
    tap = await amqp.tap()
    order_id = uuid.uuid4()
    await emit(stand_in_database, order_created(order_id))
    await emit(stand_in_database, OrderCanceled(order_id=order_id, version=2, reason="first"))
    await emit(stand_in_database, OrderCanceled(order_id=order_id, version=3, reason="second"))

    assert await relay.relay_batch() == 3

    messages = await tap.take(3)
    rows = await outbox_rows(stand_in_database)
    assert [message.message_id for message in messages] == [str(row.event_id) for row in rows]
    assert [message.routing_key for message in messages] == [
        "order.created",
        "order.canceled",
        "order.canceled",
    ]
    assert all(row.published_at is not None for row in rows)
    assert await relay.relay_batch() == 0  # nothing is published twice
    assert await tap.get() is None


async def test_a_committed_event_wakes_the_running_relay(
    running_relay: OutboxRelay, stand_in_database: Database, amqp: Amqp, wait_for: WaitFor
) -> None:
    tap = await amqp.tap()
    # The relay's first round found nothing; it now sleeps for its 30 s poll unless a commit wakes it.
    await emit(stand_in_database, order_created())

    [message] = await tap.take(1, timeout=5)

    assert message.routing_key == "order.created"

    async def marked() -> bool:
        return all(row.published_at is not None for row in await outbox_rows(stand_in_database))

    await wait_for(marked, timeout=5, message="the row to be marked published")


async def test_a_rolled_back_write_emits_nothing(
    relay: OutboxRelay, stand_in_database: Database, amqp: Amqp
) -> None:
    tap = await amqp.tap()

    async def failing_write() -> None:
        async with stand_in_database.transaction() as session:
            Outbox(session, StandInOutbox, ORDERS_SOURCE).emit(order_created(), subject="s")
            raise RuntimeError("the write failed")

    with pytest.raises(RuntimeError, match="the write failed"):
        await failing_write()

    assert await outbox_rows(stand_in_database) == []
    assert await relay.relay_batch() == 0
    assert await tap.get() is None


async def test_events_are_written_by_any_commit_of_their_session(stand_in_database: Database) -> None:
    """Not only `Database.transaction()`: a session committed by hand writes its events too."""
    async with stand_in_database.sessionmaker() as session:
        Outbox(session, StandInOutbox, ORDERS_SOURCE).emit(order_created(), subject="first")
        await session.commit()
        Outbox(session, StandInOutbox, ORDERS_SOURCE).emit(order_created(), subject="second")
        await session.rollback()
        Outbox(session, StandInOutbox, ORDERS_SOURCE).emit(order_created(), subject="third")
        await session.commit()

    subjects = [json.loads(row.body)["subject"] for row in await outbox_rows(stand_in_database)]
    assert subjects == ["first", "third"]


async def test_an_event_emitted_in_a_rolled_back_savepoint_is_not_written(
    stand_in_database: Database,
) -> None:
    async with stand_in_database.transaction() as session:
        outbox = Outbox(session, StandInOutbox, ORDERS_SOURCE)
        outbox.emit(order_created(), subject="before")
        savepoint = await session.begin_nested()
        outbox.emit(order_created(), subject="inside")
        await savepoint.rollback()
        async with session.begin_nested():
            outbox.emit(order_created(), subject="kept")
        outbox.emit(order_created(), subject="after")

    subjects = [json.loads(row.body)["subject"] for row in await outbox_rows(stand_in_database)]
    assert subjects == ["before", "kept", "after"]


async def test_an_unroutable_event_stays_in_the_outbox_with_its_error(
    relay: OutboxRelay, stand_in_database: Database, rabbit_broker: RabbitBroker, amqp: Amqp
) -> None:
    # The exchange exists, but only `order.canceled` has a queue bound to it.
    await rabbit_broker.declare(service_topology(amqp.namespace.names))
    tap = await amqp.tap("order.canceled")
    order_id = uuid.uuid4()
    await emit(stand_in_database, order_created(order_id))
    await emit(stand_in_database, OrderCanceled(order_id=order_id, version=2, reason="routable"))
    before = utcnow()

    assert await relay.relay_batch() == 1

    unroutable, routed = await outbox_rows(stand_in_database)
    assert unroutable.published_at is None
    assert unroutable.attempts == 1
    assert unroutable.last_error is not None
    assert unroutable.last_error.startswith("Unroutable")
    assert unroutable.next_attempt_at > before  # it is retried later, with a delay
    assert routed.published_at is not None
    [message] = await tap.take(1)
    assert message.message_id == str(routed.event_id)

    # Until its delay is over it is not tried again.
    assert await relay.relay_batch() == 0
    [still_waiting, _] = await outbox_rows(stand_in_database)
    assert still_waiting.attempts == 1


async def test_a_retried_unroutable_event_is_published_once_a_queue_is_bound(
    relay: OutboxRelay, stand_in_database: Database, rabbit_broker: RabbitBroker, amqp: Amqp
) -> None:
    await rabbit_broker.declare(service_topology(amqp.namespace.names))
    await emit(stand_in_database, order_created())
    assert await relay.relay_batch() == 0
    tap = await amqp.tap("order.*")
    async with stand_in_database.transaction() as session:
        await session.execute(update(StandInOutbox).values(next_attempt_at=utcnow() - timedelta(seconds=1)))

    assert await relay.relay_batch() == 1

    [message] = await tap.take(1)
    [row] = await outbox_rows(stand_in_database)
    assert message.message_id == str(row.event_id)
    assert row.published_at is not None
    assert row.attempts == 1


async def test_events_wait_in_the_outbox_while_the_broker_is_away(
    stand_in_database: Database, broker_namespace: BrokerNamespace, amqp: Amqp
) -> None:
    tap = await amqp.tap()
    away = RabbitBroker(AMQP_URL, name="deliveryhub-tests-away")  # never connected
    relay = OutboxRelay(stand_in_database, away, StandInOutbox, exchange=broker_namespace.exchange)
    await emit(stand_in_database, order_created())

    with pytest.raises(BrokerUnavailable):
        await relay.relay_batch()

    [row] = await outbox_rows(stand_in_database)
    assert row.published_at is None
    assert row.attempts == 0  # the broker's absence is not the row's fault
    assert await tap.get() is None

    back = RabbitBroker(AMQP_URL, name="deliveryhub-tests-back")
    await back.connect()
    try:
        relay = OutboxRelay(stand_in_database, back, StandInOutbox, exchange=broker_namespace.exchange)
        assert await relay.relay_batch() == 1
    finally:
        await back.close()
    [message] = await tap.take(1)
    assert message.message_id == str(row.event_id)


async def test_a_crash_between_publish_and_mark_publishes_the_event_again_with_the_same_id(
    relay: OutboxRelay, stand_in_database: Database, amqp: Amqp
) -> None:
    tap = await amqp.tap()
    await emit(stand_in_database, order_created())
    async with stand_in_database.sessionmaker() as session:
        await session.begin()
        assert await relay.relay_in(session) == 1  # published and confirmed...
        await session.rollback()  # ...but the process died before the mark was committed

    [row] = await outbox_rows(stand_in_database)
    assert row.published_at is None

    assert await relay.relay_batch() == 1

    first, second = await tap.take(2)
    assert first.message_id == second.message_id == str(row.event_id)
    assert json.loads(first.body)["id"] == json.loads(second.body)["id"] == str(row.event_id)
    [marked] = await outbox_rows(stand_in_database)
    assert marked.published_at is not None


async def test_two_relays_never_publish_the_same_claimed_row(
    relay: OutboxRelay,
    stand_in_database: Database,
    rabbit_broker: RabbitBroker,
    broker_namespace: BrokerNamespace,
    amqp: Amqp,
) -> None:
    tap = await amqp.tap()
    await emit(stand_in_database, order_created())
    other = OutboxRelay(stand_in_database, rabbit_broker, StandInOutbox, exchange=broker_namespace.exchange)
    async with stand_in_database.transaction() as session:
        claimed = await relay.claim(session)
        assert len(claimed) == 1
        # While one relay holds the row, another skips it instead of publishing it too.
        assert await other.relay_batch() == 0
        round_ = await relay.publish(claimed)
        await relay.mark(session, round_)
        assert round_.published == [claimed[0].id]

    [message] = await tap.take(1)
    assert message.message_id == str(claimed[0].event_id)
    assert await tap.get() is None


async def test_prune_deletes_only_rows_published_before_the_cutoff(
    relay: OutboxRelay, stand_in_database: Database, amqp: Amqp
) -> None:
    await amqp.tap()
    await emit(stand_in_database, order_created(), order_created())
    assert await relay.relay_batch() == 2
    await emit(stand_in_database, order_created())  # waiting: never pruned
    old, recent, waiting = await outbox_rows(stand_in_database)
    async with stand_in_database.transaction() as session:
        await session.execute(
            update(StandInOutbox)
            .where(StandInOutbox.id == old.id)
            .values(published_at=utcnow() - timedelta(days=30))
        )

    assert await relay.prune(older_than=utcnow() - timedelta(days=7)) == 1

    assert [row.id for row in await outbox_rows(stand_in_database)] == [recent.id, waiting.id]


async def test_a_batch_goes_out_in_a_few_turns_of_a_busy_event_loop(
    relay: OutboxRelay, stand_in_database: Database, amqp: Amqp
) -> None:
    """In a service busy with requests each turn of the event loop takes long: a batch that needed
    a turn per publish (aiormq's ten-frame write queue, then its channel lock) fell behind."""
    tap = await amqp.tap("order.*")
    await emit(stand_in_database, *(order_created() for _ in range(200)))
    turns = 0
    publishing = True

    async def busy_requests() -> None:
        nonlocal turns
        while publishing:
            turns += 1
            ends = time.perf_counter() + 0.002  # a turn's worth of other work
            while time.perf_counter() < ends:
                pass
            await asyncio.sleep(0)

    async with stand_in_database.transaction() as session:
        events = await relay.claim(session)
        others = asyncio.create_task(busy_requests())  # its turns are counted from its first
        round_ = await relay.publish(events)
        spent = turns
        publishing = False
        await others
        await relay.mark(session, round_)

    assert len(round_.published) == 200
    # Sending takes a turn or two; the rest is the broker's confirms arriving.
    assert spent < 100, f"200 publishes took {spent} turns of the event loop"
    assert len(await tap.take(200)) == 200
