"""The delivery database cut while its consumer takes order events: nothing acked, nothing parked."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.faults.invariants import SystemView, converge
from tests.faults.report import ScenarioRecord
from tests.faults.system import FaultSystem, Shop, mixed_stories
from tests.support.metrics import counter_total
from tests.support.tokens import Tokens
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration

ORDERS = 60
CUT_SECONDS = 3.0


async def test_database_cut_while_messages_are_consumed(
    system: FaultSystem, view: SystemView, tokens: Tokens, scenario: ScenarioRecord
) -> None:
    orders = await system.start_in_process("orders")
    delivery = await system.start_in_process("delivery")
    shop = Shop(tokens, [orders.client])
    stories = mixed_stories(ORDERS)
    manager = tokens.manager()
    line = system.lines.delivery_database

    async def cut_the_database() -> dict[str, float]:
        async def consuming() -> bool:
            return len(await view.deliveries()) >= ORDERS // 5

        await wait_for(consuming, timeout=30, message="the consumer to be under way")
        cut_at = time.monotonic()
        await line.cut()
        asked_at = time.monotonic()
        response = await delivery.client.get("/api/delivery/", headers=manager)
        answered_in = time.monotonic() - asked_at
        assert response.status_code == 503, response.text
        assert set(response.json()) == {"error", "detail"}
        await asyncio.sleep(cut_at + CUT_SECONDS - time.monotonic())  # the fault's length
        parked_during_cut = len(await view.dead_letters())
        waiting = await view.amqp.message_count(system.queue("delivery"))
        line.mend()
        return {
            "cut_at": cut_at,
            "mended_at": time.monotonic(),
            "api_answered_in": answered_in,
            "parked_during_cut": parked_during_cut,
            "waiting_at_mend": waiting,
        }

    fault = asyncio.create_task(cut_the_database())
    await shop.stream(stories, every=0.08)
    seen = await fault
    converge_seconds = await converge(view, shop.stories)

    assert not shop.failures(), shop.failures()
    # Not parked during the outage; and none acked unapplied, or the invariant would miss its effect.
    assert seen["parked_during_cut"] == 0
    retried = counter_total(delivery.runtime.metrics.events_retried)
    assert retried > 0, "no message met the outage: the cut proved nothing"
    # A held message's pause follows the outage's length, so consuming resumes soon after the mend.
    assert converge_seconds < CUT_SECONDS + 3, f"{converge_seconds:.1f}s to resume after the mend"

    scenario.title = "Database cut while messages are consumed"
    scenario.fault = "the delivery service's line to PostgreSQL cut while order events stream in, then mended"
    scenario.fault_seconds = round(seen["mended_at"] - seen["cut_at"], 1)
    scenario.orders = ORDERS
    scenario.checked = [
        "the delivery API answered 503 with the error body, fast",
        "no message dead-lettered during the cut, none acked without its effect",
        "consuming resumed within 3 s of the mend",
    ]
    scenario.converge_seconds = round(converge_seconds, 1)
    scenario.figure("API answer during the cut (s)", seen["api_answered_in"])
    scenario.figure("messages held through the cut (applied once it mended)", int(retried))
    scenario.figure("dead letters during the cut", int(seen["parked_during_cut"]))
    scenario.figure("messages waiting in the queue at the mend", int(seen["waiting_at_mend"]))
    scenario.figure("writes answered 2xx (orders)", len(shop.answers))
