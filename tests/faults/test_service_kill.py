"""The delivery service, a real process, killed (SIGKILL) or stopped (SIGTERM) while events stream in."""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from collections import Counter

import pytest

from tests.faults.invariants import SystemView, converge
from tests.faults.processes import ServiceProcess
from tests.faults.report import ScenarioRecord
from tests.faults.system import FaultSystem, Shop, mixed_stories
from tests.support.tokens import Tokens
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration

ORDERS = 60
# uvicorn's graceful timeout (10 s) bounds the requests; the consumers' stop bounds the messages.
SIGTERM_EXIT_BOUND_SECONDS = 12.0


def outcomes(replica: ServiceProcess, lifetime: int, outcome: str) -> Counter[uuid.UUID]:
    """How often each event was settled with `outcome` in one lifetime, by the process's log."""
    settled = replica.settled_events(lifetime)
    return Counter(
        {uuid.UUID(event_id): count for (event_id, said), count in settled.items() if said == outcome}
    )


async def _stream_until_mid_way(
    system: FaultSystem, view: SystemView, tokens: Tokens
) -> tuple[Shop, ServiceProcess, asyncio.Task[None]]:
    orders = await system.start_in_process("orders")
    delivery = system.process("delivery", "delivery")
    await delivery.start()
    shop = Shop(tokens, [orders.client])
    stream = asyncio.create_task(shop.stream(mixed_stories(ORDERS), every=0.05))

    async def mid_way() -> bool:
        return len(await view.deliveries()) >= ORDERS // 3

    await wait_for(mid_way, timeout=30, message="the delivery service to be mid-stream")
    return shop, delivery, stream


async def test_delivery_killed_with_sigkill_mid_stream_and_restarted(
    system: FaultSystem, view: SystemView, tokens: Tokens, scenario: ScenarioRecord
) -> None:
    shop, delivery, stream = await _stream_until_mid_way(system, view, tokens)
    killed_at = time.monotonic()
    await delivery.kill()
    deliveries_at_kill = len(await view.deliveries())
    await delivery.start()
    back_at = time.monotonic()
    await stream
    converge_seconds = await converge(view, shop.stories)

    assert not shop.failures(), shop.failures()
    applied_before, applied_after = outcomes(delivery, 1, "applied"), outcomes(delivery, 2, "applied")
    assert applied_before, "the kill came before any event"
    assert applied_after, "the kill came after the last event"
    # The inbox is the judge (checked above); a killed process's log may lack its very last lines.
    assert not set(applied_before) & set(applied_after), "an event was applied in both lifetimes"

    scenario.title = "Delivery service killed with SIGKILL mid-stream, restarted"
    scenario.fault = "SIGKILL to the delivery process while order events stream in; started again at once"
    scenario.fault_seconds = round(back_at - killed_at, 1)
    scenario.orders = ORDERS
    scenario.checked = ["no event applied in both lifetimes (by the logs)"]
    scenario.converge_seconds = round(converge_seconds, 1)
    scenario.figure("deliveries when killed", deliveries_at_kill)
    scenario.figure("events applied before the kill", sum(applied_before.values()))
    scenario.figure("events applied after the restart", sum(applied_after.values()))
    scenario.figure("redelivered events found in the inbox", sum(outcomes(delivery, 2, "duplicate").values()))
    scenario.figure("down (kill to ready again, s)", back_at - killed_at)


async def test_delivery_stopped_with_sigterm_mid_stream_and_restarted(
    system: FaultSystem, view: SystemView, tokens: Tokens, scenario: ScenarioRecord
) -> None:
    shop, delivery, stream = await _stream_until_mid_way(system, view, tokens)
    stopped_at = time.monotonic()
    exit_seconds, exit_code = await delivery.terminate()
    await delivery.start()
    back_at = time.monotonic()
    await stream
    converge_seconds = await converge(view, shop.stories)

    assert not shop.failures(), shop.failures()
    # uvicorn finishes its shutdown, then raises the signal again so that its parent sees it.
    assert exit_code in (0, -signal.SIGTERM), delivery.log_tail(lifetime=1)
    events = [str(record.get("event")) for record in delivery.log_records(1)]
    assert "Application shutdown complete." in events, delivery.log_tail(lifetime=1)
    assert exit_seconds < SIGTERM_EXIT_BOUND_SECONDS
    first, second = outcomes(delivery, 1, "applied"), outcomes(delivery, 2, "applied")
    assert first, "the stop came before any event"
    assert second, "the stop came after the last event"
    applied = first + second
    # A graceful stop leaves a complete log: every event applied exactly once over both lifetimes...
    assert set(applied) == await view.outbox_event_ids("orders")
    assert set(applied.values()) == {1}
    # ...and nothing it applied was left unacknowledged, to come back as a duplicate.
    redelivered = outcomes(delivery, 2, "duplicate")
    assert not redelivered, f"{sum(redelivered.values())} applied events were not acked before the exit"
    assert not [event for event in events if "still in hand at shutdown" in event]

    scenario.title = "Delivery service stopped with SIGTERM mid-stream, restarted"
    scenario.fault = (
        "SIGTERM to the delivery process while order events stream in; started again after it exits"
    )
    scenario.fault_seconds = round(back_at - stopped_at, 1)
    scenario.orders = ORDERS
    scenario.checked = [
        f"the process completed its shutdown and exited within {SIGTERM_EXIT_BOUND_SECONDS:g} s",
        "every event applied exactly once over both lifetimes (by the logs)",
        "no applied event redelivered (all acked before the exit)",
    ]
    scenario.converge_seconds = round(converge_seconds, 1)
    scenario.figure("exit after SIGTERM (s)", exit_seconds)
    scenario.figure(
        "exit status", "0" if exit_code == 0 else f"signal {-exit_code} after a complete shutdown"
    )
    scenario.figure("events applied before the stop", sum(first.values()))
    scenario.figure("events applied after the restart", sum(second.values()))
    scenario.figure("redelivered events found in the inbox", sum(redelivered.values()))
    scenario.figure("down (SIGTERM to ready again, s)", back_at - stopped_at)
