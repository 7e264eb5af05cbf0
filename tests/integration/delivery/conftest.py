"""The delivery service running in-process on the real servers (started by `start_delivery`, one folder
up), and the order events it consumes."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import pytest

from deliveryhub_kit.db import Database
from deliveryhub_kit.settings import async_database_url
from tests.support.delivery import DeliveryRecords, RunningDelivery, Settle, StartDelivery
from tests.support.events import OrderEvents

if TYPE_CHECKING:
    from tests.support.broker import PublishEvent
    from tests.support.waiting import WaitFor


@pytest.fixture
async def delivery(start_delivery: StartDelivery) -> RunningDelivery:
    """The delivery service, consuming the order events of the test's exchange."""
    return await start_delivery()


@pytest.fixture
async def delivery_records(delivery_database_url: str) -> AsyncIterator[DeliveryRecords]:
    database = Database(async_database_url(delivery_database_url), pool_size=2, max_overflow=2)
    yield DeliveryRecords(database)
    await database.dispose()


@pytest.fixture(scope="session")
def order_events() -> OrderEvents:
    return OrderEvents()


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
