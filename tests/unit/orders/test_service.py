"""The orders service's use cases over an in-memory repository and a recording event sink."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from deliveryhub_contracts.events import (
    DeliveryAppointed,
    DeliveryCanceled,
    DeliveryFinished,
    Deliveryman,
    OrderCanceled,
    OrderCancelRequested,
    OrderCreated,
    OrderPaid,
)
from deliveryhub_kit.errors import InvalidTransition
from deliveryhub_kit.identity import Principal, Role
from deliveryhub_kit.lists import Page
from deliveryhub_kit.search import Search
from deliveryhub_orders.domain import CancelOutcome, OrderStatus
from deliveryhub_orders.errors import IdempotencyKeyReused, OrderNotFound
from deliveryhub_orders.models import IdempotencyRecord, Order
from deliveryhub_orders.schemas import OrderCreate, OrderOut
from deliveryhub_orders.service import OrderService, PlacedOrder
from tests.support.fakes import FakeOrderRepository, RecordingEventSink

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
DELIVERY_DATE = datetime(2025, 3, 3, 15, 0, tzinfo=UTC)
ADDRESS = "Москва, ул. Ленина, д. 1"
LAPTEV = Deliveryman(id=uuid.UUID("85db966c-67f1-411e-95c0-f02edfa5464a"), name="Лаптев Иван Алексаендрович")
ZUEV = Deliveryman(id=uuid.UUID("31babbb3-5541-4a2a-8201-537cdff25fed"), name="Зуев Андрей Сергеевич")

ALICE = Principal(subject=uuid.uuid4(), role=Role.CUSTOMER)
BORIS = Principal(subject=uuid.uuid4(), role=Role.CUSTOMER)
MANAGER = Principal(subject=uuid.uuid4(), role=Role.MANAGER)


class RacedOrderRepository(FakeOrderRepository):
    """Runs `before_next_add` just before the next insert, as a concurrent request would commit."""

    def __init__(self) -> None:
        super().__init__()
        self.before_next_add: Callable[[], Awaitable[None]] | None = None

    async def add(self, order: Order, record: IdempotencyRecord | None) -> bool:
        if self.before_next_add is not None:
            concurrent, self.before_next_add = self.before_next_add, None
            await concurrent()
        return await super().add(order, record)


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now

    def advance(self, minutes: int = 1) -> None:
        self.now += timedelta(minutes=minutes)


@pytest.fixture
def repository() -> FakeOrderRepository:
    return FakeOrderRepository()


@pytest.fixture
def events() -> RecordingEventSink:
    return RecordingEventSink()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def service(repository: FakeOrderRepository, events: RecordingEventSink, clock: Clock) -> OrderService:
    return OrderService(repository, events, clock=clock)


def order_request(**changes: Any) -> OrderCreate:
    body: dict[str, Any] = {
        "address": ADDRESS,
        "date": DELIVERY_DATE.isoformat(),
        "items": [
            {"name": "Чай", "quantity": 3, "price": "150.25"},
            {"name": "Мёд", "quantity": 1, "price": "499.99"},
        ],
        **changes,
    }
    return OrderCreate.model_validate(body)


async def placed(service: OrderService, events: RecordingEventSink, who: Principal = ALICE) -> Order:
    """An order `who` has placed; the events it emitted are forgotten."""
    document = (await service.place_order(who, order_request())).document
    events.emitted.clear()
    return await service.get_order(who, uuid.UUID(document["id"]))


class TestPlaceOrder:
    async def test_emits_order_created_at_version_one_with_the_computed_total(
        self, service: OrderService, repository: FakeOrderRepository, events: RecordingEventSink
    ) -> None:
        placed_order = await service.place_order(ALICE, order_request())

        order_id = uuid.UUID(placed_order.document["id"])
        assert placed_order.replayed is False
        assert placed_order.document["total"] == 950.74
        assert placed_order.document["status"] == "created"
        assert placed_order.document["customer_id"] == str(ALICE.subject)
        assert repository.orders[order_id].total == Decimal("950.74")
        assert events.emitted == [
            (
                OrderCreated(
                    order_id=order_id,
                    customer_id=ALICE.subject,
                    address=ADDRESS,
                    date=DELIVERY_DATE,
                    total=Decimal("950.74"),
                    version=1,
                ),
                str(order_id),
            )
        ]

    async def test_the_answer_is_the_order_as_the_api_shows_it(self, service: OrderService) -> None:
        placed_order = await service.place_order(ALICE, order_request())

        stored = await service.get_order(ALICE, uuid.UUID(placed_order.document["id"]))
        assert placed_order.document == OrderOut.of(stored).to_document()

    async def test_a_repeated_idempotency_key_returns_the_first_answer_and_emits_nothing(
        self, service: OrderService, repository: FakeOrderRepository, events: RecordingEventSink
    ) -> None:
        first = await service.place_order(ALICE, order_request(), "checkout-1")
        events.emitted.clear()

        again = await service.place_order(ALICE, order_request(), "checkout-1")

        assert again.replayed is True
        assert again.document == first.document
        assert len(repository.orders) == 1
        assert events.emitted == []

    async def test_the_same_key_with_another_body_is_refused(
        self, service: OrderService, repository: FakeOrderRepository, events: RecordingEventSink
    ) -> None:
        await service.place_order(ALICE, order_request(), "checkout-1")
        events.emitted.clear()

        with pytest.raises(IdempotencyKeyReused, match="different order"):
            await service.place_order(ALICE, order_request(address="Тверь, ул. Мира, 5"), "checkout-1")

        assert len(repository.orders) == 1
        assert events.emitted == []

    async def test_keys_belong_to_one_customer(
        self, service: OrderService, repository: FakeOrderRepository, events: RecordingEventSink
    ) -> None:
        alices = await service.place_order(ALICE, order_request(), "checkout-1")

        boris = await service.place_order(BORIS, order_request(), "checkout-1")

        assert boris.replayed is False
        assert boris.document["id"] != alices.document["id"]
        assert boris.document["customer_id"] == str(BORIS.subject)
        assert len(repository.orders) == 2
        assert len(events.emitted) == 2

    async def test_without_a_key_every_request_places_a_new_order(
        self, service: OrderService, repository: FakeOrderRepository
    ) -> None:
        first = await service.place_order(ALICE, order_request())
        second = await service.place_order(ALICE, order_request())

        assert first.document["id"] != second.document["id"]
        assert len(repository.orders) == 2

    async def test_a_request_that_loses_the_race_for_its_key_answers_with_the_winners_order(
        self, events: RecordingEventSink, clock: Clock
    ) -> None:
        repository = RacedOrderRepository()
        winner_events = RecordingEventSink()
        winner = OrderService(repository, winner_events, clock=clock)
        winners_answers: list[PlacedOrder] = []

        async def concurrent_request() -> None:
            winners_answers.append(await winner.place_order(ALICE, order_request(), "checkout-1"))

        repository.before_next_add = concurrent_request
        loser = OrderService(repository, events, clock=clock)

        answer = await loser.place_order(ALICE, order_request(), "checkout-1")

        [winners_answer] = winners_answers
        assert answer.replayed is True
        assert answer.document == winners_answer.document
        assert list(repository.orders) == [uuid.UUID(winners_answer.document["id"])]
        assert len(winner_events.emitted) == 1
        assert events.emitted == []


class TestPayOrder:
    async def test_the_owner_pays_and_order_paid_is_emitted_at_version_two(
        self, service: OrderService, events: RecordingEventSink, clock: Clock
    ) -> None:
        order = await placed(service, events)
        clock.advance()

        paid = await service.pay_order(ALICE, order.id)

        assert paid.status == OrderStatus.PAID
        assert paid.version == 2
        assert events.emitted == [
            (
                OrderPaid(
                    order_id=order.id,
                    customer_id=ALICE.subject,
                    address=ADDRESS,
                    date=DELIVERY_DATE,
                    total=Decimal("950.74"),
                    version=2,
                    paid_at=clock.now,
                ),
                str(order.id),
            )
        ]

    async def test_a_paid_order_cannot_be_paid_again(
        self, service: OrderService, events: RecordingEventSink
    ) -> None:
        order = await placed(service, events)
        await service.pay_order(ALICE, order.id)
        events.emitted.clear()

        with pytest.raises(InvalidTransition):
            await service.pay_order(ALICE, order.id)

        assert order.version == 2
        assert events.emitted == []

    async def test_another_customers_order_is_not_found(
        self, service: OrderService, events: RecordingEventSink
    ) -> None:
        order = await placed(service, events)

        with pytest.raises(OrderNotFound):
            await service.pay_order(BORIS, order.id)

        assert order.status == OrderStatus.CREATED
        assert events.emitted == []

    async def test_a_manager_cannot_pay_for_a_customer(
        self, service: OrderService, events: RecordingEventSink
    ) -> None:
        order = await placed(service, events)

        with pytest.raises(OrderNotFound):
            await service.pay_order(MANAGER, order.id)

        assert order.status == OrderStatus.CREATED
        assert events.emitted == []

    async def test_an_unknown_order_is_not_found(self, service: OrderService) -> None:
        with pytest.raises(OrderNotFound):
            await service.pay_order(ALICE, uuid.uuid4())


class TestCancelOrder:
    @pytest.mark.parametrize(
        ("who", "reason"),
        [(ALICE, "canceled by the customer"), (MANAGER, "canceled by the shop manager")],
        ids=["customer", "manager"],
    )
    async def test_order_canceled_is_emitted_with_a_reason_naming_who(
        self, service: OrderService, events: RecordingEventSink, who: Principal, reason: str
    ) -> None:
        order = await placed(service, events)

        canceled, outcome = await service.cancel_order(who, order.id)

        assert outcome is CancelOutcome.CANCELED
        assert canceled.status == OrderStatus.CANCELED
        assert canceled.cancel_reason == reason
        assert events.emitted == [(OrderCanceled(order_id=order.id, version=2, reason=reason), str(order.id))]

    @pytest.mark.parametrize(
        ("who", "reason"),
        [(ALICE, "canceled by the customer"), (MANAGER, "canceled by the shop manager")],
        ids=["customer", "manager"],
    )
    async def test_a_paid_orders_cancel_is_requested_of_the_delivery_service(
        self, service: OrderService, events: RecordingEventSink, who: Principal, reason: str
    ) -> None:
        order = await placed(service, events)
        await service.pay_order(ALICE, order.id)
        events.emitted.clear()

        requested, outcome = await service.cancel_order(who, order.id)

        assert outcome is CancelOutcome.REQUESTED
        assert requested.status == OrderStatus.CANCELING
        assert events.emitted == [
            (OrderCancelRequested(order_id=order.id, version=3, reason=reason), str(order.id))
        ]

    async def test_a_requested_cancel_ends_as_the_delivery_service_decides(
        self, service: OrderService, events: RecordingEventSink
    ) -> None:
        refused, canceled_order = await placed(service, events), await placed(service, events)
        for order in (refused, canceled_order):
            await service.pay_order(ALICE, order.id)
            await service.cancel_order(ALICE, order.id)

        await service.on_delivery_finished(finished(refused.id))
        await service.on_delivery_canceled(canceled(canceled_order.id, reason="canceled by the customer"))

        assert refused.status == OrderStatus.DELIVERED
        assert refused.cancel_refused == f"too late: delivered at {NOW:%Y-%m-%d %H:%M} UTC"
        assert canceled_order.status == OrderStatus.CANCELED
        assert canceled_order.cancel_reason == "canceled by the customer"

    async def test_a_delivered_order_cannot_be_canceled(
        self, service: OrderService, events: RecordingEventSink
    ) -> None:
        order = await placed(service, events)
        await service.pay_order(ALICE, order.id)
        await service.on_delivery_finished(finished(order.id))
        events.emitted.clear()

        with pytest.raises(InvalidTransition):
            await service.cancel_order(ALICE, order.id)

        assert order.status == OrderStatus.DELIVERED
        assert events.emitted == []

    async def test_another_customers_order_is_not_found(
        self, service: OrderService, events: RecordingEventSink
    ) -> None:
        order = await placed(service, events)

        with pytest.raises(OrderNotFound):
            await service.cancel_order(BORIS, order.id)

        assert order.status == OrderStatus.CREATED
        assert events.emitted == []


class TestReadingOrders:
    async def test_another_customers_order_is_not_found(
        self, service: OrderService, events: RecordingEventSink
    ) -> None:
        order = await placed(service, events)

        with pytest.raises(OrderNotFound):
            await service.get_order(BORIS, order.id)

    async def test_a_manager_sees_any_order(self, service: OrderService, events: RecordingEventSink) -> None:
        order = await placed(service, events)

        assert await service.get_order(MANAGER, order.id) is order

    async def test_a_customer_lists_only_their_own_orders_newest_first(
        self, service: OrderService, events: RecordingEventSink, clock: Clock
    ) -> None:
        older = await placed(service, events, ALICE)
        clock.advance()
        await placed(service, events, BORIS)
        clock.advance()
        newer = await placed(service, events, ALICE)

        assert [order.id for order in (await service.list_orders(ALICE)).items] == [newer.id, older.id]

    async def test_a_manager_lists_every_order(
        self, service: OrderService, events: RecordingEventSink, clock: Clock
    ) -> None:
        alices = await placed(service, events, ALICE)
        clock.advance()
        boris = await placed(service, events, BORIS)

        assert [order.id for order in (await service.list_orders(MANAGER)).items] == [boris.id, alices.id]

    async def test_the_list_filters_by_status_and_pages(
        self, service: OrderService, events: RecordingEventSink, clock: Clock
    ) -> None:
        orders = []
        for _ in range(3):
            orders.append(await placed(service, events))
            clock.advance()
        await service.pay_order(ALICE, orders[1].id)

        paid = await service.list_orders(ALICE, status=OrderStatus.PAID)
        second_page = await service.list_orders(ALICE, limit=2, offset=2)

        assert [order.id for order in paid.items] == [orders[1].id]
        assert [order.id for order in second_page.items] == [orders[0].id]
        assert (paid.total, second_page.total) == (1, 3)

    async def test_the_list_finds_an_order_by_the_first_characters_of_its_id(
        self, service: OrderService, events: RecordingEventSink
    ) -> None:
        wanted = await placed(service, events)
        await placed(service, events)

        found = await service.list_orders(ALICE, search=Search.parse(str(wanted.id)[:8]))

        assert [order.id for order in found.items] == [wanted.id]


def appointed(order_id: uuid.UUID, deliveryman: Deliveryman = LAPTEV, version: int = 3) -> DeliveryAppointed:
    return DeliveryAppointed(order_id=order_id, deliveryman=deliveryman, version=version)


def finished(order_id: uuid.UUID) -> DeliveryFinished:
    return DeliveryFinished(order_id=order_id, deliveryman_id=LAPTEV.id, finished_at=NOW, version=4)


def canceled(order_id: uuid.UUID, reason: str = "canceled by the shop manager") -> DeliveryCanceled:
    return DeliveryCanceled(order_id=order_id, reason=reason, version=4)


class TestDeliveryEvents:
    async def test_an_appointed_courier_is_shown_on_the_order(
        self, service: OrderService, events: RecordingEventSink
    ) -> None:
        order = await placed(service, events)
        await service.pay_order(ALICE, order.id)

        await service.on_delivery_appointed(appointed(order.id))

        shown = OrderOut.of(await service.get_order(ALICE, order.id))
        assert shown.deliveryman is not None
        assert (shown.deliveryman.id, shown.deliveryman.name) == (LAPTEV.id, LAPTEV.name)
        assert shown.status == OrderStatus.PAID

    async def test_a_re_appointment_overtaken_by_the_first_appointment_is_still_shown(
        self, service: OrderService, events: RecordingEventSink
    ) -> None:
        order = await placed(service, events)
        await service.pay_order(ALICE, order.id)

        await service.on_delivery_appointed(appointed(order.id, ZUEV, version=4))
        await service.on_delivery_appointed(appointed(order.id, LAPTEV, version=3))

        shown = OrderOut.of(await service.get_order(ALICE, order.id))
        assert shown.deliveryman is not None
        assert shown.deliveryman.id == ZUEV.id

    async def test_a_finished_delivery_delivers_the_order(
        self, service: OrderService, events: RecordingEventSink
    ) -> None:
        order = await placed(service, events)
        await service.pay_order(ALICE, order.id)
        events.emitted.clear()

        await service.on_delivery_finished(finished(order.id))

        assert (await service.get_order(ALICE, order.id)).status == OrderStatus.DELIVERED
        assert events.emitted == []

    async def test_a_canceled_delivery_cancels_the_order_with_its_reason(
        self, service: OrderService, events: RecordingEventSink
    ) -> None:
        order = await placed(service, events)
        await service.pay_order(ALICE, order.id)

        await service.on_delivery_canceled(canceled(order.id))

        shown = await service.get_order(ALICE, order.id)
        assert shown.status == OrderStatus.CANCELED
        assert shown.cancel_reason == "canceled by the shop manager"

    async def test_a_canceled_order_stays_canceled_when_the_delivery_finishes(
        self, service: OrderService, events: RecordingEventSink
    ) -> None:
        order = await placed(service, events)
        await service.cancel_order(ALICE, order.id)
        version = order.version

        await service.on_delivery_finished(finished(order.id))

        shown = await service.get_order(ALICE, order.id)
        assert shown.status == OrderStatus.CANCELED
        assert shown.version == version

    async def test_a_delivered_order_stays_delivered_when_the_delivery_is_canceled(
        self, service: OrderService, events: RecordingEventSink
    ) -> None:
        order = await placed(service, events)
        await service.on_delivery_finished(finished(order.id))

        await service.on_delivery_canceled(canceled(order.id))

        assert (await service.get_order(ALICE, order.id)).status == OrderStatus.DELIVERED

    @pytest.mark.parametrize(
        "event",
        [appointed(uuid.uuid4()), finished(uuid.uuid4()), canceled(uuid.uuid4())],
        ids=["appointed", "finished", "canceled"],
    )
    async def test_an_event_for_an_unknown_order_is_not_found(
        self, service: OrderService, event: DeliveryAppointed | DeliveryFinished | DeliveryCanceled
    ) -> None:
        with pytest.raises(OrderNotFound, match=str(event.order_id)):
            await apply(service, event)

        assert await service.list_orders(MANAGER) == Page([], 0)


async def apply(
    service: OrderService, event: DeliveryAppointed | DeliveryFinished | DeliveryCanceled
) -> None:
    """Hand a delivery event to the service, as the consumer does."""
    if isinstance(event, DeliveryAppointed):
        await service.on_delivery_appointed(event)
    elif isinstance(event, DeliveryFinished):
        await service.on_delivery_finished(event)
    else:
        await service.on_delivery_canceled(event)
