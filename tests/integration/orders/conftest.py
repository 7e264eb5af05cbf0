"""The orders service running in-process on the real servers, and the delivery events it consumes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING

import pytest

from deliveryhub_kit.db import Database
from deliveryhub_kit.keys import KeyPair
from deliveryhub_kit.settings import async_database_url
from deliveryhub_orders.app import create_app
from deliveryhub_orders.settings import OrdersSettings
from tests.support.events import DeliveryEvents
from tests.support.orders import Customer, NewCustomer, OrdersRecords, RunningOrders, Settle
from tests.support.services import start_in_process

if TYPE_CHECKING:
    from tests.support.broker import BrokerNamespace, PublishEvent
    from tests.support.databases import Databases
    from tests.support.tokens import Tokens
    from tests.support.waiting import WaitFor


@pytest.fixture
async def orders_database_url(databases: Databases) -> AsyncIterator[str]:
    """A fresh orders database at the newest revision."""
    url = await databases.create_migrated("orders")
    yield url
    await databases.drop(url)


@pytest.fixture
async def empty_database_url(databases: Databases) -> AsyncIterator[str]:
    """A fresh database with nothing in it."""
    url = await databases.create_empty("orders_empty")
    yield url
    await databases.drop(url)


@pytest.fixture
async def orders(
    orders_database_url: str,
    broker_namespace: BrokerNamespace,
    key_pair: KeyPair,
    amqp_url: str,
) -> AsyncIterator[RunningOrders]:
    """The orders service on the test's database and broker names, consuming delivery events."""
    settings = OrdersSettings(
        environment="test",
        database_url=orders_database_url,
        amqp_url=amqp_url,
        broker_prefix=broker_namespace.prefix,
        jwt_public_key=key_pair.public_pem,
        # One message at a time: a later message's effect proves the earlier ones were settled.
        consumer_prefetch=1,
        outbox_poll_seconds=0.2,
        publish_timeout_seconds=5.0,
        database_pool_size=5,
    )
    app = create_app(settings)
    async with AsyncExitStack() as stack:
        client = await start_in_process(stack, app, "orders")
        yield RunningOrders(app=app, settings=settings, client=client)


@pytest.fixture
def new_customer(orders: RunningOrders, tokens: Tokens) -> NewCustomer:
    """A new customer of the running orders service, each call another one."""
    return lambda: Customer(orders.client, tokens)


@pytest.fixture
async def orders_records(orders_database_url: str) -> AsyncIterator[OrdersRecords]:
    database = Database(async_database_url(orders_database_url), pool_size=2, max_overflow=2)
    yield OrdersRecords(database)
    await database.dispose()


@pytest.fixture(scope="session")
def delivery_events() -> DeliveryEvents:
    return DeliveryEvents()


@pytest.fixture
def settle_delivery_events(
    new_customer: NewCustomer,
    publish_event: PublishEvent,
    delivery_events: DeliveryEvents,
    wait_for: WaitFor,
) -> Settle:
    """Return once every delivery event published so far has been settled.

    The queue is consumed in order, one message at a time, so once a sentinel published after
    them has been applied, each earlier message has been acked or dead-lettered.
    """

    async def settle() -> None:
        customer = new_customer()
        sentinel = await customer.place_order(address="sentinel")
        await publish_event(delivery_events.appointed(sentinel["id"]))

        async def courier_shown() -> bool:
            return (await customer.get_order(sentinel["id"]))["deliveryman"] is not None

        await wait_for(courier_shown, message="the sentinel order to show its courier")

    return settle
