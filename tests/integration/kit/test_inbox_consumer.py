"""The inbox consumer on the real PostgreSQL and RabbitMQ: once per event id, dead letters with reasons."""

from __future__ import annotations

import asyncio
import functools
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

import pytest
from opentelemetry import trace
from opentelemetry.trace import ProxyTracerProvider
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from deliveryhub_contracts.events import OrderCreated
from deliveryhub_contracts.topology import QueueSpec
from deliveryhub_kit.consumer import ConsumerOptions, InboxConsumer
from deliveryhub_kit.consumer.runner import lane_of
from deliveryhub_kit.context import current_traceparent
from deliveryhub_kit.db import Database
from deliveryhub_kit.errors import Conflict
from deliveryhub_kit.failures import RetryLater
from deliveryhub_kit.metrics import Metrics
from deliveryhub_kit.rabbitmq import RabbitBroker
from deliveryhub_kit.topology import service_topology
from tests.support.broker import Amqp, BrokerNamespace, PublishEvent
from tests.support.stand_in import (
    Apply,
    StandInInbox,
    applied,
    order_created_event,
    record,
    stand_in_consumer,
)
from tests.support.waiting import WaitFor

pytestmark = pytest.mark.integration

TEST_EVENTS = QueueSpec("kit.test-events", ("order.*",))
RETRY_DELAYS = (0.2, 0.2, 0.2)


class StartConsumer(Protocol):
    async def __call__(self, apply: Apply = ...) -> InboxConsumer: ...


@dataclass(frozen=True)
class Mode:
    prefetch: int
    batch_size: int
    lanes: int = 1


# One message at a time and in order (see `settle`); or as the services run, many in hand and
# applied in batches: every test below holds in both.
ONE_BY_ONE = Mode(prefetch=1, batch_size=1)
IN_BATCHES = Mode(prefetch=16, batch_size=16, lanes=2)


@pytest.fixture(params=[ONE_BY_ONE, IN_BATCHES], ids=["one-by-one", "in-batches"])
def mode(request: pytest.FixtureRequest) -> Mode:
    chosen: Mode = request.param
    return chosen


@pytest.fixture
async def start_consumer(
    stand_in_database: Database, rabbit_broker: RabbitBroker, broker_namespace: BrokerNamespace, mode: Mode
) -> AsyncIterator[StartConsumer]:
    names = broker_namespace.names
    queue = broker_namespace.track_queue(names.queue(TEST_EVENTS))
    broker_namespace.retry_delays.extend(RETRY_DELAYS)
    await rabbit_broker.declare(service_topology(names, consumes=TEST_EVENTS, retry_delays=RETRY_DELAYS))
    started: list[InboxConsumer] = []

    async def start(apply: Apply = record) -> InboxConsumer:
        consumer = stand_in_consumer(
            "kit-test",
            queue,
            stand_in_database,
            rabbit_broker,
            apply,
            metrics=Metrics(),
            options=ConsumerOptions(
                prefetch=mode.prefetch,
                batch_size=mode.batch_size,
                lanes=mode.lanes,
                retry_delays=RETRY_DELAYS,
            ),
        )
        await consumer.start()
        started.append(consumer)
        return consumer

    yield start
    for consumer in started:
        await consumer.stop()


async def inbox_ids(database: Database) -> set[uuid.UUID]:
    async with database.transaction() as session:
        return set(await session.scalars(select(StandInInbox.event_id)))


class Settle(Protocol):
    async def __call__(self) -> None: ...


@pytest.fixture
def settle(publish_event: PublishEvent, stand_in_database: Database, wait_for: WaitFor, mode: Mode) -> Settle:
    """Return once everything published before has been settled: a later sentinel was applied in
    each lane (lanes apply side by side, so one lane's sentinel says nothing of another's events)."""

    async def settle() -> None:
        sentinels: dict[int, uuid.UUID] = {}
        while len(sentinels) < mode.lanes:
            order_id = uuid.uuid4()
            sentinels.setdefault(lane_of(str(order_id), mode.lanes), order_id)
        for order_id in sentinels.values():
            await publish_event(order_created_event(order_id))
        for order_id in sentinels.values():
            await wait_for(functools.partial(applied, stand_in_database, order_id), message="a sentinel")

    return settle


async def test_an_event_delivered_twice_is_applied_once(
    start_consumer: StartConsumer,
    publish_event: PublishEvent,
    settle: Settle,
    stand_in_database: Database,
    amqp: Amqp,
) -> None:
    consumer = await start_consumer()
    event = order_created_event()
    order_id = uuid.UUID(str(event.data["order_id"]))

    await publish_event(event)
    await publish_event(event)
    await settle()

    assert await applied(stand_in_database, order_id) == 1
    assert event.id in await inbox_ids(stand_in_database)
    # Stopped, a consumer gives back what it has not acked: an empty queue means all were acked.
    await consumer.stop()
    assert await amqp.message_count(consumer.queue) == 0
    assert await amqp.message_count(consumer.dead_letter_queue) == 0


def _envelope_json(**changes: object) -> bytes:
    attributes = json.loads(order_created_event().to_json())
    attributes.update(changes)
    return json.dumps(attributes).encode()


@pytest.mark.parametrize(
    ("body", "routing_key", "reason"),
    [
        pytest.param(b"{not json", "order.created", "body is not JSON", id="not-json"),
        pytest.param(b'["a", "list"]', "order.created", "not a JSON object", id="not-an-object"),
        pytest.param(
            json.dumps({"hello": "world"}).encode(),
            "order.created",
            "not a CloudEvents 1.0 envelope",
            id="not-a-cloud-event",
        ),
        pytest.param(
            _envelope_json(type="deliveryhub.order.shipped"),
            "order.shipped",
            "no handler for event type 'deliveryhub.order.shipped'",
            id="unknown-type",
        ),
        pytest.param(
            _envelope_json(data={"order_id": "not-a-uuid", "version": 0}),
            "order.created",
            "invalid order.created data",
            id="invalid-payload",
        ),
    ],
)
async def test_a_malformed_message_is_dead_lettered_at_once_with_its_reason(
    start_consumer: StartConsumer,
    settle: Settle,
    stand_in_database: Database,
    amqp: Amqp,
    wait_for: WaitFor,
    body: bytes,
    routing_key: str,
    reason: str,
    mode: Mode,
) -> None:
    consumer = await start_consumer()

    await amqp.publish(routing_key, body, exchange=amqp.namespace.exchange, message_id="malformed-1")

    dead = await wait_for(lambda: amqp.get(consumer.dead_letter_queue), message="the dead letter")
    assert dead.body == body
    assert dead.message_id == "malformed-1"
    headers = dead.headers
    assert reason in str(headers["x-death-reason"])
    assert headers["x-error-class"] == "MalformedEvent"
    assert headers["x-original-queue"] == consumer.queue
    assert headers["x-original-routing-key"] == routing_key
    assert "x-failed-at" in headers
    await settle()
    assert len(await inbox_ids(stand_in_database)) == mode.lanes  # the sentinels' only
    # Stopped, a consumer gives back what it has not acked: an empty queue means all were acked.
    await consumer.stop()
    assert await amqp.message_count(consumer.queue) == 0
    assert await amqp.message_count(consumer.dead_letter_queue) == 0


async def test_a_handler_that_can_never_succeed_is_dead_lettered_and_leaves_nothing_behind(
    start_consumer: StartConsumer,
    publish_event: PublishEvent,
    stand_in_database: Database,
    amqp: Amqp,
    wait_for: WaitFor,
) -> None:
    event = order_created_event()

    async def refuse(session: AsyncSession, payload: OrderCreated) -> None:
        await record(session, payload)
        raise Conflict(f"order {payload.order_id} cannot be taken")

    consumer = await start_consumer(refuse)
    await publish_event(event)

    dead = await wait_for(lambda: amqp.get(consumer.dead_letter_queue), message="the dead letter")
    assert dead.headers["x-error-class"] == "Conflict"
    assert "cannot be taken" in str(dead.headers["x-death-reason"])
    assert dead.message_id == str(event.id)
    # The failed transaction was rolled back: no side effect, and no inbox row to block a replay.
    assert await applied(stand_in_database, uuid.UUID(str(event.data["order_id"]))) == 0
    assert event.id not in await inbox_ids(stand_in_database)


async def test_a_passing_failure_is_retried_until_the_event_applies(
    start_consumer: StartConsumer,
    publish_event: PublishEvent,
    stand_in_database: Database,
    amqp: Amqp,
    wait_for: WaitFor,
) -> None:
    attempts: list[uuid.UUID] = []
    event = order_created_event()
    order_id = uuid.UUID(str(event.data["order_id"]))

    async def not_yet_then_apply(session: AsyncSession, payload: OrderCreated) -> None:
        if payload.order_id == order_id:
            attempts.append(payload.order_id)
            if len(attempts) < 3:
                raise RetryLater("the order is not there yet")
        await record(session, payload)

    consumer = await start_consumer(not_yet_then_apply)
    await publish_event(event)

    await wait_for(lambda: applied(stand_in_database, order_id), message="the event to apply")
    assert len(attempts) == 3
    assert await applied(stand_in_database, order_id) == 1
    assert event.id in await inbox_ids(stand_in_database)
    assert await amqp.message_count(consumer.dead_letter_queue) == 0


async def test_stopping_lets_the_message_in_hand_finish_and_acks_it(
    start_consumer: StartConsumer,
    publish_event: PublishEvent,
    stand_in_database: Database,
    amqp: Amqp,
    wait_for: WaitFor,
) -> None:
    entered = asyncio.Event()
    release = asyncio.Event()

    async def slow(session: AsyncSession, payload: OrderCreated) -> None:
        entered.set()
        await release.wait()
        await record(session, payload)

    consumer = await start_consumer(slow)
    event = order_created_event()
    await publish_event(event)
    await wait_for(entered.is_set, message="the handler to start")

    stopping = asyncio.create_task(consumer.stop())
    await asyncio.sleep(0)  # let the stop begin while the handler is still in hand
    assert not stopping.done()
    release.set()
    await asyncio.wait_for(stopping, timeout=10)

    assert await applied(stand_in_database, uuid.UUID(str(event.data["order_id"]))) == 1
    # Had it not been acked, closing the consumer's channel would have put it back in the queue.
    assert await amqp.message_count(consumer.queue) == 0


def batch_sizes(consumer: InboxConsumer) -> tuple[float, float]:
    """How many transactions the consumer committed, and how many messages they applied in all."""
    registry = consumer._metrics.registry
    labels = {"queue": consumer.queue}
    count = registry.get_sample_value("deliveryhub_consumer_batch_messages_count", labels) or 0.0
    total = registry.get_sample_value("deliveryhub_consumer_batch_messages_sum", labels) or 0.0
    return count, total


@pytest.mark.parametrize("mode", [IN_BATCHES], ids=["in-batches"], indirect=True)
async def test_waiting_events_are_applied_in_batches_each_once(
    start_consumer: StartConsumer,
    publish_event: PublishEvent,
    stand_in_database: Database,
    amqp: Amqp,
    wait_for: WaitFor,
) -> None:
    events = [order_created_event() for _ in range(40)]
    for event in [*events, events[7], events[23]]:  # two of them published twice
        await publish_event(event)

    consumer = await start_consumer()
    ids = {event.id for event in events}
    await wait_for(lambda: _all_in(stand_in_database, ids), message="every event to be applied")
    for event in events:
        assert await applied(stand_in_database, uuid.UUID(str(event.data["order_id"]))) == 1
    await wait_for(lambda: batch_sizes(consumer)[1] == 42, message="every copy to be settled")
    transactions, _ = batch_sizes(consumer)
    assert transactions < 42 / 2, "the messages in hand were applied in few transactions"
    await consumer.stop()
    assert await amqp.message_count(consumer.queue) == 0
    assert await amqp.message_count(consumer.dead_letter_queue) == 0


async def _all_in(database: Database, ids: set[uuid.UUID]) -> bool:
    return ids <= await inbox_ids(database)


@pytest.mark.parametrize("mode", [IN_BATCHES], ids=["in-batches"], indirect=True)
async def test_a_message_that_fails_fails_alone_and_the_rest_of_its_batch_applies(
    start_consumer: StartConsumer,
    publish_event: PublishEvent,
    stand_in_database: Database,
    amqp: Amqp,
    wait_for: WaitFor,
) -> None:
    events = [order_created_event() for _ in range(30)]
    poison = events[12]
    poison_order = uuid.UUID(str(poison.data["order_id"]))
    for event in events:
        await publish_event(event)

    async def refuse_one(session: AsyncSession, payload: OrderCreated) -> None:
        await record(session, payload)
        if payload.order_id == poison_order:
            raise Conflict(f"order {payload.order_id} cannot be taken")

    consumer = await start_consumer(refuse_one)
    good = {event.id for event in events if event is not poison}
    await wait_for(lambda: _all_in(stand_in_database, good), message="the good events to be applied")
    dead = await wait_for(lambda: amqp.get(consumer.dead_letter_queue), message="the dead letter")
    assert dead.message_id == str(poison.id)
    assert dead.headers["x-error-class"] == "Conflict"
    for event in events:
        order_id = uuid.UUID(str(event.data["order_id"]))
        assert await applied(stand_in_database, order_id) == (0 if event is poison else 1)
    assert poison.id not in await inbox_ids(stand_in_database)
    await consumer.stop()
    assert await amqp.message_count(consumer.queue) == 0
    assert await amqp.message_count(consumer.dead_letter_queue) == 0


@pytest.mark.parametrize("mode", [IN_BATCHES], ids=["in-batches"], indirect=True)
async def test_events_about_one_order_are_applied_in_the_order_they_came(
    start_consumer: StartConsumer,
    publish_event: PublishEvent,
    stand_in_database: Database,
    wait_for: WaitFor,
) -> None:
    orders = [uuid.uuid4() for _ in range(6)]
    seen: dict[uuid.UUID, list[int]] = {order_id: [] for order_id in orders}

    async def note(session: AsyncSession, payload: OrderCreated) -> None:
        await record(session, payload)
        # Odd versions are slow: had a later version another lane, it would overtake its elder.
        await asyncio.sleep(0.01 if payload.version % 2 else 0)
        seen[payload.order_id].append(payload.version)

    consumer = await start_consumer(note)
    for version in range(1, 9):
        for order_id in orders:
            await publish_event(order_created_event(order_id, version))

    await wait_for(lambda: batch_sizes(consumer)[1] == 48, message="every event to be settled")
    assert seen == {order_id: list(range(1, 9)) for order_id in orders}


CALLER_TRACE = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@pytest.mark.parametrize("mode", [IN_BATCHES], ids=["in-batches"], indirect=True)
async def test_a_handler_carries_the_events_trace_on_when_nothing_records_spans(
    start_consumer: StartConsumer,
    publish_event: PublishEvent,
    monkeypatch: pytest.MonkeyPatch,
    wait_for: WaitFor,
) -> None:
    # No SDK tracer provider: the handler makes no span, and the trace it continues is the event's.
    monkeypatch.setattr(trace, "get_tracer_provider", ProxyTracerProvider)
    seen: list[str | None] = []

    async def note_the_trace(session: AsyncSession, event: OrderCreated) -> None:
        seen.append(current_traceparent())

    await start_consumer(note_the_trace)
    event = order_created_event().model_copy(update={"traceparent": CALLER_TRACE})
    await publish_event(event)
    await publish_event(order_created_event())  # and one without a trace starts none

    await wait_for(lambda: len(seen) == 2, message="both events to be handled")
    assert sorted(seen, key=str) == [CALLER_TRACE, None]
    assert current_traceparent() is None  # nor does it outlive the handling
