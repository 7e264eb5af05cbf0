"""The delivery service consuming order events from the real broker into the real database."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import pytest

from deliveryhub_contracts.events import ORDERS_SOURCE
from deliveryhub_contracts.topology import Names, legacy_queues
from deliveryhub_delivery.models import Delivery
from deliveryhub_kit.db import Database
from deliveryhub_kit.outbox import Outbox, OutboxRelay
from deliveryhub_kit.rabbitmq import RabbitBroker
from tests.support.broker import Amqp, BrokerNamespace, PublishEvent
from tests.support.delivery import DeliveryRecords, RunningDelivery, Settle, StartDelivery
from tests.support.events import ADDRESS, DELIVERY_DATE, OrderEvents
from tests.support.ports import unused_url
from tests.support.stand_in import StandInOutbox
from tests.support.tokens import Tokens
from tests.support.waiting import WaitFor

pytestmark = pytest.mark.integration

COURIER_ZUEV = uuid.UUID("31babbb3-5541-4a2a-8201-537cdff25fed")


async def test_order_created_makes_a_created_delivery_with_the_orders_address_and_date(
    delivery: RunningDelivery,
    publish_event: PublishEvent,
    order_events: OrderEvents,
    delivery_records: DeliveryRecords,
    wait_for: WaitFor,
) -> None:
    order_id, customer_id = uuid.uuid4(), uuid.uuid4()
    date = datetime(2031, 2, 3, 9, 15, tzinfo=UTC)

    await publish_event(
        order_events.created(order_id, address="Омск, улица Ленина, 5", date=date, customer_id=customer_id)
    )

    created = await wait_for(lambda: delivery_records.get(order_id), message="the delivery")
    assert created.status == "created"
    assert created.address == "Омск, улица Ленина, 5"
    assert created.date == date
    assert created.customer_id == customer_id
    assert created.order_version == 1
    assert created.deliveryman_id is None


async def test_order_paid_activates_the_delivery(
    delivery: RunningDelivery,
    publish_event: PublishEvent,
    order_events: OrderEvents,
    delivery_records: DeliveryRecords,
    wait_for: WaitFor,
) -> None:
    order_id = uuid.uuid4()

    await publish_event(order_events.created(order_id))
    await publish_event(order_events.paid(order_id, version=2))

    async def activated() -> Delivery | None:
        found = await delivery_records.get(order_id)
        return found if found is not None and found.status == "activated" else None

    paid = await wait_for(activated, message="the delivery to be activated")
    assert paid.activated_at is not None
    assert paid.order_version == 2


async def test_order_canceled_cancels_the_delivery_with_its_reason(
    delivery: RunningDelivery,
    publish_event: PublishEvent,
    order_events: OrderEvents,
    delivery_records: DeliveryRecords,
    settle_order_events: Settle,
) -> None:
    order_id = uuid.uuid4()

    await publish_event(order_events.created(order_id))
    await publish_event(order_events.paid(order_id, version=2))
    await publish_event(order_events.canceled(order_id, version=3, reason="out of stock"))
    await settle_order_events()

    canceled = await delivery_records.get(order_id)
    assert canceled is not None
    assert canceled.status == "canceled"
    assert canceled.cancel_reason == "out of stock"


async def test_the_same_event_delivered_twice_is_applied_once(
    delivery: RunningDelivery,
    publish_event: PublishEvent,
    order_events: OrderEvents,
    delivery_records: DeliveryRecords,
    settle_order_events: Settle,
    amqp: Amqp,
) -> None:
    order_id = uuid.uuid4()
    event = order_events.created(order_id)

    await publish_event(event)
    await publish_event(event)
    sentinel = await settle_order_events()

    assert await delivery_records.count_deliveries() == 2  # the order's and the sentinel's
    assert (await delivery_records.get(order_id)) is not None
    assert (await delivery_records.get(sentinel)) is not None
    inbox = await delivery_records.inbox_ids()
    assert inbox.count(event.id) == 1
    assert len(inbox) == 2
    # Stopped, a consumer gives back what it has not acked: an empty queue means all were acked.
    await delivery.stop()
    assert await amqp.message_count(delivery.queue) == 0
    assert await amqp.message_count(delivery.dead_letter_queue) == 0


async def test_paid_before_created_ends_activated_with_the_right_address_and_date(
    delivery: RunningDelivery,
    publish_event: PublishEvent,
    order_events: OrderEvents,
    delivery_records: DeliveryRecords,
    settle_order_events: Settle,
) -> None:
    order_id = uuid.uuid4()
    date = datetime(2030, 12, 31, 18, 0, tzinfo=UTC)

    await publish_event(order_events.paid(order_id, version=2, address="Тула, Советская, 3", date=date))
    await publish_event(order_events.created(order_id, version=1, address="Тула, Советская, 3", date=date))
    await settle_order_events()

    converged = await delivery_records.get(order_id)
    assert converged is not None
    assert converged.status == "activated"
    assert converged.address == "Тула, Советская, 3"
    assert converged.date == date
    assert converged.order_version == 2


async def test_a_stale_created_after_canceled_leaves_the_delivery_canceled(
    delivery: RunningDelivery,
    publish_event: PublishEvent,
    order_events: OrderEvents,
    delivery_records: DeliveryRecords,
    settle_order_events: Settle,
    tokens: Tokens,
) -> None:
    order_id = uuid.uuid4()

    await publish_event(order_events.canceled(order_id, version=2, reason="customer canceled"))
    await settle_order_events()
    # Known only as canceled, with no address yet: kept, but not shown.
    hidden = await delivery.client.get(f"/api/delivery/{order_id}", headers=tokens.manager())
    assert hidden.status_code == 404

    await publish_event(order_events.created(order_id, version=1))
    await publish_event(order_events.paid(order_id, version=2))
    await settle_order_events()

    stays = await delivery_records.get(order_id)
    assert stays is not None
    assert stays.status == "canceled"
    assert stays.address == ADDRESS
    assert stays.date == DELIVERY_DATE
    shown = await delivery.client.get(f"/api/delivery/{order_id}", headers=tokens.manager())
    assert shown.status_code == 200
    assert shown.json()["status"] == "canceled"


async def finished_delivery(
    delivery: RunningDelivery,
    publish_event: PublishEvent,
    order_events: OrderEvents,
    settle_order_events: Settle,
    tokens: Tokens,
) -> uuid.UUID:
    """A paid order's delivery, appointed to Зуев and finished (delivery version 4)."""
    order_id = uuid.uuid4()
    await publish_event(order_events.created(order_id))
    await publish_event(order_events.paid(order_id, version=2))
    await settle_order_events()
    manager = tokens.manager()
    appointed = await delivery.client.post(
        f"/api/delivery/{order_id}/appoint", json={"deliveryman_id": str(COURIER_ZUEV)}, headers=manager
    )
    assert appointed.status_code == 200
    finished = await delivery.client.post(f"/api/delivery/{order_id}/finish", headers=manager)
    assert finished.status_code == 200
    return order_id


async def test_a_canceled_order_does_not_undo_a_finished_delivery(
    delivery: RunningDelivery,
    publish_event: PublishEvent,
    order_events: OrderEvents,
    delivery_records: DeliveryRecords,
    settle_order_events: Settle,
    tokens: Tokens,
) -> None:
    order_id = await finished_delivery(delivery, publish_event, order_events, settle_order_events, tokens)

    await publish_event(order_events.canceled(order_id, version=3))
    await settle_order_events()

    done = await delivery_records.get(order_id)
    assert done is not None
    assert done.status == "done"


async def test_a_requested_cancel_cancels_an_open_delivery_and_announces_it(
    delivery: RunningDelivery,
    publish_event: PublishEvent,
    order_events: OrderEvents,
    delivery_records: DeliveryRecords,
    amqp: Amqp,
) -> None:
    tap = await amqp.tap("delivery.*")
    order_id = uuid.uuid4()
    await publish_event(order_events.created(order_id))
    await publish_event(order_events.paid(order_id, version=2))

    await publish_event(order_events.cancel_requested(order_id, version=3))

    [message] = await tap.take(1)
    event = json.loads(message.body)
    assert message.routing_key == "delivery.canceled"
    assert event["data"] == {"order_id": str(order_id), "reason": "canceled by the customer", "version": 3}
    canceled = await delivery_records.get(order_id)
    assert canceled is not None
    assert canceled.status == "canceled"


async def test_a_requested_cancel_of_a_finished_delivery_changes_nothing(
    delivery: RunningDelivery,
    publish_event: PublishEvent,
    order_events: OrderEvents,
    delivery_records: DeliveryRecords,
    settle_order_events: Settle,
    tokens: Tokens,
) -> None:
    order_id = await finished_delivery(delivery, publish_event, order_events, settle_order_events, tokens)
    announced = [row.routing_key for row in await delivery_records.outbox()]
    assert announced == ["delivery.appointed", "delivery.finished"]

    await publish_event(order_events.cancel_requested(order_id, version=3))
    await settle_order_events()

    done = await delivery_records.get(order_id)
    assert done is not None
    assert (done.status, done.version) == ("done", 4)
    # The orders service learns the cancel came too late from delivery.finished, sent already.
    assert [row.routing_key for row in await delivery_records.outbox()] == announced


def _valid_envelope(order_events: OrderEvents, **changes: object) -> bytes:
    attributes = json.loads(order_events.created(uuid.uuid4()).to_json())
    attributes.update(changes)
    return json.dumps(attributes).encode()


@pytest.mark.parametrize(
    ("case", "routing_key", "reason"),
    [
        ("not-json", "order.created", "body is not JSON"),
        ("unknown-type", "order.refunded", "no handler for event type 'deliveryhub.order.refunded'"),
        ("invalid-payload", "order.created", "invalid order.created data"),
    ],
)
async def test_a_malformed_message_goes_to_the_dead_letter_queue_with_its_reason(
    delivery: RunningDelivery,
    order_events: OrderEvents,
    delivery_records: DeliveryRecords,
    settle_order_events: Settle,
    amqp: Amqp,
    wait_for: WaitFor,
    case: str,
    routing_key: str,
    reason: str,
) -> None:
    body = {
        "not-json": b"order created, honestly",
        "unknown-type": _valid_envelope(order_events, type="deliveryhub.order.refunded"),
        "invalid-payload": _valid_envelope(order_events, data={"order_id": str(uuid.uuid4())}),
    }[case]

    await amqp.publish(routing_key, body, exchange=delivery.names.exchange, message_id=f"bad-{case}")

    dead = await wait_for(lambda: amqp.get(delivery.dead_letter_queue), message="the dead letter")
    assert delivery.dead_letter_queue == f"{delivery.queue}.dead-letter"
    assert dead.body == body
    assert dead.message_id == f"bad-{case}"
    assert reason in str(dead.headers["x-death-reason"])
    assert dead.headers["x-error-class"] == "MalformedEvent"
    assert dead.headers["x-original-queue"] == delivery.queue
    await settle_order_events()
    assert await delivery_records.count_deliveries() == 1  # the sentinel's only
    # Stopped, a consumer gives back what it has not acked: an empty queue means all were acked.
    await delivery.stop()
    assert await amqp.message_count(delivery.queue) == 0
    assert await amqp.message_count(delivery.dead_letter_queue) == 0


async def test_a_relay_crash_between_publish_and_mark_still_makes_exactly_one_delivery(
    delivery: RunningDelivery,
    stand_in_database: Database,
    rabbit_broker: RabbitBroker,
    broker_namespace: BrokerNamespace,
    order_events: OrderEvents,
    delivery_records: DeliveryRecords,
    settle_order_events: Settle,
    amqp: Amqp,
) -> None:
    tap = await amqp.tap("order.*")
    order_id = uuid.uuid4()
    async with stand_in_database.transaction() as session:
        Outbox(session, StandInOutbox, ORDERS_SOURCE).emit(
            order_events.created_payload(order_id), subject=str(order_id)
        )
    relay = OutboxRelay(stand_in_database, rabbit_broker, StandInOutbox, exchange=broker_namespace.exchange)

    async with stand_in_database.sessionmaker() as session:
        await session.begin()
        assert await relay.relay_in(session) == 1
        await session.rollback()  # the relay died before its mark was committed
    assert await relay.relay_batch() == 1  # and, restarted, publishes the row again
    await settle_order_events()

    first, second = await tap.take(2)
    assert first.message_id == second.message_id
    event_id = uuid.UUID(str(first.message_id))
    made = await delivery_records.get(order_id)
    assert made is not None
    assert made.status == "created"
    assert await delivery_records.count_deliveries() == 2  # the order's and the sentinel's
    inbox = await delivery_records.inbox_ids()
    assert inbox.count(event_id) == 1
    assert len(inbox) == 2
    await delivery.stop()
    assert await amqp.message_count(delivery.queue) == 0
    assert await amqp.message_count(delivery.dead_letter_queue) == 0


async def test_with_the_database_down_an_event_is_neither_acked_nor_dead_lettered(
    start_delivery: StartDelivery,
    publish_event: PublishEvent,
    order_events: OrderEvents,
    amqp: Amqp,
    wait_for: WaitFor,
) -> None:
    down = await start_delivery(database_url=unused_url("postgresql"))
    await publish_event(order_events.created(uuid.uuid4()))

    async def in_hand() -> bool:
        return await amqp.message_count(down.queue) == 0

    await wait_for(in_hand, message="the consumer to take the event")
    await down.stop()

    async def given_back() -> bool:
        return await amqp.message_count(down.queue) == 1

    # Given back to the queue for when the database is back; nothing parked, nothing lost.
    await wait_for(given_back, message="the event to be back in the queue")
    assert await amqp.message_count(down.dead_letter_queue) == 0


async def test_legacy_queues_create_and_activate_deliveries(
    start_delivery: StartDelivery,
    broker_namespace: BrokerNamespace,
    delivery_records: DeliveryRecords,
    amqp: Amqp,
    wait_for: WaitFor,
) -> None:
    await start_delivery(legacy=True)
    created_queue, paid_queue = legacy_queues(broker_namespace.legacy_prefix)
    order_id = uuid.uuid4()

    body = {"order_id": str(order_id), "date": "2030-05-17T14:30:00", "address": "Пермь, Ленина, 50"}
    await amqp.publish(created_queue, json.dumps(body).encode())

    created = await wait_for(lambda: delivery_records.get(order_id), message="the legacy delivery")
    assert created.status == "created"
    assert created.address == "Пермь, Ленина, 50"
    assert created.date == datetime(2030, 5, 17, 14, 30, tzinfo=UTC)  # a naive date is taken as UTC

    await amqp.publish(paid_queue, json.dumps({"id": str(order_id)}).encode())

    async def activated() -> bool:
        found = await delivery_records.get(order_id)
        return found is not None and found.status == "activated"

    await wait_for(activated, message="the legacy delivery to be activated")


async def test_legacy_paid_before_created_converges_to_activated(
    start_delivery: StartDelivery,
    broker_namespace: BrokerNamespace,
    delivery_records: DeliveryRecords,
    amqp: Amqp,
    wait_for: WaitFor,
) -> None:
    await start_delivery(legacy=True)
    created_queue, paid_queue = legacy_queues(broker_namespace.legacy_prefix)
    order_id = uuid.uuid4()

    await amqp.publish(paid_queue, json.dumps({"id": str(order_id)}).encode())
    await wait_for(lambda: delivery_records.get(order_id), message="the paid order's record")
    body = {"order_id": str(order_id), "date": "2030-05-17T14:30:00+03:00", "address": "Уфа, Ленина, 2"}
    await amqp.publish(created_queue, json.dumps(body).encode())

    async def converged() -> Delivery | None:
        found = await delivery_records.get(order_id)
        return found if found is not None and found.address is not None else None

    delivery = await wait_for(converged, message="the address to arrive")
    assert delivery.status == "activated"
    assert delivery.address == "Уфа, Ленина, 2"
    assert delivery.date == datetime(2030, 5, 17, 11, 30, tzinfo=UTC)


async def test_a_legacy_message_delivered_twice_is_applied_once(
    start_delivery: StartDelivery,
    broker_namespace: BrokerNamespace,
    delivery_records: DeliveryRecords,
    amqp: Amqp,
    wait_for: WaitFor,
) -> None:
    legacy = await start_delivery(legacy=True)
    created_queue, _ = legacy_queues(broker_namespace.legacy_prefix)
    order_id, sentinel = uuid.uuid4(), uuid.uuid4()
    body = json.dumps({"order_id": str(order_id), "date": "2030-05-17T14:30:00", "address": "Сочи"})

    # A redelivery, or the producer publishing its message again, carries the same message id.
    await amqp.publish(created_queue, body.encode(), message_id="legacy-created-1")
    await amqp.publish(created_queue, body.encode(), message_id="legacy-created-1")
    sentinel_body = {"order_id": str(sentinel), "date": "2030-05-17T14:30:00", "address": "Сочи"}
    await amqp.publish(created_queue, json.dumps(sentinel_body).encode())
    await wait_for(lambda: delivery_records.get(sentinel), message="the sentinel's delivery")

    assert await delivery_records.count_deliveries() == 2
    assert len(await delivery_records.inbox_ids()) == 2
    # Stopped, a consumer gives back what it has not acked: an empty queue means all were acked.
    await legacy.stop()
    assert await amqp.message_count(created_queue) == 0
    assert await amqp.message_count(Names.dead_letter_queue(created_queue)) == 0


async def test_a_malformed_legacy_message_goes_to_its_dead_letter_queue(
    start_delivery: StartDelivery,
    broker_namespace: BrokerNamespace,
    delivery_records: DeliveryRecords,
    amqp: Amqp,
    wait_for: WaitFor,
) -> None:
    await start_delivery(legacy=True)
    _, paid_queue = legacy_queues(broker_namespace.legacy_prefix)

    await amqp.publish(paid_queue, b'{"order": "no id here"}')

    dead_letters = Names.dead_letter_queue(paid_queue)
    dead = await wait_for(lambda: amqp.get(dead_letters), message="the dead letter")
    assert dead.body == b'{"order": "no id here"}'
    assert dead.headers["x-error-class"] == "MalformedEvent"
    assert "invalid legacy.order_paid message" in str(dead.headers["x-death-reason"])
    assert dead.headers["x-original-queue"] == paid_queue
    assert await delivery_records.count_deliveries() == 0
