"""Poison messages among the order events: each parked with its reason while good ones keep flowing."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import dataclass, replace

import pytest

from deliveryhub_contracts.events import ORDERS_SOURCE, OrderCreated, make_envelope
from deliveryhub_kit.db import utcnow
from tests.conftest import Amqp, Tokens, wait_for
from tests.faults.invariants import SystemView, converge
from tests.faults.report import ScenarioRecord
from tests.faults.system import FaultSystem, Shop, mixed_stories

pytestmark = pytest.mark.integration

ORDERS = 40
HUGE_BYTES = 5 * 1024 * 1024


@dataclass(frozen=True)
class Poison:
    kind: str
    routing_key: str
    body: bytes
    error_class: str
    reason_says: str
    message_id: str = ""


def envelope(event_type: str, data: dict[str, object]) -> bytes:
    """A well-formed CloudEvent from the orders source, whatever its type and data."""
    return json.dumps(
        {
            "specversion": "1.0",
            "id": str(uuid.uuid4()),
            "source": ORDERS_SOURCE,
            "type": event_type,
            "time": utcnow().isoformat(),
            "subject": str(data.get("order_id", "")),
            "datacontenttype": "application/json",
            "data": data,
        }
    ).encode()


def huge_order_created() -> bytes:
    """A valid `order.created` whose address alone is megabytes long."""
    payload = OrderCreated(
        order_id=uuid.uuid4(),
        customer_id=uuid.uuid4(),
        address="x" * HUGE_BYTES,
        date=utcnow(),
        total=1,
        version=1,
    )
    return make_envelope(
        payload, source=ORDERS_SOURCE, subject=str(payload.order_id), time=utcnow()
    ).to_json()


def poisons() -> list[Poison]:
    order_id = str(uuid.uuid4())
    return [
        Poison(
            "malformed JSON", "order.created", b'{"specversion": "1.0", "id": ', "MalformedEvent", "not JSON"
        ),
        Poison(
            "unknown type",
            "order.refunded",
            envelope("deliveryhub.order.refunded", {"order_id": order_id, "version": 2}),
            "MalformedEvent",
            "no handler for event type",
        ),
        Poison(
            "valid envelope, invalid payload",
            "order.paid",
            envelope("deliveryhub.order.paid", {"order_id": order_id, "version": 0, "address": ""}),
            "MalformedEvent",
            "invalid order.paid data",
        ),
        Poison(
            f"huge ({HUGE_BYTES // 1024 // 1024} MB valid order.created)",
            "order.created",
            huge_order_created(),
            "MessageTooLarge",
            "bytes",
        ),
    ]


async def test_poison_messages_are_dead_lettered_while_good_ones_flow(
    system: FaultSystem, view: SystemView, tokens: Tokens, amqp: Amqp, scenario: ScenarioRecord
) -> None:
    orders = await system.start_in_process("orders")
    await system.start_in_process("delivery")
    shop = Shop(tokens, [orders.client])
    stream = asyncio.create_task(shop.stream(mixed_stories(ORDERS), every=0.05))

    async def placed(count: int) -> None:
        await wait_for(lambda: shop.placed >= count, timeout=30, message=f"{count} good orders")

    injected: list[Poison] = []
    for number, poison in enumerate(poisons(), start=1):
        # Spread among the good ones, as a broken producer would send them.
        await placed(number * ORDERS // 5)
        message_id = f"poison-{number}-{uuid.uuid4().hex[:8]}"
        await amqp.publish(
            poison.routing_key, poison.body, exchange=system.names.exchange, message_id=message_id
        )
        injected.append(replace(poison, message_id=message_id))
    last_injected_at = time.monotonic()
    await stream
    converge_seconds = await converge(view, shop.stories, [poison.message_id for poison in injected])

    assert not shop.failures(), shop.failures()
    parked = {letter.message_id: letter for letter in await view.dead_letters()}
    reasons: dict[str, str] = {}
    for poison in injected:
        letter = parked[poison.message_id]
        assert letter.error_class == poison.error_class, (poison.kind, letter)
        assert poison.reason_says in letter.reason, (poison.kind, letter.reason)
        assert letter.original_queue == system.queue("delivery")
        reasons[poison.kind] = f"{letter.error_class}: {letter.reason[:90]}"

    scenario.title = "Poison messages among good ones"
    scenario.fault = "published to the events exchange among the order events: " + "; ".join(
        p.kind for p in injected
    )
    scenario.fault_seconds = None
    scenario.orders = ORDERS
    scenario.checked = [
        "each poison message dead-lettered once, with its error class and reason",
        "every good order converged meanwhile",
    ]
    scenario.converge_seconds = round(converge_seconds, 1)
    scenario.figure("poison messages", len(injected))
    scenario.figure("largest (bytes)", max(len(poison.body) for poison in injected))
    scenario.figure("seconds from the last poison to convergence", time.monotonic() - last_injected_at)
    for kind, reason in reasons.items():
        scenario.figure(f"dead letter: {kind}", reason)
