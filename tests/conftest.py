"""Fixtures shared by the tests that talk to the real PostgreSQL and RabbitMQ.

Every test gets databases and broker names of its own and removes them when it ends, so the suite
can run twice in a row, in parallel workers, and beside a running system on the same servers.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, TypeVar

import aio_pika
import aiormq
import pytest

# Imported here, at the start: schemathesis's plugin imports its report writer when the session
# ends, and on Python 3.11.7 parsing a module that late (pytest rewrites the plugin's asserts)
# can fail with "AST constructor recursion depth mismatch", failing a green run.
import schemathesis.reporting.html.writer  # noqa: F401
from aio_pika.abc import (
    AbstractChannel,
    AbstractConnection,
    AbstractIncomingMessage,
    AbstractQueue,
    HeadersType,
)

from deliveryhub_contracts import topology as contract_topology
from deliveryhub_contracts.events import Envelope
from deliveryhub_contracts.topology import Names, QueueSpec, legacy_queues
from deliveryhub_kit.broker import OutgoingMessage
from deliveryhub_kit.db import Database
from deliveryhub_kit.identity import Principal, Role
from deliveryhub_kit.keys import KeyPair, generate_key_pair
from deliveryhub_kit.rabbitmq import RabbitBroker
from deliveryhub_kit.settings import DEFAULT_AMQP_URL, ServiceSettings, async_database_url
from deliveryhub_kit.tokens import TokenIssuer
from tests.support.databases import Databases
from tests.support.stand_in import StandInBase
from tests.support.waiting import WaitFor, wait_for

T = TypeVar("T")

AMQP_URL = os.environ.get("TEST_AMQP_URL", DEFAULT_AMQP_URL)


@pytest.fixture(name="wait_for", scope="session")
def wait_for_fixture() -> WaitFor:
    return wait_for


@pytest.fixture(scope="session")
def run_id() -> str:
    """Names what this test run creates on the shared servers."""
    return uuid.uuid4().hex[:8]


@pytest.fixture(scope="session")
async def databases(run_id: str) -> AsyncIterator[Databases]:
    factory = Databases(run_id)
    yield factory
    await factory.drop_all()


@pytest.fixture
async def delivery_database_url(databases: Databases) -> AsyncIterator[str]:
    """A fresh delivery database at the newest revision."""
    url = await databases.create_migrated("delivery")
    yield url
    await databases.drop(url)


@pytest.fixture
async def stand_in_database(databases: Databases) -> AsyncIterator[Database]:
    """A fresh database with the stand-in service's outbox, inbox and `applied` tables."""
    url = await databases.create_with_tables("stand_in", StandInBase.metadata)
    database = Database(async_database_url(url), pool_size=5, max_overflow=5)
    yield database
    await database.dispose()
    await databases.drop(url)


@pytest.fixture(scope="session")
def amqp_url() -> str:
    return AMQP_URL


def _contract_queue_specs() -> list[QueueSpec]:
    return [value for value in vars(contract_topology).values() if isinstance(value, QueueSpec)]


@dataclass
class BrokerNamespace:
    """The broker names of one test; everything named here is deleted when the test ends."""

    prefix: str
    legacy_prefix: str
    extra_queues: list[str] = field(default_factory=list)
    # Delays of retry queues a test declares beyond the default ones.
    retry_delays: list[float] = field(default_factory=list)

    @property
    def names(self) -> Names:
        return Names(self.prefix)

    @property
    def exchange(self) -> str:
        return self.names.exchange

    def queue(self, spec: QueueSpec) -> str:
        return self.names.queue(spec)

    def track_queue(self, name: str) -> str:
        """Have a queue the test declares itself deleted at the end."""
        self.extra_queues.append(name)
        return name

    def new_queue_name(self, label: str) -> str:
        return self.track_queue(f"{self.prefix}{label}-{uuid.uuid4().hex[:6]}")

    def queues(self) -> list[str]:
        consuming = [self.queue(spec) for spec in _contract_queue_specs()]
        consuming += [*legacy_queues(self.legacy_prefix), *self.extra_queues]
        delays = {*ServiceSettings.model_fields["retry_delays_seconds"].default, *self.retry_delays}
        return (
            consuming
            + [Names.dead_letter_queue(name) for name in consuming]
            + [Names.retry_queue(name, delay) for name in consuming for delay in delays]
        )

    def exchanges(self) -> list[str]:
        return [self.exchange]


async def delete_broker_names(namespace: BrokerNamespace) -> None:
    """Delete every queue and exchange the namespace may have declared."""
    connection = await aio_pika.connect(AMQP_URL, timeout=10)
    try:
        channel = await connection.channel()
        for queue in namespace.queues():
            try:
                await channel.queue_delete(queue)
            except aiormq.exceptions.ChannelClosed:
                channel = await connection.channel()  # an error closes the channel
        for exchange in namespace.exchanges():
            try:
                await channel.exchange_delete(exchange)
            except aiormq.exceptions.ChannelClosed:
                channel = await connection.channel()
    finally:
        await connection.close()


@pytest.fixture
async def broker_namespace() -> AsyncIterator[BrokerNamespace]:
    token = uuid.uuid4().hex[:12]
    namespace = BrokerNamespace(prefix=f"t-{token}.", legacy_prefix=f"t-{token}-legacy_")
    yield namespace
    await delete_broker_names(namespace)


@pytest.fixture
def broker_prefix(broker_namespace: BrokerNamespace) -> str:
    """The `BROKER_PREFIX` of this test."""
    return broker_namespace.prefix


@pytest.fixture
async def rabbit_broker() -> AsyncIterator[RabbitBroker]:
    """The kit's broker, connected, for publishing as a service would."""
    broker = RabbitBroker(AMQP_URL, publish_timeout_seconds=5.0, name="deliveryhub-tests")
    await broker.connect()
    yield broker
    await broker.close()


@pytest.fixture
async def amqp_connection() -> AsyncIterator[AbstractConnection]:
    """A raw aio-pika connection for the test's own publishing and reading."""
    # Not a robust one: a robust channel answers a repeated declaration from its cache.
    connection = await aio_pika.connect(AMQP_URL, timeout=10)
    yield connection
    await connection.close()


class Tap:
    """A queue bound to the test's exchange that keeps a copy of what is published there."""

    def __init__(self, queue: AbstractQueue) -> None:
        self.queue = queue

    async def get(self) -> AbstractIncomingMessage | None:
        return await self.queue.get(no_ack=True, fail=False)

    async def take(
        self,
        count: int,
        *,
        timeout: float = 10.0,  # noqa: ASYNC109
    ) -> list[AbstractIncomingMessage]:
        """The next `count` messages, failing if they do not arrive within `timeout`."""
        taken: list[AbstractIncomingMessage] = []
        for _ in range(count):
            taken.append(
                await wait_for(self.get, timeout=timeout, message=f"message {len(taken) + 1} of {count}")
            )
        return taken


class Amqp:
    """The test's own side of the broker: raw publishing, reading queues, tapping the exchange."""

    def __init__(self, connection: AbstractConnection, namespace: BrokerNamespace) -> None:
        self._connection = connection
        self.namespace = namespace
        self._channel: AbstractChannel | None = None

    async def channel(self) -> AbstractChannel:
        if self._channel is None or self._channel.is_closed:
            self._channel = await self._connection.channel()
        return self._channel

    async def publish(
        self,
        routing_key: str,
        body: bytes,
        *,
        exchange: str = "",
        message_id: str | None = None,
        headers: HeadersType | None = None,
        content_type: str | None = "application/json",
    ) -> None:
        """Publish as another client would; without `message_id` aio-pika makes up a random one."""
        channel = await self.channel()
        target = channel.default_exchange if exchange == "" else await channel.get_exchange(exchange)
        await target.publish(
            aio_pika.Message(
                body,
                message_id=message_id,
                headers=dict(headers or {}),
                content_type=content_type,
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            ),
            routing_key,
        )

    async def get(self, queue: str) -> AbstractIncomingMessage | None:
        """Take one message off `queue`, or None if it has none ready."""
        declared = await (await self.channel()).get_queue(queue, ensure=False)
        return await declared.get(no_ack=True, fail=False)

    async def message_count(self, queue: str) -> int:
        """How many messages wait in `queue`, ready to be delivered (not those a consumer holds)."""
        channel = await self._connection.channel()
        try:
            declared = await channel.declare_queue(queue, passive=True)
        finally:
            await channel.close()
        count = declared.declaration_result.message_count
        assert count is not None
        return count

    async def declare_exchange(self) -> None:
        """The test's events exchange, declared as the services declare it."""
        channel = await self.channel()
        await channel.declare_exchange(self.namespace.exchange, aio_pika.ExchangeType.TOPIC, durable=True)

    async def tap(self, binding_key: str = "#") -> Tap:
        """A new queue that receives a copy of what the exchange routes by `binding_key`."""
        await self.declare_exchange()
        channel = await self.channel()
        name = self.namespace.new_queue_name("tap")
        queue = await channel.declare_queue(name, exclusive=True)
        await queue.bind(self.namespace.exchange, binding_key)
        return Tap(queue)


@pytest.fixture
async def amqp(amqp_connection: AbstractConnection, broker_namespace: BrokerNamespace) -> Amqp:
    return Amqp(amqp_connection, broker_namespace)


class PublishEvent(Protocol):
    async def __call__(self, envelope: Envelope) -> None: ...


@pytest.fixture
def publish_event(rabbit_broker: RabbitBroker, broker_namespace: BrokerNamespace) -> PublishEvent:
    """Publish a CloudEvent on the test's exchange, routed by its short type, as a producer would."""

    async def publish(envelope: Envelope) -> None:
        await rabbit_broker.publish(
            broker_namespace.exchange,
            envelope.routing_key,
            OutgoingMessage(body=envelope.to_json(), message_id=str(envelope.id), type=envelope.type),
        )

    return publish


@pytest.fixture(scope="session")
def key_pair() -> KeyPair:
    return generate_key_pair()


@dataclass(frozen=True)
class Tokens:
    """Authorization headers for callers of each role, signed by the test's key pair."""

    issuer: TokenIssuer

    def headers(self, principal: Principal) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.issuer.issue(principal)}"}

    def manager(self) -> dict[str, str]:
        return self.headers(Principal(subject=uuid.uuid4(), role=Role.MANAGER))

    def customer(self, customer_id: uuid.UUID | None = None) -> dict[str, str]:
        return self.headers(Principal(subject=customer_id or uuid.uuid4(), role=Role.CUSTOMER))

    def courier(self, deliveryman_id: uuid.UUID) -> dict[str, str]:
        principal = Principal(subject=uuid.uuid4(), role=Role.COURIER, deliveryman_id=deliveryman_id)
        return self.headers(principal)


@pytest.fixture(scope="session")
def tokens(key_pair: KeyPair) -> Tokens:
    defaults = ServiceSettings.model_fields
    return Tokens(
        TokenIssuer(
            key_pair.private_pem,
            issuer=str(defaults["jwt_issuer"].default),
            audience=str(defaults["jwt_audience"].default),
        )
    )


TESTS = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Groups for `pytest -n` (`--dist loadgroup`): each group runs on one worker, in order.

    The end-to-end tests of one running system stay together: the last of them judges what the
    others left behind.
    """
    for item in items:
        part = item.path.relative_to(TESTS).parts[0] if item.path.is_relative_to(TESTS) else ""
        callspec = getattr(item, "callspec", None)
        mode = callspec.params.get("system") if callspec is not None else None
        if part == "e2e" and mode is not None:
            item.add_marker(pytest.mark.xdist_group(f"e2e-{mode}"))
