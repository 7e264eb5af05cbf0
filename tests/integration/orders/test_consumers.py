"""The orders service applying the delivery service's events from the real broker to the real database."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from aio_pika.abc import AbstractIncomingMessage

from deliveryhub_contracts.events import parse_envelope
from tests.support.broker import Amqp, PublishEvent
from tests.support.couriers import LAPTEV, ZUEV
from tests.support.events import DeliveryEvents
from tests.support.orders import Customer, NewCustomer, OrdersRecords, RunningOrders, Settle
from tests.support.waiting import WaitFor

pytestmark = pytest.mark.integration


@pytest.fixture
def customer(new_customer: NewCustomer) -> Customer:
    return new_customer()


async def paid_order(customer: Customer) -> dict[str, Any]:
    placed = await customer.place_order()
    response = await customer.client.post(f"/api/orders/{placed['id']}/pay", headers=customer.headers)
    assert response.status_code == 200, response.text
    paid: dict[str, Any] = response.json()
    return paid


class OrderWatch:
    """Polls one order through the API until it shows what the test waits for."""

    def __init__(self, customer: Customer, order_id: str, wait_for: WaitFor) -> None:
        self._customer = customer
        self._order_id = order_id
        self._wait_for = wait_for

    async def until(self, what: str, **expected: object) -> dict[str, Any]:
        async def shown() -> dict[str, Any] | None:
            order = await self._customer.get_order(self._order_id)
            return order if all(order[key] == value for key, value in expected.items()) else None

        return await self._wait_for(shown, message=what)


async def test_delivery_appointed_shows_the_courier_on_the_order(
    orders: RunningOrders,
    customer: Customer,
    publish_event: PublishEvent,
    delivery_events: DeliveryEvents,
    wait_for: WaitFor,
) -> None:
    order = await paid_order(customer)

    await publish_event(delivery_events.appointed(order["id"], LAPTEV))

    shown = await OrderWatch(customer, order["id"], wait_for).until(
        "the courier on the order", deliveryman={"id": str(LAPTEV.id), "name": LAPTEV.name}
    )
    assert shown["status"] == "paid"


async def test_delivery_finished_delivers_the_order(
    orders: RunningOrders,
    customer: Customer,
    publish_event: PublishEvent,
    delivery_events: DeliveryEvents,
    wait_for: WaitFor,
) -> None:
    order = await paid_order(customer)

    await publish_event(delivery_events.appointed(order["id"], LAPTEV))
    await publish_event(delivery_events.finished(order["id"], LAPTEV))

    delivered = await OrderWatch(customer, order["id"], wait_for).until(
        "the order to be delivered", status="delivered"
    )
    assert delivered["deliveryman"] == {"id": str(LAPTEV.id), "name": LAPTEV.name}


async def test_delivery_canceled_cancels_the_order(
    orders: RunningOrders,
    customer: Customer,
    publish_event: PublishEvent,
    delivery_events: DeliveryEvents,
    orders_records: OrdersRecords,
    wait_for: WaitFor,
) -> None:
    order = await paid_order(customer)

    await publish_event(delivery_events.canceled(order["id"], reason="the address does not exist"))

    await OrderWatch(customer, order["id"], wait_for).until("the order to be canceled", status="canceled")
    stored = await orders_records.get(uuid.UUID(order["id"]))
    assert stored is not None
    assert stored.cancel_reason == "the address does not exist"


async def test_an_unpaid_canceled_order_stays_canceled_when_a_delivery_finishes(
    orders: RunningOrders,
    customer: Customer,
    publish_event: PublishEvent,
    delivery_events: DeliveryEvents,
    settle_delivery_events: Settle,
) -> None:
    order = await customer.place_order()
    canceled = await customer.client.post(f"/api/orders/{order['id']}/cancel", headers=customer.headers)
    assert canceled.status_code == 200, canceled.text

    await publish_event(delivery_events.finished(order["id"]))
    await settle_delivery_events()

    assert (await customer.get_order(order["id"]))["status"] == "canceled"


async def test_a_paid_orders_cancel_is_requested_and_a_finished_delivery_refuses_it(
    orders: RunningOrders,
    customer: Customer,
    publish_event: PublishEvent,
    delivery_events: DeliveryEvents,
    wait_for: WaitFor,
) -> None:
    order = await paid_order(customer)
    requested = await customer.client.post(f"/api/orders/{order['id']}/cancel", headers=customer.headers)
    assert requested.status_code == 202, requested.text
    assert requested.json()["status"] == "canceling"
    assert requested.json()["cancel_requested_at"] is not None

    await publish_event(delivery_events.finished(order["id"]))

    delivered = await OrderWatch(customer, order["id"], wait_for).until(
        "the order to be delivered", status="delivered"
    )
    assert delivered["cancel_refused"].startswith("too late: delivered at ")


async def test_a_paid_orders_requested_cancel_ends_canceled_when_the_delivery_is(
    orders: RunningOrders,
    customer: Customer,
    publish_event: PublishEvent,
    delivery_events: DeliveryEvents,
    wait_for: WaitFor,
) -> None:
    order = await paid_order(customer)
    requested = await customer.client.post(f"/api/orders/{order['id']}/cancel", headers=customer.headers)
    assert requested.status_code == 202, requested.text
    again = await customer.client.post(f"/api/orders/{order['id']}/cancel", headers=customer.headers)
    assert again.status_code == 409
    assert again.json()["error"] == "invalid_transition"

    await publish_event(delivery_events.canceled(order["id"], reason="canceled by the customer"))

    canceled = await OrderWatch(customer, order["id"], wait_for).until(
        "the order to be canceled", status="canceled"
    )
    assert canceled["cancel_refused"] is None


async def test_a_re_appointment_overtaken_by_the_first_appointment_still_shows_the_later_courier(
    orders: RunningOrders,
    customer: Customer,
    publish_event: PublishEvent,
    delivery_events: DeliveryEvents,
    settle_delivery_events: Settle,
) -> None:
    order = await paid_order(customer)

    # Laptev was appointed at delivery version 3, then Zuev at 4; Zuev's event arrives first.
    await publish_event(delivery_events.appointed(order["id"], ZUEV, version=4))
    await publish_event(delivery_events.appointed(order["id"], LAPTEV, version=3))
    await settle_delivery_events()

    assert (await customer.get_order(order["id"]))["deliveryman"] == {"id": str(ZUEV.id), "name": ZUEV.name}


async def test_the_same_event_twice_is_applied_once(
    orders: RunningOrders,
    customer: Customer,
    publish_event: PublishEvent,
    delivery_events: DeliveryEvents,
    orders_records: OrdersRecords,
    settle_delivery_events: Settle,
    amqp: Amqp,
    wait_for: WaitFor,
) -> None:
    order = await paid_order(customer)
    laptev_appointed = delivery_events.appointed(order["id"], LAPTEV, version=3)
    zuev_appointed = delivery_events.appointed(order["id"], ZUEV, version=4)

    await publish_event(laptev_appointed)
    await publish_event(zuev_appointed)
    # A redelivered copy of the first event: applied again, it would bring Laptev back.
    await publish_event(laptev_appointed)
    await settle_delivery_events()

    shown = await customer.get_order(order["id"])
    assert shown["deliveryman"] == {"id": str(ZUEV.id), "name": ZUEV.name}
    stored = await orders_records.get(uuid.UUID(order["id"]))
    assert stored is not None
    assert stored.version == 4  # created, paid, Laptev shown, Zuev shown
    inbox = await orders_records.inbox_ids()
    assert inbox.count(laptev_appointed.id) == 1
    assert zuev_appointed.id in inbox
    assert await amqp.message_count(orders.dead_letter_queue) == 0


async def test_an_event_for_an_unknown_order_is_dead_lettered_with_its_reason(
    orders: RunningOrders,
    publish_event: PublishEvent,
    delivery_events: DeliveryEvents,
    orders_records: OrdersRecords,
    amqp: Amqp,
    wait_for: WaitFor,
) -> None:
    unknown = uuid.uuid4()
    event = delivery_events.finished(unknown)

    await publish_event(event)

    dead: AbstractIncomingMessage = await wait_for(
        lambda: amqp.get(orders.dead_letter_queue), message="the event in the dead-letter queue"
    )
    assert parse_envelope(dead.body) == event
    assert dead.message_id == str(event.id)
    headers = dead.headers or {}
    assert headers["x-error-class"] == "OrderNotFound"
    assert str(unknown) in str(headers["x-death-reason"])
    assert headers["x-original-queue"] == orders.queue
    assert headers["x-original-routing-key"] == "delivery.finished"
    assert await orders_records.inbox_ids() == []
    assert await orders_records.orders() == []
