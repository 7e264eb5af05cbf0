"""The orders and delivery services in-process on the real servers, wired to each other.

The two services are started once for this package of tests and share one broker namespace, so an
order placed through the orders API becomes a delivery as it would in production. Each test makes
its own customers, orders and deliveries, so the tests do not depend on one another.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select

from deliveryhub_delivery.app import create_app as create_delivery_app
from deliveryhub_delivery.models import OutboxMessage as DeliveryOutbox
from deliveryhub_delivery.settings import DeliverySettings
from deliveryhub_kit.db import Database
from deliveryhub_kit.identity import Principal, Role
from deliveryhub_kit.keys import KeyPair
from deliveryhub_kit.runtime import ServiceRuntime
from deliveryhub_kit.settings import async_database_url
from deliveryhub_orders.app import create_app as create_orders_app
from deliveryhub_orders.models import Order
from deliveryhub_orders.models import OutboxMessage as OrdersOutbox
from deliveryhub_orders.settings import OrdersSettings
from tests.integration.delivery.conftest import DeliveryRecords
from tests.integration.orders.conftest import OrdersRecords, order_body
from tests.support.broker import BrokerNamespace, delete_broker_names
from tests.support.databases import Databases
from tests.support.tokens import Tokens
from tests.support.waiting import WaitFor

LAPTEV = uuid.UUID("85db966c-67f1-411e-95c0-f02edfa5464a")
ZUEV = uuid.UUID("31babbb3-5541-4a2a-8201-537cdff25fed")
KUDZH = uuid.UUID("45309954-8e3c-4635-8066-b342f634252c")


@dataclass(frozen=True)
class RunningService:
    """One service started by its own lifespan, with an HTTP client in front of it."""

    app: FastAPI
    client: httpx.AsyncClient
    # The event loop the service runs on: a synchronous test drives it from there.
    loop: asyncio.AbstractEventLoop


@dataclass(frozen=True)
class Caller:
    """Someone calling the APIs: a role (None for a caller without a token) and who they are."""

    role: Role | None
    subject: uuid.UUID
    deliveryman_id: uuid.UUID | None = None

    @classmethod
    def customer(cls) -> Caller:
        return cls(Role.CUSTOMER, uuid.uuid4())

    @classmethod
    def manager(cls) -> Caller:
        return cls(Role.MANAGER, uuid.uuid4())

    @classmethod
    def courier(cls, deliveryman_id: uuid.UUID = LAPTEV) -> Caller:
        return cls(Role.COURIER, uuid.uuid4(), deliveryman_id)

    @classmethod
    def anonymous(cls) -> Caller:
        return cls(None, uuid.uuid4())

    @classmethod
    def of(cls, role: Role | None) -> Caller:
        """A new caller of `role`; a courier is Laptev, one of the three couriers."""
        if role is None:
            return cls.anonymous()
        return {Role.CUSTOMER: cls.customer, Role.MANAGER: cls.manager, Role.COURIER: cls.courier}[role]()

    def headers(self, tokens: Tokens) -> dict[str, str]:
        if self.role is None:
            return {}
        return tokens.headers(
            Principal(subject=self.subject, role=self.role, deliveryman_id=self.deliveryman_id)
        )


class Shop:
    """The two APIs as their users drive them, to bring orders and deliveries into a given state."""

    def __init__(
        self,
        services: Services,
        tokens: Tokens,
        wait_for: WaitFor,
        orders_records: OrdersRecords,
        delivery_records: DeliveryRecords,
    ) -> None:
        self.orders = services.orders.client
        self.delivery = services.delivery.client
        self.tokens = tokens
        self.orders_records = orders_records
        self.delivery_records = delivery_records
        self._wait_for = wait_for
        self._manager = Caller.manager().headers(tokens)

    async def place_order(self, customer: Caller, **changes: Any) -> uuid.UUID:
        """A new `created` order of `customer`."""
        response = await self.orders.post(
            "/api/orders", json=order_body(**changes), headers=customer.headers(self.tokens)
        )
        assert response.status_code == 201, response.text
        return uuid.UUID(response.json()["id"])

    async def paid_order(self, customer: Caller) -> uuid.UUID:
        order_id = await self.place_order(customer)
        response = await self.orders.post(
            f"/api/orders/{order_id}/pay", headers=customer.headers(self.tokens)
        )
        assert response.status_code == 200, response.text
        return order_id

    async def order(self, order_id: uuid.UUID) -> dict[str, Any]:
        """The order as a manager sees it."""
        response = await self.orders.get(f"/api/orders/{order_id}", headers=self._manager)
        assert response.status_code == 200, response.text
        found: dict[str, Any] = response.json()
        return found

    async def delivery_of(self, order_id: uuid.UUID) -> dict[str, Any] | None:
        """The order's delivery as a manager sees it, once the delivery service has it."""
        response = await self.delivery.get(f"/api/delivery/{order_id}", headers=self._manager)
        if response.status_code == 404:
            return None
        assert response.status_code == 200, response.text
        found: dict[str, Any] = response.json()
        return found

    async def activated_delivery(self, customer: Caller | None = None) -> uuid.UUID:
        """A delivery of a paid order, `activated` and waiting for a courier."""
        order_id = await self.paid_order(customer or Caller.customer())
        await self.wait_for_delivery(order_id, "activated")
        return order_id

    async def appointed_delivery(self, courier: uuid.UUID = LAPTEV) -> uuid.UUID:
        """An activated delivery with `courier` appointed to it."""
        delivery_id = await self.activated_delivery()
        response = await self.delivery.post(
            f"/api/delivery/{delivery_id}/appoint",
            json={"deliveryman_id": str(courier)},
            headers=self._manager,
        )
        assert response.status_code == 200, response.text
        return delivery_id

    async def stored_orders_of(self, customer_id: uuid.UUID) -> list[Order]:
        """The orders of `customer_id` as the orders database holds them."""
        async with self.orders_records.database.transaction() as session:
            return list(await session.scalars(select(Order).where(Order.customer_id == customer_id)))

    async def orders_events_about(self, order_id: uuid.UUID) -> list[str]:
        """The routing keys of the orders outbox's events about `order_id`, oldest first."""
        return await _events_about(self.orders_records.database, OrdersOutbox, order_id)

    async def delivery_events_about(self, delivery_id: uuid.UUID) -> list[str]:
        """The routing keys of the delivery outbox's events about `delivery_id`, oldest first."""
        return await _events_about(self.delivery_records.database, DeliveryOutbox, delivery_id)

    async def orders_outbox_size(self) -> int:
        async with self.orders_records.database.transaction() as session:
            return int(await session.scalar(select(func.count()).select_from(OrdersOutbox)) or 0)

    async def wait_for_delivery(self, order_id: uuid.UUID, status: str) -> dict[str, Any]:
        async def in_status() -> dict[str, Any] | None:
            found = await self.delivery_of(order_id)
            return found if found is not None and found["status"] == status else None

        return await self._wait_for(in_status, message=f"the delivery of order {order_id} to be {status}")


async def _events_about(
    database: Database, outbox: type[OrdersOutbox] | type[DeliveryOutbox], subject: uuid.UUID
) -> list[str]:
    async with database.transaction() as session:
        rows = await session.scalars(
            select(outbox.routing_key)
            .where(outbox.body.contains(f'"subject":"{subject}"'))
            .order_by(outbox.id)
        )
        return list(rows)


async def _start(
    stack: AsyncExitStack,
    app: FastAPI,
    base_url: str,
    wait_for: WaitFor,
) -> RunningService:
    lifespan: AbstractAsyncContextManager[Any] = app.router.lifespan_context(app)
    await stack.enter_async_context(lifespan)
    runtime: ServiceRuntime = app.state.runtime

    async def attached() -> bool:
        await runtime.wait_until_attached()
        return bool(runtime.consumers) and runtime.broker.connected

    await wait_for(attached, timeout=15, message=f"{base_url} to attach to the broker")
    client = await stack.enter_async_context(
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=base_url)
    )
    return RunningService(app=app, client=client, loop=asyncio.get_running_loop())


@dataclass(frozen=True)
class Servers:
    orders_database_url: str
    delivery_database_url: str
    broker_prefix: str


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


@dataclass(frozen=True)
class Services:
    orders: RunningService
    delivery: RunningService


@pytest.fixture(scope="package")
async def services(
    servers: Servers, key_pair: KeyPair, amqp_url: str, wait_for: WaitFor
) -> AsyncIterator[Services]:
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
        delivery = await _start(
            stack, create_delivery_app(delivery_settings), "http://delivery.test", wait_for
        )
        orders = await _start(stack, create_orders_app(orders_settings), "http://orders.test", wait_for)
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
