"""The broker's line drops at each step of a service attaching to it, first or again after a
reconnect: the service attaches once the line is back, and only then says it is ready."""

from __future__ import annotations

import pytest

from tests.faults.amqp_frames import (
    BASIC_CONSUME_OK,
    CHANNEL_OPEN_OK,
    QUEUE_DECLARE_OK,
    FrameTripwire,
    method,
)
from tests.faults.invariants import SystemView, converge
from tests.faults.system import FaultSystem, Shop, Story
from tests.support.tokens import Tokens
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration

# Each step of attaching, by the broker's answer to it that the line loses.
STEPS = {
    "connection opened": method(10, 41),
    "channel opened": CHANNEL_OPEN_OK,
    "queue declared": QUEUE_DECLARE_OK,
    "consumer started": BASIC_CONSUME_OK,
}


@pytest.mark.parametrize("step", list(STEPS))
@pytest.mark.parametrize("when", ["first attach", "after a reconnect"])
async def test_broker_line_drops_while_the_service_attaches(
    system: FaultSystem, view: SystemView, tokens: Tokens, when: str, step: str
) -> None:
    await system.start_in_process("delivery")  # its queue takes the orders service's events
    line = system.lines.orders_broker
    tripwire = FrameTripwire(STEPS[step], armed=when == "first attach")
    line.reply_watcher = tripwire.watcher
    orders = await system.start_in_process("orders", attached=when != "first attach")
    if when == "after a reconnect":
        await line.cut()
        tripwire.arm()
        line.mend()

    # The broker's answer to that step never reaches the service, and the line drops right there.
    await wait_for(line.held.is_set, timeout=20, message=f"the broker's answer to: {step}")
    await line.cut()
    ready_while_cut = (await orders.client.get("/health/ready")).status_code
    line.mend()

    async def ready() -> bool:
        return (await orders.client.get("/health/ready")).status_code == 200

    await wait_for(ready, timeout=30, message="the orders service to be ready once the line was back")
    assert ready_while_cut == 503
    # Attached for real, both ways: a paid order's cancel goes out, and the answer comes back in.
    shop = Shop(tokens, [orders.client])
    await shop.stream([Story.CANCELED], every=0.0)
    await converge(view, shop.stories)
