"""Several order events in one transaction, as a batch of the consumer applies them: a delivery
made by one event and changed by the next, and locked ones changed twice, are written once each,
with everything the events said."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import select

from deliveryhub_contracts.events import OrderCancelRequested
from deliveryhub_delivery.domain import DeliveryStatus
from deliveryhub_delivery.models import Delivery, OutboxMessage
from deliveryhub_delivery.service import delivery_service
from deliveryhub_kit.db import Database
from deliveryhub_kit.settings import async_database_url
from tests.support import couriers
from tests.support.events import OrderEvents

pytestmark = pytest.mark.integration


@pytest.fixture
async def database(delivery_database_url: str) -> AsyncIterator[Database]:
    database = Database(async_database_url(delivery_database_url), pool_size=2, max_overflow=0)
    yield database
    await database.dispose()


async def stored(database: Database, *order_ids: uuid.UUID) -> dict[uuid.UUID, Delivery]:
    async with database.reading() as work:
        rows = await work.scalars(select(Delivery).where(Delivery.id.in_(order_ids)))
        return {row.id: row for row in rows.unique()}


async def test_a_delivery_made_and_changed_in_one_batch_is_written_once_as_the_last_event_left_it(
    database: Database, order_events: OrderEvents
) -> None:
    paid, canceled, created = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()

    async with database.transaction() as work:
        service = delivery_service(work)
        for order_id in (paid, canceled, created):
            await service.on_order_created(order_events.created_payload(order_id))
        await service.on_order_paid(order_events.paid_payload(paid))
        await service.on_order_paid(order_events.paid_payload(canceled))
        await service.on_order_cancel_requested(
            OrderCancelRequested(order_id=canceled, version=3, reason="no")
        )

    found = await stored(database, paid, canceled, created)
    assert (found[paid].status, found[paid].order_version, found[paid].version) == ("activated", 2, 2)
    assert found[paid].activated_at is not None
    assert (found[canceled].status, found[canceled].version, found[canceled].cancel_reason) == (
        "canceled",
        3,
        "no",
    )
    assert (found[created].status, found[created].version, found[created].activated_at) == (
        "created",
        1,
        None,
    )
    async with database.reading() as work:
        announced = (await work.scalars(select(OutboxMessage.routing_key))).all()
    assert announced == ["delivery.canceled"]


async def test_locked_deliveries_changed_by_several_events_keep_every_change(
    database: Database, order_events: OrderEvents
) -> None:
    first, second = uuid.uuid4(), uuid.uuid4()
    async with database.transaction() as work:
        service = delivery_service(work)
        await service.on_order_created(order_events.created_payload(first))
        await service.on_order_created(order_events.created_payload(second))

    async with database.transaction() as work:
        service = delivery_service(work)
        await service.on_order_paid(order_events.paid_payload(first))
        appointed = await service.appoint_deliveryman(first, couriers.ZUEV.id)
        await service.on_order_paid(order_events.paid_payload(second))
        # A stale event later in the batch changes nothing it should not.
        await service.on_order_created(order_events.created_payload(second, version=1))

    assert appointed.deliveryman is not None
    assert appointed.deliveryman.name == couriers.ZUEV.name
    found = await stored(database, first, second)
    assert (found[first].status, found[first].deliveryman_id, found[first].version) == (
        DeliveryStatus.ACTIVATED,
        couriers.ZUEV.id,
        3,
    )
    assert (found[second].status, found[second].order_version, found[second].version) == ("activated", 2, 2)

    # Read again to change (the seeded courier appointed), a delivery answers with its courier.
    async with database.transaction() as work:
        finished = await delivery_service(work).cancel_delivery(first)
    assert finished.deliveryman is not None
    assert finished.deliveryman.name == couriers.ZUEV.name
