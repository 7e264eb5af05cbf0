"""The orders and delivery services in-process on the real servers, wired to each other.

The two services are started once for this package of tests and share one broker namespace, so an
order placed through the orders API becomes a delivery as it would in production. Each test makes
its own customers, orders and deliveries, so the tests do not depend on one another.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

import pytest

from deliveryhub_delivery.app import create_app as create_delivery_app
from deliveryhub_delivery.settings import DeliverySettings
from deliveryhub_kit.db import Database
from deliveryhub_kit.keys import KeyPair
from deliveryhub_kit.settings import async_database_url
from deliveryhub_orders.app import create_app as create_orders_app
from deliveryhub_orders.settings import OrdersSettings
from tests.support.broker import BrokerNamespace, delete_broker_names
from tests.support.databases import Databases
from tests.support.delivery import DeliveryRecords
from tests.support.orders import OrdersRecords
from tests.support.shop import RunningService, Servers, Services, Shop
from tests.support.tokens import Tokens
from tests.support.waiting import WaitFor


@pytest.fixture(scope="package")
async def servers(databases: Databases) -> AsyncIterator[Servers]:
    """Databases and broker names of the security tests' two services, removed at the end."""
    namespace = BrokerNamespace.fresh()
    orders_url = await databases.create_migrated("orders")
    delivery_url = await databases.create_migrated("delivery")
    yield Servers(orders_url, delivery_url, namespace.prefix)
    await databases.drop(orders_url)
    await databases.drop(delivery_url)
    await delete_broker_names(namespace)


@pytest.fixture(scope="package")
async def services(servers: Servers, key_pair: KeyPair, amqp_url: str) -> AsyncIterator[Services]:
    """Both services, running on the servers above until the last security test has run."""
    common: dict[str, Any] = {
        "environment": "test",
        "amqp_url": amqp_url,
        "broker_prefix": servers.broker_prefix,
        "jwt_public_key": key_pair.public_pem,
        # Events between the two services are the only thing the tests wait for: poll often.
        "outbox_poll_seconds": 0.1,
        "publish_timeout_seconds": 5.0,
        "database_pool_size": 5,
    }
    orders_settings = OrdersSettings(database_url=servers.orders_database_url, **common)
    delivery_settings = DeliverySettings(database_url=servers.delivery_database_url, **common)
    async with AsyncExitStack() as stack:
        # Delivery first: its queue must be bound before the first order event is published.
        delivery = await RunningService.start(stack, create_delivery_app(delivery_settings), "delivery")
        orders = await RunningService.start(stack, create_orders_app(orders_settings), "orders")
        yield Services(orders=orders, delivery=delivery)


@pytest.fixture(scope="package")
def shop(
    services: Services,
    tokens: Tokens,
    wait_for: WaitFor,
    orders_records: OrdersRecords,
    delivery_records: DeliveryRecords,
) -> Shop:
    return Shop(services, tokens, wait_for, orders_records, delivery_records)


@pytest.fixture(scope="package")
async def orders_records(servers: Servers) -> AsyncIterator[OrdersRecords]:
    """The test's own view of the orders database."""
    database = Database(async_database_url(servers.orders_database_url), pool_size=2, max_overflow=2)
    yield OrdersRecords(database)
    await database.dispose()


@pytest.fixture(scope="package")
async def delivery_records(servers: Servers) -> AsyncIterator[DeliveryRecords]:
    """The test's own view of the delivery database."""
    database = Database(async_database_url(servers.delivery_database_url), pool_size=2, max_overflow=2)
    yield DeliveryRecords(database)
    await database.dispose()
