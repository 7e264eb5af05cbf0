"""The broker cut for seconds while customers place and pay orders: writes go on, the backlog drains."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.faults.amqp_frames import ConfirmTripwire
from tests.faults.invariants import SystemView, converge
from tests.faults.report import ScenarioRecord
from tests.faults.system import FaultSystem, Shop, mixed_stories
from tests.support.tokens import Tokens
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration

ORDERS = 60
CUT_SECONDS = 4.0


async def test_broker_cut_while_orders_are_placed_and_paid(
    system: FaultSystem, view: SystemView, tokens: Tokens, scenario: ScenarioRecord
) -> None:
    tripwire = ConfirmTripwire()
    system.lines.orders_broker.reply_watcher = tripwire.watcher
    orders = await system.start_in_process("orders")
    await system.start_in_process("delivery")
    shop = Shop(tokens, [orders.client])
    stories = mixed_stories(ORDERS)
    broker_lines = (system.lines.orders_broker, system.lines.delivery_broker)

    async def cut_the_broker() -> tuple[float, float, int, bool]:
        await wait_for(lambda: shop.placed >= ORDERS // 4, timeout=30, message="a quarter of the orders")
        # The cut lands while the relay awaits the confirms of a batch it has sent.
        tripwire.arm()
        await wait_for(system.lines.orders_broker.held.is_set, timeout=10, message="a publisher confirm")
        cut_at = time.monotonic()
        for line in broker_lines:
            await line.cut()

        async def readiness_names_the_broker() -> bool:
            response = await orders.client.get("/health/ready")
            return response.status_code == 503 and response.json()["checks"]["broker"]["status"] == "failing"

        reported = await wait_for(readiness_names_the_broker, timeout=CUT_SECONDS, message="readiness 503")
        await asyncio.sleep(cut_at + CUT_SECONDS - time.monotonic())  # the fault's length
        backlog = await view.unpublished()
        for line in broker_lines:
            line.mend()
        return cut_at, time.monotonic(), backlog, reported

    fault = asyncio.create_task(cut_the_broker())
    await shop.stream(stories, every=0.1)
    cut_at, mended_at, backlog, readiness_reported = await fault
    converge_seconds = await converge(view, shop.stories)

    during_cut = shop.answered(cut_at, mended_at)
    assert not shop.failures(), shop.failures()
    assert len(during_cut) >= 10, "too few writes fell inside the cut to say anything"
    assert backlog > 0, "the outbox held nothing while the broker was away"

    scenario.title = "Broker cut while orders are placed and paid"
    scenario.fault = (
        "both services' lines to RabbitMQ cut (connections dropped, new ones refused) the moment the orders "
        "relay awaited the broker's confirms of a batch, then mended"
    )
    scenario.fault_seconds = round(mended_at - cut_at, 1)
    scenario.orders = ORDERS
    scenario.checked = [
        "every write answered 2xx during the cut",
        "readiness answered 503 naming the broker",
    ]
    scenario.converge_seconds = round(converge_seconds, 1)
    scenario.figure("writes", len(shop.answers))
    scenario.figure("writes during the cut", len(during_cut))
    scenario.figure("writes answered 2xx", sum(200 <= answer.status < 300 for answer in shop.answers))
    scenario.figure("slowest write during the cut (s)", max(answer.took for answer in during_cut))
    scenario.figure("outbox backlog at the mend", backlog)
    scenario.figure("readiness said broker failing", readiness_reported)
