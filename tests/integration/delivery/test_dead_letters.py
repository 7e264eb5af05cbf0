"""`deliveryhub dead-letters` against the delivery service's real queues."""

from __future__ import annotations

import asyncio
import uuid
from typing import TYPE_CHECKING

import pytest

from deliveryhub_cli.dead_letters import run_dead_letters
from tests.support.broker import AMQP_URL
from tests.support.delivery import DeliveryRecords, RunningDelivery, Settle
from tests.support.events import OrderEvents

if TYPE_CHECKING:
    from tests.support.broker import Amqp, BrokerNamespace, PublishEvent
    from tests.support.waiting import WaitFor

pytestmark = pytest.mark.integration


async def dead_letters(
    namespace: BrokerNamespace, action: str, *, answer: str = "", **options: object
) -> int:
    """Run the command as an operator would, on a thread of its own (it runs its own event loop)."""
    return await asyncio.to_thread(
        run_dead_letters,
        action=action,
        amqp_url=AMQP_URL,
        broker_prefix=namespace.prefix,
        legacy_prefix=namespace.legacy_prefix,
        queue=None,
        ask=lambda _: answer,
        **options,  # type: ignore[arg-type]
    )


async def test_list_shows_dead_letters_without_consuming_them(
    delivery: RunningDelivery,
    broker_namespace: BrokerNamespace,
    amqp: Amqp,
    wait_for: WaitFor,
    capsys: pytest.CaptureFixture[str],
) -> None:
    await amqp.publish(delivery.queue, b"{not json", message_id="poison-1")
    await wait_for(lambda: amqp.message_count(delivery.dead_letter_queue), message="the dead letter")

    assert await dead_letters(broker_namespace, "list") == 0
    listed = capsys.readouterr().out
    assert "poison-1" in listed
    assert "MalformedEvent: body is not JSON" in listed
    assert delivery.dead_letter_queue in listed
    assert await dead_letters(broker_namespace, "list") == 0
    assert await amqp.message_count(delivery.dead_letter_queue) == 1


async def test_listing_again_and_again_never_uses_a_dead_letter_up(
    delivery: RunningDelivery, broker_namespace: BrokerNamespace, amqp: Amqp, wait_for: WaitFor
) -> None:
    # Listing hands each dead letter out and takes it back: RabbitMQ 4 counts that as a delivery,
    # and by default drops a quorum queue's message after 20 of them.
    await amqp.publish(delivery.queue, b"{not json", message_id="poison-kept")
    await wait_for(lambda: amqp.message_count(delivery.dead_letter_queue), message="the dead letter")

    for _ in range(25):
        assert await dead_letters(broker_namespace, "list") == 0

    assert await amqp.message_count(delivery.dead_letter_queue) == 1


async def test_replaying_an_event_that_was_applied_changes_nothing(
    delivery: RunningDelivery,
    broker_namespace: BrokerNamespace,
    order_events: OrderEvents,
    publish_event: PublishEvent,
    delivery_records: DeliveryRecords,
    settle_order_events: Settle,
    amqp: Amqp,
    wait_for: WaitFor,
    capsys: pytest.CaptureFixture[str],
) -> None:
    order_id = uuid.uuid4()
    created = order_events.created(order_id)
    await publish_event(created)
    await wait_for(lambda: delivery_records.get(order_id), message="the delivery")
    # A copy of the same event that was parked once (say, while a bug was being fixed).
    await amqp.publish(
        delivery.dead_letter_queue,
        created.to_json(),
        message_id=str(created.id),
        headers={"x-original-queue": delivery.queue, "x-death-reason": "a bug", "x-error-class": "Bug"},
    )

    assert await dead_letters(broker_namespace, "replay", message_id=str(created.id)) == 0
    assert "replayed 1 dead letter" in capsys.readouterr().out
    await settle_order_events()

    assert await amqp.message_count(delivery.dead_letter_queue) == 0
    assert await delivery_records.count_deliveries() == 2  # the order's and the sentinel's
    assert (await delivery_records.inbox_ids()).count(created.id) == 1


async def test_replay_needs_to_be_told_which(broker_namespace: BrokerNamespace) -> None:
    assert await dead_letters(broker_namespace, "replay") == 2


async def test_purge_asks_first_and_deletes_only_when_told_yes(
    delivery: RunningDelivery, broker_namespace: BrokerNamespace, amqp: Amqp, wait_for: WaitFor
) -> None:
    await amqp.publish(delivery.queue, b"[]", message_id="poison-2")
    await wait_for(lambda: amqp.message_count(delivery.dead_letter_queue), message="the dead letter")

    assert await dead_letters(broker_namespace, "purge", answer="no") == 1
    assert await amqp.message_count(delivery.dead_letter_queue) == 1
    assert await dead_letters(broker_namespace, "purge", answer="yes") == 0
    assert await amqp.message_count(delivery.dead_letter_queue) == 0
