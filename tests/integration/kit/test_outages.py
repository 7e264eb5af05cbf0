"""A database outage pauses a consumer instead of churning: nothing acked, parked, or counted away."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from urllib.parse import urlsplit

import asyncpg
import pytest

from deliveryhub_contracts.topology import QueueSpec
from deliveryhub_kit.consumer import ConsumerOptions
from deliveryhub_kit.db import Database
from deliveryhub_kit.metrics import Metrics
from deliveryhub_kit.rabbitmq import RabbitBroker
from deliveryhub_kit.settings import async_database_url
from deliveryhub_kit.topology import service_topology
from tests.support.broker import Amqp, BrokerNamespace, PublishEvent
from tests.support.databases import POSTGRES_SERVER_URL, Databases
from tests.support.metrics import settled_after_returns
from tests.support.proxy import TcpProxy
from tests.support.stand_in import StandInBase, applied, order_created_event, record, stand_in_consumer
from tests.support.waiting import WaitFor

pytestmark = pytest.mark.integration

OUTAGE_EVENTS = QueueSpec("kit.outage-events", ("order.*",))
# So low that returning what it holds at each try would have the broker park it within seconds.
DELIVERY_LIMIT = 3
OUTAGE_SECONDS = 5.0
BEFORE, DURING = 10, 30


@dataclass
class StandIn:
    """The stand-in service's database: the consumer's line to it through a proxy, and a direct one."""

    url: str
    line: TcpProxy
    through_line: Database
    direct: Database

    @property
    def name(self) -> str:
        return self.url.rsplit("/", 1)[1]


@pytest.fixture
async def stand_in(databases: Databases) -> AsyncIterator[StandIn]:
    url = await databases.create_with_tables("outage", StandInBase.metadata)
    server = urlsplit(POSTGRES_SERVER_URL)
    assert server.hostname is not None
    assert server.port is not None
    line = await TcpProxy(server.hostname, server.port).start()
    proxied = url.replace(f"{server.hostname}:{server.port}", f"127.0.0.1:{line.port}")
    opened = StandIn(
        url,
        line,
        Database(async_database_url(proxied), pool_size=4, max_overflow=0, timeout_seconds=2.0),
        Database(async_database_url(url), pool_size=2, max_overflow=0),
    )
    yield opened
    line.mend()
    await opened.through_line.dispose()
    await opened.direct.dispose()
    await line.close()
    await _admin(f'ALTER DATABASE "{opened.name}" ALLOW_CONNECTIONS true')
    await databases.drop(url)


async def _admin(statement: str, *arguments: object) -> None:
    connection = await asyncpg.connect(f"{POSTGRES_SERVER_URL}/postgres", timeout=10)
    try:
        await connection.execute(statement, *arguments)
    finally:
        await connection.close()


@dataclass(frozen=True)
class Fault:
    name: str
    start: Callable[[StandIn], Awaitable[None]]
    mend: Callable[[StandIn], Awaitable[None]]


async def _cut(stand_in: StandIn) -> None:
    await stand_in.line.cut()


async def _mend_line(stand_in: StandIn) -> None:
    stand_in.line.mend()


async def _refuse(stand_in: StandIn) -> None:
    # PostgreSQL answers new connections with an error (55000) instead of dropping the line.
    await _admin(f'ALTER DATABASE "{stand_in.name}" ALLOW_CONNECTIONS false')
    await _admin("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", stand_in.name)


async def _accept(stand_in: StandIn) -> None:
    await _admin(f'ALTER DATABASE "{stand_in.name}" ALLOW_CONNECTIONS true')


FAULTS = [
    Fault("line cut", _cut, _mend_line),
    Fault("not accepting connections", _refuse, _accept),
]


@pytest.mark.parametrize("fault", FAULTS, ids=[fault.name for fault in FAULTS])
@pytest.mark.parametrize("hold_seconds", [1.0, 60.0], ids=["given-back-once", "held-throughout"])
async def test_an_outage_pauses_the_consumer_and_no_message_is_counted_away(
    stand_in: StandIn,
    rabbit_broker: RabbitBroker,
    broker_namespace: BrokerNamespace,
    publish_event: PublishEvent,
    amqp: Amqp,
    wait_for: WaitFor,
    fault: Fault,
    hold_seconds: float,
) -> None:
    names = broker_namespace.names
    queue = broker_namespace.track_queue(names.queue(OUTAGE_EVENTS))
    topology = service_topology(names, consumes=OUTAGE_EVENTS)
    # The consuming queue with a delivery limit low enough to show any churn.
    topology = replace(
        topology,
        queues=tuple(
            replace(declared, delivery_limit=DELIVERY_LIMIT) if declared.name == queue else declared
            for declared in topology.queues
        ),
    )
    await rabbit_broker.declare(topology)
    metrics = Metrics()
    consumer = stand_in_consumer(
        "outage-test",
        queue,
        stand_in.through_line,
        rabbit_broker,
        record,
        metrics=metrics,
        options=ConsumerOptions(
            prefetch=16, batch_size=8, max_backoff_seconds=0.5, outage_hold_seconds=hold_seconds
        ),
    )
    await consumer.start()
    order_ids: list[uuid.UUID] = []

    async def publish(count: int) -> None:
        for _ in range(count):
            event = order_created_event()
            order_ids.append(uuid.UUID(str(event.data["order_id"])))
            await publish_event(event)

    async def all_applied() -> bool:
        counts = [await applied(stand_in.direct, order_id) for order_id in order_ids]
        assert all(count <= 1 for count in counts), "an event applied twice"
        return all(count == 1 for count in counts)

    try:
        await publish(BEFORE)
        await wait_for(all_applied, timeout=20, message="the events before the outage")

        await fault.start(stand_in)
        await publish(DURING)
        state = await wait_for(
            lambda: consumer.state if consumer.state.paused else None, timeout=20, message="the pause"
        )
        await asyncio.sleep(OUTAGE_SECONDS)  # the outage's length, longer than the limit allows churn
        assert consumer.state.paused
        assert await amqp.message_count(consumer.dead_letter_queue) == 0
        await fault.mend(stand_in)

        await wait_for(all_applied, timeout=30, message="every event, after the mend")
        assert not consumer.state.paused
    finally:
        await consumer.stop()

    assert state.reason, state
    assert await amqp.message_count(consumer.dead_letter_queue) == 0
    assert await amqp.message_count(queue) == 0
    returns = settled_after_returns(metrics, queue)
    assert sum(returns.values()) == BEFORE + DURING
    # Held through the outage: returned once (given back for other consumers) or not at all.
    assert max(returns) <= (1 if hold_seconds < OUTAGE_SECONDS else 0), returns
