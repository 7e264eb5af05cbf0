"""The orders process killed after the broker confirmed its events and before its relay marked them."""

from __future__ import annotations

import time
import uuid
from collections import Counter

import pytest

from tests.faults.amqp_frames import ConfirmTripwire
from tests.faults.invariants import SystemView, converge
from tests.faults.report import ScenarioRecord
from tests.faults.system import FaultSystem, Shop, mixed_stories
from tests.support.broker import Amqp
from tests.support.tokens import Tokens
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration

ORDERS = 30


async def test_relay_killed_between_the_confirm_and_the_mark(
    system: FaultSystem, view: SystemView, tokens: Tokens, amqp: Amqp, scenario: ScenarioRecord
) -> None:
    line = system.lines.orders_broker
    tripwire = ConfirmTripwire()
    line.reply_watcher = tripwire.watcher
    tap = await amqp.tap("order.*")  # a copy of every order event the broker takes
    delivery = await system.start_in_process("delivery")
    orders = system.process("orders", "orders")
    await orders.start()

    # The events of a batch of orders wait in the outbox while the orders service cannot publish.
    await line.cut()
    shop = Shop(tokens, [orders.client])
    await shop.stream(mixed_stories(ORDERS), every=0.0)
    backlog = await view.unpublished("orders")
    assert backlog == len(await view.outbox_event_ids("orders"))

    # The first confirm of the relay's batch is held on the line, and the process dies right there.
    tripwire.arm()
    line.mend()
    await wait_for(line.held.is_set, timeout=30, message="the broker's first confirm")
    await orders.kill()
    killed_at = time.monotonic()
    # The orders outbox alone: the delivery service may be writing its answers to the events meanwhile.
    assert await view.unpublished("orders") == backlog, "a row marked, though the relay died before"
    taken_before_restart = await amqp.message_count(tap.queue.name)

    await orders.start()
    restarted_at = time.monotonic()
    converge_seconds = await converge(view, shop.stories)

    published = Counter[str]()
    while (message := await tap.get()) is not None:
        published[str(message.message_id)] += 1
    duplicates = sum(count - 1 for count in published.values())
    events = await view.outbox_event_ids("orders")
    assert {uuid.UUID(event_id) for event_id in published} == events
    assert max(published.values()) == 2
    assert duplicates >= 1
    # Each duplicate reached the consumer, which applied every event once and found the copies done.
    assert delivery.consumed("applied") == len(events)
    assert delivery.consumed("duplicate") == duplicates

    scenario.title = "Relay killed between the broker's confirm and marking the row"
    scenario.fault = (
        "SIGKILL to the orders process the moment the broker's first publisher confirm of a backlog batch "
        "reached its line (the confirm held there), then restarted"
    )
    scenario.fault_seconds = round(restarted_at - killed_at, 1)
    scenario.orders = ORDERS
    scenario.checked = [
        "no row marked published by the killed relay",
        "every event published, some twice, none more",
        "the consumer applied each event once and settled each copy as a duplicate",
    ]
    scenario.converge_seconds = round(converge_seconds, 1)
    scenario.figure("events in the outbox backlog", backlog)
    scenario.figure("taken by the broker before the kill", taken_before_restart)
    scenario.figure("published twice (duplicates)", duplicates)
    scenario.figure("applied", int(delivery.consumed("applied")))
    scenario.figure("settled as duplicates by the inbox", int(delivery.consumed("duplicate")))
