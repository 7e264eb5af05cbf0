"""Fixtures shared by the tests that talk to the real PostgreSQL and RabbitMQ (the helpers: tests/support).

Every test gets databases and broker names of its own and removes them when it ends, so the suite
can run twice in a row, in parallel workers, and beside a running system on the same servers.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aio_pika
import pytest

# Imported here, at the start: schemathesis's plugin imports its report writer when the session
# ends, and on Python 3.11.7 parsing a module that late (pytest rewrites the plugin's asserts)
# can fail with "AST constructor recursion depth mismatch", failing a green run.
import schemathesis.reporting.html.writer  # noqa: F401
from aio_pika.abc import AbstractConnection

from deliveryhub_contracts.events import Envelope
from deliveryhub_kit.broker import OutgoingMessage
from deliveryhub_kit.db import Database
from deliveryhub_kit.keys import KeyPair, generate_key_pair
from deliveryhub_kit.rabbitmq import RabbitBroker
from tests.support.broker import AMQP_URL, Amqp, BrokerNamespace, PublishEvent, delete_broker_names
from tests.support.databases import Databases
from tests.support.stand_in import StandInBase
from tests.support.tokens import Tokens
from tests.support.waiting import WaitFor, wait_for


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
    async with databases.with_tables(
        "stand_in", StandInBase.metadata, pool_size=5, max_overflow=5
    ) as database:
        yield database


@pytest.fixture(scope="session")
def amqp_url() -> str:
    return AMQP_URL


@pytest.fixture
async def broker_namespace() -> AsyncIterator[BrokerNamespace]:
    namespace = BrokerNamespace.fresh()
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


@pytest.fixture
async def amqp(amqp_connection: AbstractConnection, broker_namespace: BrokerNamespace) -> Amqp:
    return Amqp(amqp_connection, broker_namespace)


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


@pytest.fixture(scope="session")
def tokens(key_pair: KeyPair) -> Tokens:
    return Tokens.signed_by(key_pair)


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
