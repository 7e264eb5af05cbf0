"""The delivery service running in-process on the real servers, and the order events it consumes."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Protocol

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select

from deliveryhub_contracts.events import (
    ORDERS_SOURCE,
    Envelope,
    OrderCanceled,
    OrderCancelRequested,
    OrderCreated,
    OrderPaid,
    Payload,
    make_envelope,
)
from deliveryhub_contracts.topology import DELIVERY_ORDER_EVENTS, Names
from deliveryhub_delivery.app import create_app
from deliveryhub_delivery.models import Delivery, InboxMessage, OutboxMessage
from deliveryhub_delivery.settings import DeliverySettings
from deliveryhub_kit.db import Database, utcnow
from deliveryhub_kit.keys import KeyPair
from deliveryhub_kit.runtime import ServiceRuntime
from deliveryhub_kit.settings import async_database_url

if TYPE_CHECKING:
    from tests.support.broker import BrokerNamespace, PublishEvent
    from tests.support.waiting import WaitFor

ADDRESS = "Москва, Тверская улица, 7"
DELIVERY_DATE = datetime(2030, 5, 17, 14, 30, tzinfo=UTC)


@dataclass
class RunningDelivery:
    """The delivery service, started by its own lifespan, with an HTTP client in front of it."""

    app: FastAPI
    settings: DeliverySettings
    client: httpx.AsyncClient
    stack: AsyncExitStack

    @property
    def runtime(self) -> ServiceRuntime:
        runtime: ServiceRuntime = self.app.state.runtime
        return runtime

    @property
    def names(self) -> Names:
        return Names(self.settings.broker_prefix)

    @property
    def queue(self) -> str:
        return self.names.queue(DELIVERY_ORDER_EVENTS)

    @property
    def dead_letter_queue(self) -> str:
        return Names.dead_letter_queue(self.queue)

    async def stop(self) -> None:
        """Run the shutdown half of the lifespan (consumers stop, the relay finishes its batch)."""
        await self.stack.aclose()


class StartDelivery(Protocol):
    async def __call__(
        self, *, legacy: bool = False, database_url: str | None = None, amqp_url: str | None = None
    ) -> RunningDelivery: ...


@pytest.fixture
async def start_delivery(
    delivery_database_url: str,
    broker_namespace: BrokerNamespace,
    key_pair: KeyPair,
    amqp_url: str,
    wait_for: WaitFor,
) -> AsyncIterator[StartDelivery]:
    """Start the delivery service on the test's database and broker names; stopped at the end."""
    default_amqp_url = amqp_url
    stacks: list[AsyncExitStack] = []

    async def start(
        *, legacy: bool = False, database_url: str | None = None, amqp_url: str | None = None
    ) -> RunningDelivery:
        settings = DeliverySettings(
            environment="test",
            database_url=database_url or delivery_database_url,
            amqp_url=amqp_url or default_amqp_url,
            broker_prefix=broker_namespace.prefix,
            legacy_queue_prefix=broker_namespace.legacy_prefix if legacy else None,
            jwt_public_key=key_pair.public_pem,
            # One message at a time: a later message's effect proves the earlier ones were settled.
            consumer_prefetch=1,
            outbox_poll_seconds=0.2,
            publish_timeout_seconds=5.0,
            database_pool_size=5,
        )
        app = create_app(settings)
        stack = AsyncExitStack()
        stacks.append(stack)
        await stack.enter_async_context(app.router.lifespan_context(app))
        runtime: ServiceRuntime = app.state.runtime

        async def attached() -> bool:
            await runtime.wait_until_attached()
            return bool(runtime.consumers) and runtime.broker.connected

        if amqp_url is None:  # another broker URL is one that is down: nothing to wait for
            await wait_for(attached, timeout=15, message="the delivery service to attach to the broker")
        client = await stack.enter_async_context(
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://delivery.test")
        )
        return RunningDelivery(app=app, settings=settings, client=client, stack=stack)

    yield start
    for stack in reversed(stacks):
        await stack.aclose()


@pytest.fixture
async def delivery(start_delivery: StartDelivery) -> RunningDelivery:
    """The delivery service, consuming the order events of the test's exchange."""
    return await start_delivery()


class DeliveryRecords:
    """The test's own view of the delivery database."""

    def __init__(self, database: Database) -> None:
        self.database = database

    async def get(self, delivery_id: uuid.UUID) -> Delivery | None:
        async with self.database.transaction() as session:
            return await session.get(Delivery, delivery_id)

    async def count_deliveries(self) -> int:
        async with self.database.transaction() as session:
            return int(await session.scalar(select(func.count()).select_from(Delivery)) or 0)

    async def inbox_ids(self) -> list[uuid.UUID]:
        async with self.database.transaction() as session:
            return list(await session.scalars(select(InboxMessage.event_id)))

    async def outbox(self) -> list[OutboxMessage]:
        async with self.database.transaction() as session:
            return list(await session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)))


@pytest.fixture
async def delivery_records(delivery_database_url: str) -> AsyncIterator[DeliveryRecords]:
    database = Database(async_database_url(delivery_database_url), pool_size=2, max_overflow=2)
    yield DeliveryRecords(database)
    await database.dispose()


class OrderEvents:
    """The orders service's CloudEvents, built as it builds them."""

    def created(
        self,
        order_id: uuid.UUID,
        *,
        version: int = 1,
        address: str = ADDRESS,
        date: datetime = DELIVERY_DATE,
        customer_id: uuid.UUID | None = None,
    ) -> Envelope:
        return self.envelope(self.created_payload(order_id, version, address, date, customer_id))

    @staticmethod
    def created_payload(
        order_id: uuid.UUID,
        version: int = 1,
        address: str = ADDRESS,
        date: datetime = DELIVERY_DATE,
        customer_id: uuid.UUID | None = None,
    ) -> OrderCreated:
        return OrderCreated(
            order_id=order_id,
            customer_id=customer_id or uuid.uuid5(order_id, "customer"),
            address=address,
            date=date,
            total=Decimal("1250.50"),
            version=version,
        )

    def paid(
        self,
        order_id: uuid.UUID,
        *,
        version: int = 2,
        address: str = ADDRESS,
        date: datetime = DELIVERY_DATE,
        customer_id: uuid.UUID | None = None,
    ) -> Envelope:
        return self.envelope(self.paid_payload(order_id, version, address, date, customer_id))

    @staticmethod
    def paid_payload(
        order_id: uuid.UUID,
        version: int = 2,
        address: str = ADDRESS,
        date: datetime = DELIVERY_DATE,
        customer_id: uuid.UUID | None = None,
    ) -> OrderPaid:
        return OrderPaid(
            order_id=order_id,
            customer_id=customer_id or uuid.uuid5(order_id, "customer"),
            address=address,
            date=date,
            total=Decimal("1250.50"),
            version=version,
            paid_at=utcnow(),
        )

    def canceled(self, order_id: uuid.UUID, *, version: int, reason: str = "changed my mind") -> Envelope:
        return self.envelope(OrderCanceled(order_id=order_id, version=version, reason=reason))

    def cancel_requested(
        self, order_id: uuid.UUID, *, version: int = 3, reason: str = "canceled by the customer"
    ) -> Envelope:
        return self.envelope(OrderCancelRequested(order_id=order_id, version=version, reason=reason))

    @staticmethod
    def envelope(payload: Payload) -> Envelope:
        subject = str(getattr(payload, "order_id", ""))
        return make_envelope(payload, source=ORDERS_SOURCE, subject=subject, time=utcnow())


@pytest.fixture(scope="session")
def order_events() -> OrderEvents:
    return OrderEvents()


class Settle(Protocol):
    async def __call__(self) -> uuid.UUID: ...


@pytest.fixture
def settle_order_events(
    publish_event: PublishEvent,
    order_events: OrderEvents,
    delivery_records: DeliveryRecords,
    wait_for: WaitFor,
) -> Settle:
    """Return once every order event published so far has been settled; the sentinel order's id.

    The queue is consumed in order, one message at a time, so once a sentinel published after
    them has been applied, each earlier message has been acked or dead-lettered.
    """

    async def settle() -> uuid.UUID:
        sentinel = uuid.uuid4()
        await publish_event(order_events.created(sentinel, address="sentinel"))
        await wait_for(lambda: delivery_records.get(sentinel), message="the sentinel order's delivery")
        return sentinel

    return settle
