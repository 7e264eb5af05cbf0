"""The invariant every fault scenario ends with, read from the databases and the broker themselves."""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from collections.abc import Collection, Mapping
from dataclasses import dataclass

from aio_pika.abc import AbstractConnection
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from deliveryhub_delivery.models import Delivery
from deliveryhub_delivery.models import InboxMessage as DeliveryInbox
from deliveryhub_delivery.models import OutboxMessage as DeliveryOutbox
from deliveryhub_kit.db import Database
from deliveryhub_kit.dead_letters import DeadLetter, DeadLetterBox
from deliveryhub_kit.inbox import InboxMessageMixin
from deliveryhub_kit.outbox import OutboxMessageMixin
from deliveryhub_kit.settings import async_database_url
from deliveryhub_orders.models import InboxMessage as OrdersInbox
from deliveryhub_orders.models import Order
from deliveryhub_orders.models import OutboxMessage as OrdersOutbox
from tests.faults.system import EXPECTED_STATES, RETRY_DELAYS, FaultSystem, Story
from tests.support.broker import Amqp
from tests.support.waiting import wait_for

# What the check verifies, in the words of the report.
CHECKED = (
    "N orders stored",
    "exactly N deliveries",
    "each delivery in the state its order's events call for, at the version of its order's latest event",
    "each order in the state its story and the delivery events call for",
    "every outbox row published",
    "each event applied exactly once (the consumer's inbox = the producer's outbox, no id twice)",
    "no dead letter but the injected ones",
    "every queue drained",
)


@dataclass
class SystemView:
    """Read-only access to both services' databases (directly, not through the proxies) and queues."""

    system: FaultSystem
    orders_database: Database
    delivery_database: Database
    amqp: Amqp
    connection: AbstractConnection

    @classmethod
    def of(cls, system: FaultSystem, amqp: Amqp, connection: AbstractConnection) -> SystemView:
        def database(url: str) -> Database:
            return Database(async_database_url(url), pool_size=2, max_overflow=2)

        return cls(
            system,
            database(system.database_urls["orders"]),
            database(system.database_urls["delivery"]),
            amqp,
            connection,
        )

    async def close(self) -> None:
        await self.orders_database.dispose()
        await self.delivery_database.dispose()

    async def dead_letters(self) -> list[DeadLetter]:
        """Every dead letter of both services, looked at without taking it."""
        queues = [self.system.dead_letter_queue("delivery"), self.system.dead_letter_queue("orders")]
        return await DeadLetterBox(self.connection).browse(queues)

    async def deliveries(self) -> dict[uuid.UUID, Delivery]:
        async with self.delivery_database.transaction() as session:
            return {delivery.id: delivery for delivery in await session.scalars(select(Delivery))}

    async def outbox_event_ids(self, service: str) -> set[uuid.UUID]:
        """The ids of every event a service wrote into its outbox."""
        if service == "orders":
            return set(await _event_ids(self.orders_database, OrdersOutbox))
        return set(await _event_ids(self.delivery_database, DeliveryOutbox))

    async def latest_order_event_versions(self) -> dict[uuid.UUID, int]:
        """The version each order's latest event carries, read from the orders outbox."""
        latest: dict[uuid.UUID, int] = {}
        async with self.orders_database.transaction() as session:
            for body in await session.scalars(select(OrdersOutbox.body)):
                data = json.loads(body)["data"]
                order_id = uuid.UUID(data["order_id"])
                latest[order_id] = max(latest.get(order_id, 0), int(data["version"]))
        return latest

    async def unpublished(self, service: str | None = None) -> int:
        """Outbox rows not yet marked published: one service's, or both services' together."""
        total = 0
        for name, database, model in (
            ("orders", self.orders_database, OrdersOutbox),
            ("delivery", self.delivery_database, DeliveryOutbox),
        ):
            if service not in (None, name):
                continue
            async with database.transaction() as session:
                total += await _count_unpublished(session, model)
        return total


async def _count_unpublished(session: AsyncSession, model: type[OutboxMessageMixin]) -> int:
    query = select(func.count()).select_from(model).where(model.published_at.is_(None))
    return int(await session.scalar(query) or 0)


async def _event_ids(
    database: Database, model: type[OutboxMessageMixin] | type[InboxMessageMixin]
) -> list[uuid.UUID]:
    async with database.transaction() as session:
        return list(await session.scalars(select(model.event_id)))


def _differ(label: str, expected: Collection[uuid.UUID], found: Collection[uuid.UUID]) -> list[str]:
    missing, extra = set(expected) - set(found), set(found) - set(expected)
    if not missing and not extra:
        return []
    return [f"{label}: {len(missing)} missing, {len(extra)} unexpected"]


async def violations(
    view: SystemView, stories: Mapping[uuid.UUID, Story], injected_dead_letters: Collection[str] = ()
) -> list[str]:
    """What does not hold now (empty when the invariant holds)."""
    problems: list[str] = []
    async with view.orders_database.transaction() as session:
        orders = {order.id: order for order in await session.scalars(select(Order))}
    deliveries = await view.deliveries()
    latest_versions = await view.latest_order_event_versions()
    problems += _differ("orders", stories, orders)
    problems += _differ("deliveries", stories, deliveries)

    wrong_delivery, behind, wrong_order = Counter[str](), 0, Counter[str]()
    for order_id, story in stories.items():
        order_state, delivery_state = EXPECTED_STATES[story]
        order, delivery = orders.get(order_id), deliveries.get(order_id)
        if delivery is not None and delivery.status != delivery_state:
            wrong_delivery[f"{delivery.status} instead of {delivery_state}"] += 1
        if delivery is not None and delivery.order_version != latest_versions.get(order_id):
            behind += 1
        if order is not None and order.status != order_state:
            wrong_order[f"{order.status} instead of {order_state}"] += 1
    problems += [f"deliveries {what}: {count}" for what, count in wrong_delivery.items()]
    problems += [f"deliveries not at their order's latest event: {behind}"] if behind else []
    problems += [f"orders {what}: {count}" for what, count in wrong_order.items()]

    if waiting := await view.unpublished():
        problems.append(f"outbox rows not published: {waiting}")

    for label, producer, outbox, consumer, inbox in (
        ("order events", view.orders_database, OrdersOutbox, view.delivery_database, DeliveryInbox),
        ("delivery events", view.delivery_database, DeliveryOutbox, view.orders_database, OrdersInbox),
    ):
        received = await _event_ids(consumer, inbox)
        if twice := [event_id for event_id, count in Counter(received).items() if count > 1]:
            problems.append(f"{label}: inbox ids recorded twice: {len(twice)}")
        problems += _differ(
            f"{label} applied (inbox vs outbox)", await _event_ids(producer, outbox), received
        )

    parked = Counter(letter.message_id for letter in await view.dead_letters())
    if parked != Counter(injected_dead_letters):
        unexpected = parked - Counter(injected_dead_letters)
        missing = Counter(injected_dead_letters) - parked
        problems.append(
            f"dead letters: {sum(unexpected.values())} unexpected, {sum(missing.values())} missing"
        )

    system = view.system
    queues = [system.queue("delivery"), system.queue("orders")]
    queues += [system.names.retry_queue(queue, delay) for queue in queues[:2] for delay in RETRY_DELAYS]
    for queue in queues:
        if ready := await view.amqp.message_count(queue):
            problems.append(f"{queue}: {ready} messages not consumed")
    return problems


async def converge(
    view: SystemView,
    stories: Mapping[uuid.UUID, Story],
    injected_dead_letters: Collection[str] = (),
    *,
    timeout: float = 60.0,  # noqa: ASYNC109
) -> float:
    """Wait until the invariant holds; the seconds it took. Fails with what still does not hold."""
    started = time.monotonic()

    async def holds() -> bool:
        problems = await violations(view, stories, injected_dead_letters)
        assert not problems, problems
        return True

    await wait_for(holds, timeout=timeout, message=f"the invariant over {len(stories)} orders")
    return time.monotonic() - started
