"""Each service's own RabbitMQ user on the real broker: its own names and keys work, the other's are refused.

The users are given as compose gives them, through the management API, when
TEST_RABBITMQ_MANAGEMENT_URL names one (http://ADMIN:PASSWORD@HOST:PORT); else with `rabbitmqctl`
(TEST_RABBITMQCTL: the command that runs it against the broker of TEST_AMQP_URL). Each test makes
users of its own, named after its broker prefix, and deletes them at the end.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import secrets
import shlex
import subprocess
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import aio_pika
import aiormq
import httpx
import pytest
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractIncomingMessage
from fastapi import FastAPI

from deliveryhub_contracts.events import (
    DELIVERY_SOURCE,
    ORDERS_SOURCE,
    DeliveryFinished,
    OrderCreated,
    Payload,
    make_envelope,
)
from deliveryhub_contracts.topology import DELIVERY_ORDER_EVENTS, ORDERS_DELIVERY_EVENTS, Names, legacy_queues
from deliveryhub_delivery.app import create_app as create_delivery_app
from deliveryhub_delivery.settings import DeliverySettings
from deliveryhub_kit.broker import BrokerError, OutgoingMessage
from deliveryhub_kit.broker_access import (
    ADMIN_PASSWORD_VARIABLE,
    ADMIN_USER_VARIABLE,
    BROKER_PREFIX_VARIABLE,
    DELIVERY,
    LEGACY_PREFIX_VARIABLE,
    MANAGEMENT_URL_VARIABLE,
    ORDERS,
    SERVICE_ROLES,
    BrokerAccess,
    BrokerUser,
    ManagementApi,
    ServiceRole,
    apply_with_rabbitmqctl,
    broker_access,
    main,
    management_api_calls,
)
from deliveryhub_kit.db import utcnow
from deliveryhub_kit.keys import KeyPair
from deliveryhub_kit.rabbitmq import RabbitBroker
from deliveryhub_kit.runtime import ServiceRuntime
from deliveryhub_kit.settings import ServiceSettings
from deliveryhub_kit.topology import legacy_topology, service_topology
from deliveryhub_orders.app import create_app as create_orders_app
from deliveryhub_orders.settings import OrdersSettings
from tests.support.broker import AMQP_URL, Amqp, BrokerNamespace
from tests.support.databases import Databases
from tests.support.tokens import Tokens
from tests.support.waiting import WaitFor

pytestmark = pytest.mark.integration

MANAGEMENT_URL = os.environ.get("TEST_RABBITMQ_MANAGEMENT_URL") or None
RABBITMQCTL = shlex.split(os.environ.get("TEST_RABBITMQCTL") or "rabbitmqctl")
RETRY_DELAYS: tuple[float, ...] = ServiceSettings.model_fields["retry_delays_seconds"].default
LAPTEV = "85db966c-67f1-411e-95c0-f02edfa5464a"


def management_api() -> ManagementApi:
    """The test broker's management API, as the administrator its URL names."""
    assert MANAGEMENT_URL is not None
    parts = urlsplit(MANAGEMENT_URL)
    return ManagementApi(MANAGEMENT_URL, unquote(parts.username or ""), unquote(parts.password or ""))


def give(access: BrokerAccess, user: BrokerUser) -> None:
    """Create or update the user and its rights, the way this run's broker is administered."""
    if MANAGEMENT_URL is not None:
        management_api().apply(management_api_calls(access, user))
    else:
        apply_with_rabbitmqctl(access, user, RABBITMQCTL)


def take_away(user: BrokerUser) -> None:
    """Delete the user, closing its connections."""
    if MANAGEMENT_URL is not None:
        management_api().delete_user(user.name)
        return
    subprocess.run(
        [*RABBITMQCTL, "-q", "delete_user", "--", user.name],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        check=False,
        timeout=60,
    )


def amqp_url_of(user: BrokerUser) -> str:
    """The test broker's URL with the user's credentials."""
    server = urlsplit(AMQP_URL)
    credentials = f"{quote(user.name, safe='')}:{quote(user.password, safe='')}"
    return urlunsplit((server.scheme, f"{credentials}@{server.hostname}:{server.port}", server.path, "", ""))


def new_password() -> str:
    """A fresh password with what rabbitmqctl and the URLs must carry: a leading "-", ":", "/", "+"."""
    return f"-{secrets.token_urlsafe(18)}:/+"


@dataclass(frozen=True)
class ServiceUsers:
    """The users of one test, one per service, with the rights its broker names call for."""

    namespace: BrokerNamespace
    users: dict[str, BrokerUser]

    def user(self, role: ServiceRole) -> BrokerUser:
        return self.users[role.service]

    def url(self, role: ServiceRole) -> str:
        return amqp_url_of(self.user(role))

    def access(self, role: ServiceRole) -> BrokerAccess:
        return broker_access(role, self.namespace.prefix, self.namespace.legacy_prefix)


@pytest.fixture
async def service_users(broker_namespace: BrokerNamespace) -> AsyncIterator[ServiceUsers]:
    vhost = BrokerUser.from_amqp_url(AMQP_URL).vhost
    given = ServiceUsers(
        broker_namespace,
        {
            role.service: BrokerUser(f"{broker_namespace.prefix}{role.service}", new_password(), vhost)
            for role in SERVICE_ROLES
        },
    )
    try:
        await asyncio.gather(
            *(asyncio.to_thread(give, given.access(role), given.user(role)) for role in SERVICE_ROLES)
        )
        yield given
    finally:
        await asyncio.gather(*(asyncio.to_thread(take_away, user) for user in given.users.values()))


@asynccontextmanager
async def connected_as(url: str) -> AsyncIterator[AbstractConnection]:
    """A plain connection (not a robust one, which would hide a refused channel by reopening it)."""
    connection = await aio_pika.connect(url, timeout=10)
    try:
        yield connection
    finally:
        await connection.close()


@asynccontextmanager
async def broker_as(url: str) -> AsyncIterator[RabbitBroker]:
    """The kit's broker, as a service runs it, connected with `url`'s credentials."""
    broker = RabbitBroker(url, publish_timeout_seconds=5.0, name="deliveryhub-tests")
    await broker.connect()
    try:
        yield broker
    finally:
        await broker.close()


@asynccontextmanager
async def declared(service_users: ServiceUsers) -> AsyncIterator[dict[str, RabbitBroker]]:
    """Each service's broker, connected as its user, having declared what its service declares."""
    names = service_users.namespace.names
    async with AsyncExitStack() as stack:
        orders = await stack.enter_async_context(broker_as(service_users.url(ORDERS)))
        delivery = await stack.enter_async_context(broker_as(service_users.url(DELIVERY)))
        await orders.declare(
            service_topology(names, consumes=ORDERS_DELIVERY_EVENTS, retry_delays=RETRY_DELAYS)
        )
        await delivery.declare(
            service_topology(names, consumes=DELIVERY_ORDER_EVENTS, retry_delays=RETRY_DELAYS)
        )
        await delivery.declare(
            legacy_topology(legacy_queues(service_users.namespace.legacy_prefix), retry_delays=RETRY_DELAYS)
        )
        yield {ORDERS.service: orders, DELIVERY.service: delivery}


Attempt = Callable[[AbstractChannel], Awaitable[object]]


async def assert_refused(connection: AbstractConnection, attempt: Attempt) -> None:
    """The broker answers `attempt` with ACCESS_REFUSED (403), which closes the channel it was made on."""
    channel = await connection.channel()
    with pytest.raises(aiormq.exceptions.ChannelAccessRefused):
        await attempt(channel)


def publishing(exchange: str, routing_key: str) -> Attempt:
    """Publish with publisher confirms, so that a refusal comes back before the call returns."""

    async def attempt(channel: AbstractChannel) -> None:
        target = (
            channel.default_exchange if exchange == "" else await channel.get_exchange(exchange, ensure=False)
        )
        await target.publish(
            aio_pika.Message(b"{}", delivery_mode=aio_pika.DeliveryMode.PERSISTENT), routing_key
        )

    return attempt


def consuming(queue: str) -> Attempt:
    async def attempt(channel: AbstractChannel) -> None:
        async def ignore(message: AbstractIncomingMessage) -> None:
            raise AssertionError(f"a message of {queue} was handed out")

        await (await channel.get_queue(queue, ensure=False)).consume(ignore)

    return attempt


def getting(queue: str) -> Attempt:
    async def attempt(channel: AbstractChannel) -> AbstractIncomingMessage | None:
        return await (await channel.get_queue(queue, ensure=False)).get(no_ack=False, fail=False)

    return attempt


def declaring_queue(queue: str) -> Attempt:
    async def attempt(channel: AbstractChannel) -> None:
        await channel.declare_queue(queue, durable=True)

    return attempt


def declaring_exchange(exchange: str) -> Attempt:
    async def attempt(channel: AbstractChannel) -> None:
        await channel.declare_exchange(exchange, aio_pika.ExchangeType.TOPIC, durable=True)

    return attempt


def binding(queue: str, exchange: str, binding_key: str) -> Attempt:
    async def attempt(channel: AbstractChannel) -> None:
        await (await channel.get_queue(queue, ensure=False)).bind(exchange, binding_key)

    return attempt


async def take(connection: AbstractConnection, queue: str, wait_for: WaitFor) -> AbstractIncomingMessage:
    """The next message of `queue`, read (and acked) through `connection`."""
    channel = await connection.channel()
    declared_queue = await channel.get_queue(queue, ensure=False)

    async def one() -> AbstractIncomingMessage | None:
        return await declared_queue.get(no_ack=True, fail=False)

    return await wait_for(one, message=f"a message on {queue}")


def event_message(payload: Payload, source: str) -> OutgoingMessage:
    envelope = make_envelope(
        payload, source=source, subject=str(getattr(payload, "order_id", "")), time=utcnow()
    )
    return OutgoingMessage(body=envelope.to_json(), message_id=str(envelope.id), type=envelope.type)


def order_created() -> OrderCreated:
    return OrderCreated(
        order_id=uuid.uuid4(),
        customer_id=uuid.uuid4(),
        address="Тула, проспект Ленина, 10",
        date=datetime(2030, 6, 1, 9, 0, tzinfo=UTC),
        total=Decimal("12.50"),
        version=1,
    )


def delivery_finished() -> DeliveryFinished:
    return DeliveryFinished(
        order_id=uuid.uuid4(), deliveryman_id=uuid.UUID(LAPTEV), finished_at=utcnow(), version=3
    )


async def test_the_orders_user_publishes_only_order_events_and_reads_only_its_own_queue(
    service_users: ServiceUsers, amqp: Amqp, wait_for: WaitFor
) -> None:
    names = service_users.namespace.names
    own_queue = names.queue(ORDERS_DELIVERY_EVENTS)
    delivery_queue = names.queue(DELIVERY_ORDER_EVENTS)
    async with declared(service_users) as brokers:
        orders = brokers[ORDERS.service]
        # Its events, confirmed by the broker and routed to the delivery service's queue.
        await orders.publish(names.exchange, "order.created", event_message(order_created(), ORDERS_SOURCE))
        async with connected_as(service_users.url(DELIVERY)) as delivery:
            received = await take(delivery, delivery_queue, wait_for)
        assert received.routing_key == "order.created"
        # Moving a failed message into its own delay and dead-letter queues, as its consumer does.
        moved = OutgoingMessage(body=b"{}", message_id="moved")
        await orders.publish("", Names.retry_queue(own_queue, RETRY_DELAYS[-1]), moved)
        await orders.publish("", Names.dead_letter_queue(own_queue), moved)
        assert await amqp.message_count(Names.retry_queue(own_queue, RETRY_DELAYS[-1])) == 1
        assert await amqp.message_count(Names.dead_letter_queue(own_queue)) == 1

    async with connected_as(service_users.url(ORDERS)) as connection:
        await assert_refused(connection, publishing(names.exchange, "delivery.finished"))
        await assert_refused(connection, publishing("amq.topic", "order.created"))
        await assert_refused(connection, consuming(delivery_queue))
        await assert_refused(connection, getting(delivery_queue))
        for legacy_queue in legacy_queues(service_users.namespace.legacy_prefix):
            await assert_refused(connection, consuming(legacy_queue))
        # Binding its queue to another's events (the topic permission's read pattern).
        await assert_refused(connection, binding(own_queue, names.exchange, "order.*"))
        await assert_refused(connection, binding(own_queue, names.exchange, "#"))
        await assert_refused(connection, declaring_queue(delivery_queue))
        # Another system's names on the same broker: no prefix, or the orders names of another prefix.
        await assert_refused(connection, declaring_exchange(Names().exchange))
        await assert_refused(connection, declaring_queue(Names("other.").queue(ORDERS_DELIVERY_EVENTS)))
        # Its dead letters are the operator's to read.
        await assert_refused(connection, getting(Names.dead_letter_queue(own_queue)))


async def test_the_delivery_user_publishes_only_delivery_events_and_reads_only_its_own_queues(
    service_users: ServiceUsers, amqp: Amqp, wait_for: WaitFor
) -> None:
    names = service_users.namespace.names
    own_queue = names.queue(DELIVERY_ORDER_EVENTS)
    orders_queue = names.queue(ORDERS_DELIVERY_EVENTS)
    legacy = legacy_queues(service_users.namespace.legacy_prefix)
    async with declared(service_users) as brokers:
        delivery = brokers[DELIVERY.service]
        await delivery.publish(
            names.exchange, "delivery.finished", event_message(delivery_finished(), DELIVERY_SOURCE)
        )
        async with connected_as(service_users.url(ORDERS)) as orders:
            received = await take(orders, orders_queue, wait_for)
        assert received.routing_key == "delivery.finished"
        moved = OutgoingMessage(body=b"{}", message_id="moved")
        for queue in (own_queue, *legacy):
            await delivery.publish("", Names.retry_queue(queue, RETRY_DELAYS[-1]), moved)
            await delivery.publish("", Names.dead_letter_queue(queue), moved)
            assert await amqp.message_count(Names.retry_queue(queue, RETRY_DELAYS[-1])) == 1
            assert await amqp.message_count(Names.dead_letter_queue(queue)) == 1

    async with connected_as(service_users.url(DELIVERY)) as connection:
        # The teaching design's queues are its own to read.
        for legacy_queue in legacy:
            await amqp.publish(legacy_queue, b'{"id": "legacy"}')
            assert (await take(connection, legacy_queue, wait_for)).body == b'{"id": "legacy"}'

        await assert_refused(connection, publishing(names.exchange, "order.created"))
        await assert_refused(connection, publishing(names.exchange, "order.cancel-requested"))
        await assert_refused(connection, consuming(orders_queue))
        await assert_refused(connection, getting(orders_queue))
        await assert_refused(connection, binding(own_queue, names.exchange, "delivery.*"))
        await assert_refused(connection, declaring_queue(orders_queue))
        await assert_refused(connection, declaring_exchange(Names().exchange))
        for queue in (own_queue, *legacy):
            await assert_refused(connection, getting(Names.dead_letter_queue(queue)))


async def test_giving_the_users_again_keeps_their_rights_and_takes_a_new_password(
    service_users: ServiceUsers,
) -> None:
    role = ORDERS
    old = service_users.user(role)
    new = BrokerUser(old.name, new_password(), old.vhost)

    await asyncio.to_thread(give, service_users.access(role), new)
    await asyncio.to_thread(give, service_users.access(role), new)

    with pytest.raises(aiormq.exceptions.AMQPConnectionError):
        await aio_pika.connect(amqp_url_of(old), timeout=10)
    names = service_users.namespace.names
    async with broker_as(amqp_url_of(new)) as broker:
        await broker.declare(
            service_topology(names, consumes=ORDERS_DELIVERY_EVENTS, retry_delays=RETRY_DELAYS)
        )


# The entry point speaks to a management API: the RabbitMQ 4 run's broker has one.
@pytest.mark.configured_broker
async def test_the_entry_point_gives_both_users_and_prints_no_password(
    broker_namespace: BrokerNamespace, capsys: pytest.CaptureFixture[str], wait_for: WaitFor
) -> None:
    assert MANAGEMENT_URL is not None
    management = urlsplit(MANAGEMENT_URL)
    vhost = BrokerUser.from_amqp_url(AMQP_URL).vhost
    users = {
        role: BrokerUser(f"{broker_namespace.prefix}{role.service}-job", new_password(), vhost)
        for role in SERVICE_ROLES
    }
    environment = {
        MANAGEMENT_URL_VARIABLE: urlunsplit(
            (management.scheme, f"{management.hostname}:{management.port}", management.path, "", "")
        ),
        ADMIN_USER_VARIABLE: unquote(management.username or ""),
        ADMIN_PASSWORD_VARIABLE: unquote(management.password or ""),
        BROKER_PREFIX_VARIABLE: broker_namespace.prefix,
        LEGACY_PREFIX_VARIABLE: broker_namespace.legacy_prefix,
        **{role.amqp_url_variable: amqp_url_of(user) for role, user in users.items()},
    }
    try:
        await asyncio.to_thread(main, environment)
        printed = capsys.readouterr()
        for user in users.values():
            assert user.name in printed.out
            assert user.password not in printed.out + printed.err
            assert quote(user.password, safe="") not in printed.out + printed.err
        names = broker_namespace.names
        async with AsyncExitStack() as stack:
            orders = await stack.enter_async_context(broker_as(amqp_url_of(users[ORDERS])))
            delivery = await stack.enter_async_context(broker_as(amqp_url_of(users[DELIVERY])))
            await orders.declare(service_topology(names, consumes=ORDERS_DELIVERY_EVENTS))
            await delivery.declare(service_topology(names, consumes=DELIVERY_ORDER_EVENTS))
            await delivery.declare(legacy_topology(legacy_queues(broker_namespace.legacy_prefix)))
            await orders.publish(
                names.exchange, "order.created", event_message(order_created(), ORDERS_SOURCE)
            )
            async with connected_as(amqp_url_of(users[DELIVERY])) as connection:
                await take(connection, names.queue(DELIVERY_ORDER_EVENTS), wait_for)
    finally:
        await asyncio.gather(*(asyncio.to_thread(take_away, user) for user in users.values()))


def order_body() -> dict[str, Any]:
    return {
        "address": "Тула, проспект Ленина, 10",
        "date": (datetime.now(UTC) + timedelta(days=1)).isoformat(),
        "items": [{"name": "Пряник", "quantity": 2, "price": "150.00"}],
    }


@dataclass
class Running:
    app: FastAPI
    client: httpx.AsyncClient

    @property
    def runtime(self) -> ServiceRuntime:
        runtime: ServiceRuntime = self.app.state.runtime
        return runtime


@pytest.fixture
async def orders_database_url(databases: Databases) -> AsyncIterator[str]:
    url = await databases.create_migrated("orders")
    yield url
    await databases.drop(url)


async def test_both_services_run_the_whole_story_each_as_its_own_user(
    service_users: ServiceUsers,
    orders_database_url: str,
    delivery_database_url: str,
    key_pair: KeyPair,
    tokens: Tokens,
    amqp: Amqp,
    wait_for: WaitFor,
) -> None:
    namespace = service_users.namespace
    common: dict[str, Any] = {
        "environment": "test",
        "broker_prefix": namespace.prefix,
        "jwt_public_key": key_pair.public_pem,
        "outbox_poll_seconds": 0.2,
        "publish_timeout_seconds": 5.0,
        "database_pool_size": 5,
    }
    apps = {
        ORDERS.service: create_orders_app(
            OrdersSettings(database_url=orders_database_url, amqp_url=service_users.url(ORDERS), **common)
        ),
        DELIVERY.service: create_delivery_app(
            DeliverySettings(
                database_url=delivery_database_url,
                amqp_url=service_users.url(DELIVERY),
                legacy_queue_prefix=namespace.legacy_prefix,
                **common,
            )
        ),
    }
    async with AsyncExitStack() as stack:
        running: dict[str, Running] = {}
        for service, app in apps.items():
            await stack.enter_async_context(app.router.lifespan_context(app))
            client = await stack.enter_async_context(
                httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=f"http://{service}.test")
            )
            running[service] = Running(app, client)
        for service, started in running.items():
            runtime = started.runtime

            async def attached(runtime: ServiceRuntime = runtime) -> bool:
                # Connected, its topology declared and its consumers started, all as its own user.
                await runtime.wait_until_attached()
                return bool(runtime.consumers) and runtime.broker.connected

            await wait_for(attached, timeout=15, message=f"the {service} service to attach as its user")
        orders, delivery = running[ORDERS.service].client, running[DELIVERY.service].client
        customer, manager = tokens.customer(), tokens.manager()

        async def delivery_in(order_id: str, status: str) -> dict[str, Any] | None:
            response = await delivery.get(f"/api/delivery/{order_id}", headers=manager)
            found: dict[str, Any] = response.json()
            return found if response.status_code == 200 and found["status"] == status else None

        async def order_in(order_id: str, status: str) -> dict[str, Any] | None:
            found: dict[str, Any] = (await orders.get(f"/api/orders/{order_id}", headers=customer)).json()
            return found if found["status"] == status else None

        # Orders publish (the relay, as the orders user); delivery consumes them (as the delivery user).
        placed = await orders.post("/api/orders", json=order_body(), headers=customer)
        assert placed.status_code == 201, placed.text
        order_id = placed.json()["id"]
        await wait_for(lambda: delivery_in(order_id, "created"), message="the delivery of the order")
        assert (await orders.post(f"/api/orders/{order_id}/pay", headers=customer)).status_code == 200
        await wait_for(lambda: delivery_in(order_id, "activated"), message="the delivery to be activated")
        # And back: delivery events published as the delivery user, consumed as the orders user.
        appointed = await delivery.post(
            f"/api/delivery/{order_id}/appoint", json={"deliveryman_id": LAPTEV}, headers=manager
        )
        assert appointed.status_code == 200, appointed.text
        courier = tokens.courier(uuid.UUID(LAPTEV))
        finished = await delivery.post(f"/api/delivery/{order_id}/finish", headers=courier)
        assert finished.status_code == 200, finished.text
        delivered = await wait_for(
            lambda: order_in(order_id, "delivered"), message="the order to be delivered"
        )
        assert delivered["deliveryman"]["id"] == LAPTEV
        for queue in (namespace.queue(ORDERS_DELIVERY_EVENTS), namespace.queue(DELIVERY_ORDER_EVENTS)):
            assert await amqp.message_count(Names.dead_letter_queue(queue)) == 0, f"{queue} dead-lettered"

        # The teaching design's queue, consumed as the delivery user.
        created_queue, _ = legacy_queues(namespace.legacy_prefix)
        legacy_order = str(uuid.uuid4())
        legacy_body = {
            "order_id": legacy_order,
            "date": "2030-06-01T09:00:00",
            "address": "Тула, Советская, 3",
        }
        await amqp.publish(created_queue, json.dumps(legacy_body).encode())
        await wait_for(lambda: delivery_in(legacy_order, "created"), message="the legacy order's delivery")

        # Poison in every queue: each consumer moves it to its dead-letter queue through amq.default.
        for queue in (
            namespace.queue(ORDERS_DELIVERY_EVENTS),
            namespace.queue(DELIVERY_ORDER_EVENTS),
            created_queue,
        ):
            await amqp.publish(queue, b"{not json", message_id=f"poison-{queue}")
            dead_letters = Names.dead_letter_queue(queue)
            dead = await wait_for(
                functools.partial(amqp.get, dead_letters), message=f"poison in {dead_letters}"
            )
            assert dead.message_id == f"poison-{queue}"
            assert (dead.headers or {})["x-original-queue"] == queue


async def test_a_topology_the_user_may_not_declare_is_refused_as_a_broker_error(
    service_users: ServiceUsers,
) -> None:
    # The service runtime keeps trying (and says so) on a BrokerError instead of giving up unattached.
    names = service_users.namespace.names
    async with broker_as(service_users.url(ORDERS)) as orders:
        with pytest.raises(BrokerError, match="refused to declare"):
            await orders.declare(service_topology(names, consumes=DELIVERY_ORDER_EVENTS))
