"""A model of the two services: every interleaving of what people do and of how events travel.

The orders and delivery services run as they do in production, over in-memory repositories, and
their events travel as JSON over a model of the broker that delivers any of them next, delivers
some twice and holds others back as long as it likes. Customers pay and cancel, managers appoint,
re-appoint and cancel, couriers finish, in any order Hypothesis chooses. Once every event has
arrived, both services must agree: `delivered`/`done` or `canceled`/`canceled` (or an order that
is still open, with its delivery where it should be), the courier shown is the last one
appointed, and no order is left `canceling`.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, TypeVar

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from deliveryhub_contracts.events import (
    PAYLOAD_TYPES,
    ROUTING_KEYS,
    DeliveryAppointed,
    DeliveryCanceled,
    DeliveryFinished,
    OrderCanceled,
    OrderCancelRequested,
    OrderCreated,
    OrderPaid,
    Payload,
)
from deliveryhub_delivery.domain import DeliveryStatus
from deliveryhub_delivery.models import Delivery
from deliveryhub_delivery.service import DeliveryService
from deliveryhub_kit.errors import DomainError
from deliveryhub_kit.identity import Principal, Role
from deliveryhub_orders.domain import CancelOutcome, OrderStatus
from deliveryhub_orders.models import Order
from deliveryhub_orders.schemas import ItemIn, OrderCreate
from deliveryhub_orders.service import OrderService
from tests.support.fakes import LAPTEV, ZUEV, FakeDeliveryRepository, FakeOrderRepository

T = TypeVar("T")

START = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
CUSTOMER = Principal(subject=uuid.uuid4(), role=Role.CUSTOMER)
MANAGER = Principal(subject=uuid.uuid4(), role=Role.MANAGER)
COURIERS = {
    man.id: Principal(subject=uuid.uuid4(), role=Role.COURIER, deliveryman_id=man.id)
    for man in (LAPTEV, ZUEV)
}
# What people may do to an order, each at most once: the plan of one example is half of them and
# one more, and the broker's deliveries come in between.
PEOPLES_ACTS = [
    "customer pays",
    "manager appoints Laptev",
    "manager appoints Zuev",
    "courier finishes",
    "manager finishes",
    "customer cancels",
    "manager cancels the order",
    "manager cancels the delivery",
]
AGREEING = {
    (OrderStatus.CREATED, DeliveryStatus.CREATED),
    (OrderStatus.PAID, DeliveryStatus.ACTIVATED),
    (OrderStatus.DELIVERED, DeliveryStatus.DONE),
    (OrderStatus.CANCELED, DeliveryStatus.CANCELED),
}
# How far along each status is; a record only moves to a later stage, and a closed one not at all.
CLOSED = 9
ORDER_STAGE = {
    OrderStatus.CREATED: 0,
    OrderStatus.PAID: 1,
    OrderStatus.CANCELING: 2,
    OrderStatus.DELIVERED: CLOSED,
    OrderStatus.CANCELED: CLOSED,
}
DELIVERY_STAGE = {
    DeliveryStatus.CREATED: 0,
    DeliveryStatus.ACTIVATED: 1,
    DeliveryStatus.DONE: CLOSED,
    DeliveryStatus.CANCELED: CLOSED,
}


def finish(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine that never waits (the repositories are in memory) to its end."""
    try:
        coroutine.send(None)
    except StopIteration as done:
        result: T = done.value
        return result
    coroutine.close()
    raise AssertionError("the service waited for something an in-memory repository never gives")


class Outbox:
    """What one service emits: each event as the JSON its relay publishes."""

    def __init__(self) -> None:
        self.published: list[tuple[str, str]] = []

    def emit(self, payload: Payload, *, subject: str) -> None:
        self.published.append((ROUTING_KEYS[type(payload)], payload.model_dump_json()))


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


class TwoServices(RuleBasedStateMachine):
    """The orders and delivery services of one order (orders do not meet), and the broker between them."""

    orders_service_type: ClassVar[type[OrderService]] = OrderService

    def __init__(self) -> None:
        super().__init__()
        clock = Clock()
        self.order_records = FakeOrderRepository()
        self.delivery_records = FakeDeliveryRepository([LAPTEV, ZUEV])
        self.orders_outbox, self.delivery_outbox = Outbox(), Outbox()
        self.orders = self.orders_service_type(self.order_records, self.orders_outbox, clock=clock)
        self.delivery = DeliveryService(self.delivery_records, self.delivery_outbox, clock=clock)
        # In flight: each on its way to the other service, in no particular order.
        self.to_delivery: list[tuple[str, str]] = []
        self.to_orders: list[tuple[str, str]] = []
        self.order_id = uuid.UUID(int=0)
        self.last_appointed: uuid.UUID | None = None
        self.plan: list[str] = []
        self.tried_early: set[str] = set()
        self.seen: dict[tuple[uuid.UUID, str], tuple[int, str]] = {}

    # What people do -----------------------------------------------------------------------------

    @initialize(
        unpaid=st.booleans(),
        plan=st.permutations(PEOPLES_ACTS).map(lambda acts: acts[: len(acts) // 2 + 1]),
    )
    def customer_places_an_order(self, unpaid: bool, plan: list[str]) -> None:
        """The order is placed and (unless `unpaid`) paid at once; what people do next is `plan`,
        each request when its person sees it possible (or once before, on a page seen earlier)."""
        request = OrderCreate(
            address="ул. Ленина, 1",
            date=START + timedelta(days=1),
            items=[ItemIn(name="Чай", quantity=1, price="250.00")],
        )
        placed = finish(self.orders.place_order(CUSTOMER, request))
        self.order_id = uuid.UUID(placed.document["id"])
        if not unpaid:
            finish(self.orders.pay_order(CUSTOMER, self.order_id))
        self.plan = [act for act in plan if not (act == "customer pays" and not unpaid)]
        self._relay()

    @precondition(lambda self: any(self._can(act) for act in self.plan))
    @rule(data=st.data())
    def someone_acts(self, data: st.DataObject) -> None:
        """One of the planned requests its person sees can be made now, to either service."""
        act = data.draw(st.sampled_from([act for act in self.plan if self._can(act)]))
        assert self._request(act), f"{act!r} was refused although its service showed it possible"
        self.plan.remove(act)

    @precondition(lambda self: self._too_early())
    @rule(data=st.data())
    def someone_acts_on_what_they_saw_earlier(self, data: st.DataObject) -> None:
        """A planned request its service does not take now, made once on a page seen earlier:
        refused, it changes nothing and sends nothing."""
        act = data.draw(st.sampled_from(self._too_early()))
        self.tried_early.add(act)
        before = self._snapshot()
        assert not self._request(act), f"{act!r} was taken although its service showed it impossible"
        assert self._snapshot() == before, f"a refused {act!r} changed something"

    def _too_early(self) -> list[str]:
        return [act for act in self.plan if act not in self.tried_early and not self._can(act)]

    def _can(self, act: str) -> bool:
        """Whether the person's own service shows the request as one it takes now."""
        order = self.order_records.orders[self.order_id].status
        delivery = self.delivery_records.deliveries.get(self.order_id)
        shown = delivery.status if delivery is not None and delivery.address is not None else None
        if act == "customer pays":
            return order == OrderStatus.CREATED
        if act in ("customer cancels", "manager cancels the order"):
            return order in (OrderStatus.CREATED, OrderStatus.PAID)
        if act.startswith("manager appoints"):
            return shown == DeliveryStatus.ACTIVATED
        if act in ("courier finishes", "manager finishes"):
            return shown == DeliveryStatus.ACTIVATED and self.last_appointed is not None
        return shown in (DeliveryStatus.CREATED, DeliveryStatus.ACTIVATED)

    def _request(self, act: str) -> bool:
        order_id = self.order_id
        requests: dict[str, Callable[[], Coroutine[Any, Any, object]]] = {
            "customer pays": lambda: self.orders.pay_order(CUSTOMER, order_id),
            "customer cancels": lambda: self.orders.cancel_order(CUSTOMER, order_id),
            "manager cancels the order": lambda: self.orders.cancel_order(MANAGER, order_id),
            "manager appoints Laptev": lambda: self.delivery.appoint_deliveryman(order_id, LAPTEV.id),
            "manager appoints Zuev": lambda: self.delivery.appoint_deliveryman(order_id, ZUEV.id),
            "courier finishes": lambda: self.delivery.finish_delivery(
                COURIERS[self.last_appointed or LAPTEV.id], order_id
            ),
            "manager finishes": lambda: self.delivery.finish_delivery(MANAGER, order_id),
            "manager cancels the delivery": lambda: self.delivery.cancel_delivery(order_id),
        }
        done = self._act(requests[act]())
        if done and act.startswith("manager appoints"):
            self.last_appointed = LAPTEV.id if act.endswith("Laptev") else ZUEV.id
        return done

    # How events travel --------------------------------------------------------------------------

    @rule(data=st.data(), what=st.sampled_from(["to delivery", "to orders", "again"]))
    def the_broker_delivers(self, data: st.DataObject, what: str) -> None:
        """Any event in flight arrives next; or one is delivered twice (a redelivery the inbox
        would catch: the services must not need it to)."""
        if what == "again":
            queue = self.to_orders if data.draw(st.booleans()) else self.to_delivery
            if queue:
                queue.append(queue[data.draw(st.integers(0, len(queue) - 1))])
        elif what == "to delivery" and self.to_delivery:
            self._arrive_at_delivery(data.draw(st.integers(0, len(self.to_delivery) - 1)))
        elif what == "to orders" and self.to_orders:
            self._arrive_at_orders(data.draw(st.integers(0, len(self.to_orders) - 1)))

    def _snapshot(self) -> tuple[object, ...]:
        order = self.order_records.orders[self.order_id]
        delivery = self.delivery_records.deliveries.get(self.order_id)
        shown = delivery and (delivery.status, delivery.version, delivery.deliveryman_id)
        return (order.status, order.version, shown, len(self.to_delivery), len(self.to_orders))

    # Once everything has arrived ----------------------------------------------------------------

    @invariant()
    def nothing_moves_backwards(self) -> None:
        for order in self.order_records.orders.values():
            self._moved_forward(order.id, "order", ORDER_STAGE[OrderStatus(order.status)], order.status)
        for delivery in self.delivery_records.deliveries.values():
            stage = DELIVERY_STAGE[DeliveryStatus(delivery.status)]
            self._moved_forward(delivery.id, "delivery", stage, delivery.status)

    def _moved_forward(self, record_id: uuid.UUID, kind: str, stage: int, status: str) -> None:
        before = self.seen.get((record_id, kind))
        if before is not None:
            assert stage >= before[0], f"the {kind} went back from {before[1]} to {status}"
            assert stage > before[0] or status == before[1] or stage < CLOSED, (
                f"the {kind} went from {before[1]} to {status}"
            )
            if before[0] == CLOSED:
                assert status == before[1], f"the closed {kind} went from {before[1]} to {status}"
        self.seen[record_id, kind] = (stage, status)

    def teardown(self) -> None:
        # The broker delivers whatever it held back; the answers those make are delivered too.
        while self.to_delivery or self.to_orders:
            while self.to_orders:
                self._arrive_at_orders(len(self.to_orders) - 1)
            while self.to_delivery:
                self._arrive_at_delivery(0)
        self._assert_agree(
            self.order_records.orders[self.order_id], self.delivery_records.deliveries[self.order_id]
        )

    def _assert_agree(self, order: Order, delivery: Delivery) -> None:
        pair = (OrderStatus(order.status), DeliveryStatus(delivery.status))
        assert pair in AGREEING, f"order {order.status} but delivery {delivery.status}"
        assert order.deliveryman_id == delivery.deliveryman_id, "the order shows another courier"
        assert order.deliveryman_id == self.last_appointed, "not the last courier appointed"
        if order.cancel_refused is not None:
            assert pair == (OrderStatus.DELIVERED, DeliveryStatus.DONE)

    # The plumbing -------------------------------------------------------------------------------

    def _act(self, action: Coroutine[Any, Any, object]) -> bool:
        """Run one request as one transaction: refused, it changes nothing and sends nothing."""
        try:
            finish(action)
        except DomainError:
            return False
        self._relay()
        return True

    def _relay(self) -> None:
        self.to_delivery += self.orders_outbox.published
        self.to_orders += self.delivery_outbox.published
        self.orders_outbox.published.clear()
        self.delivery_outbox.published.clear()

    def _arrive_at_delivery(self, index: int) -> None:
        key, body = self.to_delivery.pop(index)
        payload = PAYLOAD_TYPES[key].model_validate_json(body)
        if isinstance(payload, OrderCreated):
            finish(self.delivery.on_order_created(payload))
        elif isinstance(payload, OrderPaid):
            finish(self.delivery.on_order_paid(payload))
        elif isinstance(payload, OrderCanceled):
            finish(self.delivery.on_order_canceled(payload))
        elif isinstance(payload, OrderCancelRequested):
            finish(self.delivery.on_order_cancel_requested(payload))
        else:
            raise AssertionError(f"the delivery service does not consume {key}")
        self._relay()

    def _arrive_at_orders(self, index: int) -> None:
        key, body = self.to_orders.pop(index)
        payload = PAYLOAD_TYPES[key].model_validate_json(body)
        if isinstance(payload, DeliveryAppointed):
            finish(self.orders.on_delivery_appointed(payload))
        elif isinstance(payload, DeliveryFinished):
            finish(self.orders.on_delivery_finished(payload))
        elif isinstance(payload, DeliveryCanceled):
            finish(self.orders.on_delivery_canceled(payload))
        else:
            raise AssertionError(f"the orders service does not consume {key}")
        self._relay()


MODEL_SETTINGS = settings(
    max_examples=200,
    stateful_step_count=60,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def test_whatever_the_interleaving_both_services_end_agreeing() -> None:
    run_state_machine_as_test(TwoServices, settings=MODEL_SETTINGS)


class CancelAtOnce(OrderService):
    """The rule the services had before: a paid order canceled at once, whatever its delivery did."""

    async def cancel_order(self, principal: Principal, order_id: uuid.UUID) -> tuple[Order, CancelOutcome]:
        order = await self._visible(principal, order_id, for_update=True)
        if order.status not in (OrderStatus.CREATED, OrderStatus.PAID):
            raise DomainError(f"an order that is {order.status} cannot be canceled")
        order.status = OrderStatus.CANCELED
        order.version += 1
        self._events.emit(
            OrderCanceled(order_id=order.id, version=order.version, reason="canceled by the customer"),
            subject=str(order.id),
        )
        return order, CancelOutcome.CANCELED


class TwoServicesCancelingAtOnce(TwoServices):
    orders_service_type = CancelAtOnce


def test_the_model_finds_the_race_of_the_old_cancel_rule() -> None:
    # The model is only worth its examples if it catches the race that was seen in the field: a
    # parcel handed over while the shop believes the order canceled.
    with pytest.raises(AssertionError, match="order canceled but delivery done"):
        # The same search each run, so that it takes the same second or so; found is enough, and
        # shrinking it to the smallest example would only cost time.
        run_state_machine_as_test(
            TwoServicesCancelingAtOnce,
            settings=settings(MODEL_SETTINGS, max_examples=5000, derandomize=True, phases=[Phase.generate]),
        )
