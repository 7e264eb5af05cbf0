"""Delayed retries through RabbitMQ's own delay queues, then the dead-letter queue with the story."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Protocol

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from deliveryhub_contracts.events import OrderCreated
from deliveryhub_contracts.topology import QueueSpec
from deliveryhub_kit.consumer import ConsumerOptions, InboxConsumer
from deliveryhub_kit.db import Database
from deliveryhub_kit.failures import RetryLater
from deliveryhub_kit.rabbitmq import RabbitBroker
from deliveryhub_kit.topology import service_topology
from tests.support.broker import Amqp, BrokerNamespace, PublishEvent
from tests.support.stand_in import Apply, applied, order_created_event, record, stand_in_consumer
from tests.support.waiting import WaitFor

pytestmark = pytest.mark.integration

RETRY_EVENTS = QueueSpec("kit.retry-events", ("order.*",))
DELAYS = (0.3, 0.6, 0.9)


class StartRetrying(Protocol):
    async def __call__(self, apply: Apply) -> InboxConsumer: ...


@pytest.fixture
async def start_retrying(
    stand_in_database: Database, rabbit_broker: RabbitBroker, broker_namespace: BrokerNamespace
) -> AsyncIterator[StartRetrying]:
    names = broker_namespace.names
    queue = broker_namespace.track_queue(names.queue(RETRY_EVENTS))
    broker_namespace.retry_delays.extend(DELAYS)
    await rabbit_broker.declare(service_topology(names, consumes=RETRY_EVENTS, retry_delays=DELAYS))
    started: list[InboxConsumer] = []

    async def start(apply: Apply) -> InboxConsumer:
        consumer = stand_in_consumer(
            "retry-test", queue, stand_in_database, rabbit_broker, apply, ConsumerOptions(retry_delays=DELAYS)
        )
        await consumer.start()
        started.append(consumer)
        return consumer

    yield start
    for consumer in started:
        await consumer.stop()


async def test_a_passing_failure_waits_each_delay_in_turn_then_applies_once(
    start_retrying: StartRetrying,
    publish_event: PublishEvent,
    stand_in_database: Database,
    amqp: Amqp,
    wait_for: WaitFor,
) -> None:
    tried_at: list[float] = []

    async def not_yet_twice(session: AsyncSession, payload: OrderCreated) -> None:
        tried_at.append(time.monotonic())
        if len(tried_at) <= 2:
            raise RetryLater("the order is not here yet")
        await record(session, payload)

    consumer = await start_retrying(not_yet_twice)
    event = order_created_event()
    await publish_event(event)
    order_id = uuid.UUID(str(event.data["order_id"]))

    await wait_for(lambda: applied(stand_in_database, order_id), timeout=15, message="the event to apply")
    assert await applied(stand_in_database, order_id) == 1
    assert len(tried_at) == 3
    # Each try waited out its delay queue's TTL: the broker held it, no loop in the consumer did.
    assert tried_at[1] - tried_at[0] >= DELAYS[0] * 0.9
    assert tried_at[2] - tried_at[1] >= DELAYS[1] * 0.9
    assert await amqp.message_count(consumer.dead_letter_queue) == 0


async def test_after_the_last_delay_the_message_is_dead_lettered_with_its_story(
    start_retrying: StartRetrying,
    publish_event: PublishEvent,
    stand_in_database: Database,
    amqp: Amqp,
    wait_for: WaitFor,
) -> None:
    tries: list[float] = []

    async def never(session: AsyncSession, payload: OrderCreated) -> None:
        tries.append(time.monotonic())
        raise RetryLater("the order never comes")

    consumer = await start_retrying(never)
    event = order_created_event()
    await publish_event(event)

    dead = await wait_for(lambda: amqp.get(consumer.dead_letter_queue), timeout=20, message="the dead letter")
    headers = dead.headers or {}
    assert len(tries) == len(DELAYS) + 1
    assert headers["x-attempts"] == len(DELAYS) + 1
    assert headers["x-error-class"] == "RetryLater"
    assert "never comes" in str(headers["x-death-reason"])
    assert headers["x-original-routing-key"] == "order.created"
    first = datetime.fromisoformat(str(headers["x-first-failed-at"]))
    last = datetime.fromisoformat(str(headers["x-last-failed-at"]))
    assert (last - first).total_seconds() >= sum(DELAYS) * 0.9
    assert dead.message_id == str(event.id)
    assert await applied(stand_in_database, uuid.UUID(str(event.data["order_id"]))) == 0
