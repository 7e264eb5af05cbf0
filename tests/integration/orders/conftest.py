"""The orders service running in-process on the real servers, and the delivery events it consumes."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from deliveryhub_contracts.events import (
    DELIVERY_SOURCE,
    DeliveryAppointed,
    DeliveryCanceled,
    DeliveryFinished,
    Deliveryman,
    Envelope,
    Payload,
    make_envelope,
)
from deliveryhub_contracts.topology import ORDERS_DELIVERY_EVENTS, Names
from deliveryhub_kit.db import Database, utcnow
from deliveryhub_kit.keys import KeyPair
from deliveryhub_kit.runtime import ServiceRuntime
from deliveryhub_kit.settings import async_database_url
from deliveryhub_orders.app import create_app
from deliveryhub_orders.models import InboxMessage, Order, OutboxMessage
from deliveryhub_orders.settings import OrdersSettings

if TYPE_CHECKING:
    from tests.support.broker import BrokerNamespace, PublishEvent
    from tests.support.databases import Databases
    from tests.support.tokens import Tokens
    from tests.support.waiting import WaitFor

ADDRESS = "Москва, Тверская улица, 7"
DELIVERY_DATE = datetime(2030, 5, 17, 14, 30, tzinfo=UTC)
LAPTEV = Deliveryman(id=uuid.UUID("85db966c-67f1-411e-95c0-f02edfa5464a"), name="Лаптев Иван Алексаендрович")
ZUEV = Deliveryman(id=uuid.UUID("31babbb3-5541-4a2a-8201-537cdff25fed"), name="Зуев Андрей Сергеевич")


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


@dataclass
class RunningOrders:
    """The orders service, started by its own lifespan, with an HTTP client in front of it."""

    app: FastAPI
    settings: OrdersSettings
    client: httpx.AsyncClient

    @property
    def runtime(self) -> ServiceRuntime:
        runtime: ServiceRuntime = self.app.state.runtime
        return runtime

    @property
    def queue(self) -> str:
        return Names(self.settings.broker_prefix).queue(ORDERS_DELIVERY_EVENTS)

    @property
    def dead_letter_queue(self) -> str:
        return Names.dead_letter_queue(self.queue)


@pytest.fixture
async def orders(
    orders_database_url: str,
    broker_namespace: BrokerNamespace,
    key_pair: KeyPair,
    amqp_url: str,
    wait_for: WaitFor,
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
        await stack.enter_async_context(app.router.lifespan_context(app))
        runtime: ServiceRuntime = app.state.runtime

        async def attached() -> bool:
            await runtime.wait_until_attached()
            return bool(runtime.consumers) and runtime.broker.connected

        await wait_for(attached, timeout=15, message="the orders service to attach to the broker")
        client = await stack.enter_async_context(
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://orders.test")
        )
        yield RunningOrders(app=app, settings=settings, client=client)


def order_body(**changes: Any) -> dict[str, Any]:
    """A valid `POST /api/orders` body: 2 × 150.25 + 1 × 499.99 = 800.49."""
    return {
        "address": ADDRESS,
        "date": DELIVERY_DATE.isoformat(),
        "items": [
            {"name": "Чай", "quantity": 2, "price": "150.25"},
            {"name": "Мёд", "quantity": 1, "price": "499.99"},
        ],
        **changes,
    }


class Customer:
    """One customer calling the orders API."""

    def __init__(self, client: httpx.AsyncClient, tokens: Tokens) -> None:
        self.id = uuid.uuid4()
        self.client = client
        self.headers = tokens.customer(self.id)

    async def place_order(self, **changes: Any) -> dict[str, Any]:
        """Place an order and return it as the API answered."""
        response = await self.client.post("/api/orders", json=order_body(**changes), headers=self.headers)
        assert response.status_code == 201, response.text
        placed: dict[str, Any] = response.json()
        return placed

    async def get_order(self, order_id: uuid.UUID | str) -> dict[str, Any]:
        response = await self.client.get(f"/api/orders/{order_id}", headers=self.headers)
        assert response.status_code == 200, response.text
        found: dict[str, Any] = response.json()
        return found


class NewCustomer(Protocol):
    def __call__(self) -> Customer: ...


@pytest.fixture
def new_customer(orders: RunningOrders, tokens: Tokens) -> NewCustomer:
    """A new customer of the running orders service, each call another one."""
    return lambda: Customer(orders.client, tokens)


class OrdersRecords:
    """The test's own view of the orders database."""

    def __init__(self, database: Database) -> None:
        self.database = database

    async def orders(self) -> list[Order]:
        async with self.database.transaction() as session:
            return list(await session.scalars(select(Order)))

    async def get(self, order_id: uuid.UUID) -> Order | None:
        async with self.database.transaction() as session:
            return await session.get(Order, order_id)

    async def outbox(self) -> list[OutboxMessage]:
        async with self.database.transaction() as session:
            return list(await session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)))

    async def inbox_ids(self) -> list[uuid.UUID]:
        async with self.database.transaction() as session:
            return list(await session.scalars(select(InboxMessage.event_id)))


@pytest.fixture
async def orders_records(orders_database_url: str) -> AsyncIterator[OrdersRecords]:
    database = Database(async_database_url(orders_database_url), pool_size=2, max_overflow=2)
    yield OrdersRecords(database)
    await database.dispose()


class DeliveryEvents:
    """The delivery service's CloudEvents, built as it builds them."""

    def appointed(
        self, order_id: uuid.UUID | str, deliveryman: Deliveryman = LAPTEV, version: int = 3
    ) -> Envelope:
        return self.envelope(
            DeliveryAppointed(order_id=uuid.UUID(str(order_id)), deliveryman=deliveryman, version=version)
        )

    def finished(
        self, order_id: uuid.UUID | str, deliveryman: Deliveryman = LAPTEV, version: int = 4
    ) -> Envelope:
        return self.envelope(
            DeliveryFinished(
                order_id=uuid.UUID(str(order_id)),
                deliveryman_id=deliveryman.id,
                finished_at=utcnow(),
                version=version,
            )
        )

    def canceled(
        self, order_id: uuid.UUID | str, reason: str = "canceled by the shop manager", version: int = 4
    ) -> Envelope:
        return self.envelope(
            DeliveryCanceled(order_id=uuid.UUID(str(order_id)), reason=reason, version=version)
        )

    @staticmethod
    def envelope(payload: Payload) -> Envelope:
        subject = str(getattr(payload, "order_id", ""))
        return make_envelope(payload, source=DELIVERY_SOURCE, subject=subject, time=utcnow())


@pytest.fixture(scope="session")
def delivery_events() -> DeliveryEvents:
    return DeliveryEvents()


class Settle(Protocol):
    async def __call__(self) -> None: ...


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
