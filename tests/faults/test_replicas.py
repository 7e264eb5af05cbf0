"""Two replicas of each service as processes: competing consumers, two relays on one outbox."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import pytest

from tests.faults.invariants import SystemView, converge
from tests.faults.processes import metric_total
from tests.faults.report import ScenarioRecord
from tests.faults.system import FaultSystem, Shop, Story, mixed_stories
from tests.support.broker import Amqp
from tests.support.tokens import Tokens

pytestmark = pytest.mark.integration

ORDERS = 60


async def test_two_replicas_of_each_service(
    system: FaultSystem, view: SystemView, tokens: Tokens, amqp: Amqp, scenario: ScenarioRecord
) -> None:
    tap = await amqp.tap("#")  # a copy of every event of both services
    replicas = {
        "orders": [system.process("orders", "orders-a"), system.process("orders", "orders-b")],
        "delivery": [system.process("delivery", "delivery-a"), system.process("delivery", "delivery-b")],
    }
    await asyncio.gather(*(replica.start() for group in replicas.values() for replica in group))
    started_at = time.monotonic()
    # Each order is placed on one orders replica and paid on the other; each delivery is appointed on
    # one delivery replica and finished on the other.
    shop = Shop(
        tokens,
        [replica.client for replica in replicas["orders"]],
        [replica.client for replica in replicas["delivery"]],
    )
    stories = mixed_stories(ORDERS, delivered=True)
    await shop.stream(stories, every=0.03)
    delivered = [order_id for order_id, story in shop.stories.items() if story is Story.DELIVERED]
    await asyncio.gather(*(shop.deliver(order_id, index) for index, order_id in enumerate(delivered)))
    converge_seconds = await converge(view, shop.stories)

    assert not shop.failures(), shop.failures()
    published = Counter[str]()
    while (message := await tap.get()) is not None:
        published[str(message.message_id)] += 1
    assert published
    assert set(published.values()) == {1}, "an event was published twice"

    figures: dict[str, float] = {}
    for group in replicas.values():
        for replica in group:
            figures[f"{replica.label}: events applied"] = await metric_total(
                replica.client, "deliveryhub_events_consumed_total", outcome="applied"
            )
            figures[f"{replica.label}: events published"] = await metric_total(
                replica.client, "deliveryhub_events_published_total"
            )
            figures[f"{replica.label}: retried"] = await metric_total(
                replica.client, "deliveryhub_events_retried_total"
            )
        # Both replicas took part, each in consuming and in relaying.
        assert all(figures[f"{replica.label}: events applied"] > 0 for replica in group), figures
        assert all(figures[f"{replica.label}: events published"] > 0 for replica in group), figures
    assert sum(figures[f"{r.label}: events published"] for g in replicas.values() for r in g) == len(
        published
    )

    scenario.title = "Two replicas of each service at once"
    scenario.fault = (
        "two orders and two delivery processes on the same databases and queues: competing consumers, "
        "two relays claiming one outbox (FOR UPDATE SKIP LOCKED); requests spread over both"
    )
    scenario.fault_seconds = round(time.monotonic() - started_at, 1)
    scenario.orders = ORDERS
    scenario.checked = [
        "both replicas of each service consumed and relayed",
        "every event published exactly once by the two relays",
    ]
    scenario.converge_seconds = round(converge_seconds, 1)
    scenario.figure("orders delivered (appointed and finished across replicas)", len(delivered))
    scenario.figure("events published", len(published))
    for name, value in figures.items():
        scenario.figure(name, int(value))
