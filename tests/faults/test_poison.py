"""Hostile and broken messages among the order events: each parked with its reason, the good ones flow."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter

import pytest

from deliveryhub_contracts.topology import Names
from deliveryhub_kit.dead_letters import DeadLetterBox
from deliveryhub_kit.settings import ServiceSettings
from tests.faults.hostile import Hostile, every_kind
from tests.faults.invariants import SystemView, converge
from tests.faults.report import ScenarioRecord
from tests.faults.system import FaultSystem, Shop, mixed_stories
from tests.support.broker import Amqp
from tests.support.tokens import Tokens
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration

ORDERS = 40
# More copies of each kind than a consumer holds at once: a kind that stalled it would show.
PREFETCH = int(ServiceSettings.model_fields["consumer_prefetch"].default)
COPIES = PREFETCH + 6


async def test_hostile_messages_are_dead_lettered_while_good_ones_flow(
    system: FaultSystem, view: SystemView, tokens: Tokens, amqp: Amqp, scenario: ScenarioRecord
) -> None:
    orders = await system.start_in_process("orders")
    delivery = await system.start_in_process("delivery")
    shop = Shop(tokens, [orders.client])
    stream = asyncio.create_task(shop.stream(mixed_stories(ORDERS), every=0.05))
    created_queue, paid_queue = system.legacy_queues
    queue_of = {
        "events": system.queue("delivery"),
        "legacy created": created_queue,
        "legacy paid": paid_queue,
    }

    kinds = every_kind()
    injected: dict[str, Hostile] = {}
    started_at = time.monotonic()
    for number, hostile in enumerate(kinds):
        # Spread among the good orders, as a broken producer would send them.
        placed_before = number * ORDERS // len(kinds)
        await wait_for(lambda: shop.placed >= placed_before, timeout=30, message="good orders")  # noqa: B023
        copies = [
            hostile.message_id(f"hostile-{number}-{copy}-{uuid.uuid4().hex[:6]}") for copy in range(COPIES)
        ]
        # All of a kind's copies at once, each confirmed, as a flooding producer sends them.
        await asyncio.gather(*(_inject(amqp, system, queue_of, hostile, message_id) for message_id in copies))
        injected |= dict.fromkeys(copies, hostile)
    await stream

    dead_letter_queues = [Names.dead_letter_queue(queue) for queue in queue_of.values()]

    async def all_parked() -> bool:
        counts = [await amqp.message_count(queue) for queue in dead_letter_queues]
        assert sum(counts) >= len(injected), f"{sum(counts)} of {len(injected)} dead-lettered"
        return True

    await wait_for(all_parked, timeout=60, message="every hostile message to be dead-lettered")
    parked_seconds = time.monotonic() - started_at
    letters = await DeadLetterBox(view.connection).browse(dead_letter_queues)
    assert Counter(letter.message_id for letter in letters) == Counter(list(injected)), "each exactly once"
    wrong: list[str] = []
    reasons: dict[str, str] = {}
    for letter in letters:
        hostile = injected[letter.message_id]
        if letter.error_class != hostile.error_class or hostile.reason_says not in letter.reason:
            wrong.append(f"{hostile.kind}: {letter.error_class}: {letter.reason[:160]}")
        assert letter.original_queue == queue_of[hostile.target]
        reasons[hostile.kind] = f"{letter.error_class}: {letter.reason[:100]}"
    assert not wrong, sorted(set(wrong))

    events_parked = [message_id for message_id, hostile in injected.items() if hostile.target == "events"]
    converge_seconds = await converge(view, shop.stories, events_parked, timeout=90)
    assert not shop.failures(), shop.failures()

    # Nothing held unsettled: once the consumers let go, every consuming queue is empty.
    await delivery.stop()
    for queue in queue_of.values():
        assert await amqp.message_count(queue) == 0, f"{queue} kept messages unsettled"

    scenario.title = "Hostile and broken messages among good ones"
    scenario.fault = (
        f"{len(kinds)} kinds of bad message, {COPIES} copies each (the consumer holds {PREFETCH} at once), "
        "published among the order events and on the teaching design's queues"
    )
    scenario.fault_seconds = None
    scenario.orders = ORDERS
    scenario.checked = [
        "each bad message dead-lettered exactly once, with its error class and reason",
        "every good order converged meanwhile",
        "no message left unsettled: the consuming queues are empty once the consumer stops",
    ]
    scenario.converge_seconds = round(converge_seconds, 1)
    scenario.figure("kinds of bad message", len(kinds))
    scenario.figure("bad messages", len(injected))
    scenario.figure("largest (bytes)", max(len(hostile.body) for hostile in kinds))
    scenario.figure("seconds from the first bad message until all were parked", parked_seconds)
    for kind, reason in reasons.items():
        scenario.figure(f"dead letter: {kind}", reason)


async def _inject(
    amqp: Amqp, system: FaultSystem, queue_of: dict[str, str], hostile: Hostile, message_id: str
) -> None:
    headers = dict(hostile.headers)
    if hostile.target == "events":
        await amqp.publish(
            hostile.routing_key,
            hostile.body,
            exchange=system.names.exchange,
            message_id=message_id,
            headers=headers,
        )
    else:
        await amqp.publish(queue_of[hostile.target], hostile.body, message_id=message_id, headers=headers)
