"""The delivery service's use cases over an in-memory repository and a recording event sink."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from deliveryhub_contracts.events import (
    DeliveryAppointed,
    DeliveryCanceled,
    DeliveryFinished,
    OrderCanceled,
    OrderCancelRequested,
    OrderCreated,
    OrderPaid,
)
from deliveryhub_contracts.events import Deliveryman as DeliverymanPayload
from deliveryhub_contracts.legacy import LegacyOrderCreated, LegacyOrderPaid
from deliveryhub_delivery import domain
from deliveryhub_delivery.domain import DeliveryStatus
from deliveryhub_delivery.errors import DeliveryNotFound, UnknownDeliveryman
from deliveryhub_delivery.models import Delivery, Deliveryman
from deliveryhub_delivery.repository import DeliveryQuery
from deliveryhub_delivery.service import MANAGER_CANCEL_REASON, DeliveryService
from deliveryhub_kit.errors import InvalidTransition
from deliveryhub_kit.identity import Principal, Role
from deliveryhub_kit.lists import Page
from tests.support.fakes import LAPTEV, ZUEV, FakeDeliveryRepository, RecordingEventSink

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
DELIVERY_DATE = datetime(2025, 3, 3, 15, 0, tzinfo=UTC)
ADDRESS = "Москва, ул. Ленина, д. 1"


MANAGER = Principal(subject=uuid.uuid4(), role=Role.MANAGER)
LAPTEV_COURIER = Principal(subject=uuid.uuid4(), role=Role.COURIER, deliveryman_id=LAPTEV.id)
ZUEV_COURIER = Principal(subject=uuid.uuid4(), role=Role.COURIER, deliveryman_id=ZUEV.id)


@pytest.fixture
def repository() -> FakeDeliveryRepository:
    return FakeDeliveryRepository([LAPTEV, ZUEV])


@pytest.fixture
def events() -> RecordingEventSink:
    return RecordingEventSink()


@pytest.fixture
def service(repository: FakeDeliveryRepository, events: RecordingEventSink) -> DeliveryService:
    return DeliveryService(repository, events, clock=lambda: NOW)


def stored(
    repository: FakeDeliveryRepository,
    status: DeliveryStatus,
    *,
    courier: Deliveryman | None = None,
    created_at: datetime = NOW - timedelta(hours=1),
) -> Delivery:
    delivery = domain.new_delivery(uuid.uuid4(), created_at)
    delivery.address = ADDRESS
    delivery.date = DELIVERY_DATE
    delivery.order_version = 1
    delivery.status = status
    if courier is not None:
        delivery.deliveryman = courier
        delivery.deliveryman_id = courier.id
    repository.add(delivery)
    return delivery


def snapshot(order_id: uuid.UUID, version: int) -> dict[str, object]:
    return {
        "order_id": order_id,
        "customer_id": uuid.UUID("0b7e3c3a-55a4-4f6e-9d8c-0d6c1f1d2a11"),
        "address": ADDRESS,
        "date": DELIVERY_DATE,
        "total": Decimal("1250.50"),
        "version": version,
    }


class TestAppointCourier:
    async def test_emits_delivery_appointed_with_the_couriers_name(
        self, service: DeliveryService, repository: FakeDeliveryRepository, events: RecordingEventSink
    ) -> None:
        delivery = stored(repository, DeliveryStatus.ACTIVATED)

        appointed = await service.appoint_deliveryman(delivery.id, LAPTEV.id)

        assert appointed.deliveryman_id == LAPTEV.id
        assert events.emitted == [
            (
                DeliveryAppointed(
                    order_id=delivery.id,
                    deliveryman=DeliverymanPayload(id=LAPTEV.id, name="Лаптев Иван Алексаендрович"),
                    version=2,
                ),
                str(delivery.id),
            )
        ]

    async def test_an_unknown_courier_is_refused(
        self, service: DeliveryService, repository: FakeDeliveryRepository, events: RecordingEventSink
    ) -> None:
        delivery = stored(repository, DeliveryStatus.ACTIVATED)
        nobody = uuid.uuid4()

        with pytest.raises(UnknownDeliveryman, match=str(nobody)):
            await service.appoint_deliveryman(delivery.id, nobody)

        assert delivery.deliveryman_id is None
        assert events.emitted == []

    async def test_an_unknown_delivery_is_not_found(
        self, service: DeliveryService, events: RecordingEventSink
    ) -> None:
        with pytest.raises(DeliveryNotFound):
            await service.appoint_deliveryman(uuid.uuid4(), LAPTEV.id)

        assert events.emitted == []

    @pytest.mark.parametrize("status", [DeliveryStatus.CREATED, DeliveryStatus.DONE, DeliveryStatus.CANCELED])
    async def test_a_delivery_that_is_not_activated_emits_nothing(
        self,
        service: DeliveryService,
        repository: FakeDeliveryRepository,
        events: RecordingEventSink,
        status: DeliveryStatus,
    ) -> None:
        delivery = stored(repository, status)

        with pytest.raises(InvalidTransition):
            await service.appoint_deliveryman(delivery.id, LAPTEV.id)

        assert events.emitted == []
        assert delivery.deliveryman_id is None


class TestFinishDelivery:
    async def test_the_appointed_courier_finishes_and_delivery_finished_is_emitted(
        self, service: DeliveryService, repository: FakeDeliveryRepository, events: RecordingEventSink
    ) -> None:
        delivery = stored(repository, DeliveryStatus.ACTIVATED, courier=LAPTEV)

        finished = await service.finish_delivery(LAPTEV_COURIER, delivery.id)

        assert finished.status == DeliveryStatus.DONE
        assert events.emitted == [
            (
                DeliveryFinished(order_id=delivery.id, deliveryman_id=LAPTEV.id, finished_at=NOW, version=2),
                str(delivery.id),
            )
        ]

    async def test_a_manager_can_finish_for_the_courier(
        self, service: DeliveryService, repository: FakeDeliveryRepository, events: RecordingEventSink
    ) -> None:
        delivery = stored(repository, DeliveryStatus.ACTIVATED, courier=ZUEV)

        await service.finish_delivery(MANAGER, delivery.id)

        assert delivery.status == DeliveryStatus.DONE
        assert [type(payload) for payload, _ in events.emitted] == [DeliveryFinished]

    async def test_another_courier_cannot_see_it_to_finish_it(
        self, service: DeliveryService, repository: FakeDeliveryRepository, events: RecordingEventSink
    ) -> None:
        delivery = stored(repository, DeliveryStatus.ACTIVATED, courier=LAPTEV)

        with pytest.raises(DeliveryNotFound):
            await service.finish_delivery(ZUEV_COURIER, delivery.id)

        assert delivery.status == DeliveryStatus.ACTIVATED
        assert events.emitted == []

    async def test_without_a_courier_it_cannot_be_finished(
        self, service: DeliveryService, repository: FakeDeliveryRepository, events: RecordingEventSink
    ) -> None:
        delivery = stored(repository, DeliveryStatus.ACTIVATED)

        with pytest.raises(InvalidTransition):
            await service.finish_delivery(MANAGER, delivery.id)

        assert events.emitted == []

    @pytest.mark.parametrize("status", [DeliveryStatus.DONE, DeliveryStatus.CANCELED])
    async def test_a_done_or_canceled_delivery_emits_nothing(
        self,
        service: DeliveryService,
        repository: FakeDeliveryRepository,
        events: RecordingEventSink,
        status: DeliveryStatus,
    ) -> None:
        delivery = stored(repository, status, courier=LAPTEV)

        with pytest.raises(InvalidTransition):
            await service.finish_delivery(LAPTEV_COURIER, delivery.id)

        assert delivery.status == status
        assert events.emitted == []


class TestCancelDelivery:
    @pytest.mark.parametrize("status", [DeliveryStatus.CREATED, DeliveryStatus.ACTIVATED])
    async def test_emits_delivery_canceled(
        self,
        service: DeliveryService,
        repository: FakeDeliveryRepository,
        events: RecordingEventSink,
        status: DeliveryStatus,
    ) -> None:
        delivery = stored(repository, status)

        canceled = await service.cancel_delivery(delivery.id)

        assert canceled.status == DeliveryStatus.CANCELED
        assert canceled.cancel_reason == MANAGER_CANCEL_REASON
        assert events.emitted == [
            (
                DeliveryCanceled(order_id=delivery.id, reason=MANAGER_CANCEL_REASON, version=2),
                str(delivery.id),
            )
        ]

    @pytest.mark.parametrize("status", [DeliveryStatus.DONE, DeliveryStatus.CANCELED])
    async def test_a_done_or_canceled_delivery_emits_nothing(
        self,
        service: DeliveryService,
        repository: FakeDeliveryRepository,
        events: RecordingEventSink,
        status: DeliveryStatus,
    ) -> None:
        delivery = stored(repository, status, courier=LAPTEV)

        with pytest.raises(InvalidTransition):
            await service.cancel_delivery(delivery.id)

        assert delivery.status == status
        assert events.emitted == []

    async def test_an_unknown_delivery_is_not_found(
        self, service: DeliveryService, events: RecordingEventSink
    ) -> None:
        with pytest.raises(DeliveryNotFound):
            await service.cancel_delivery(uuid.uuid4())

        assert events.emitted == []


class TestWhoSeesWhat:
    async def test_a_manager_sees_every_delivery_newest_first(
        self, service: DeliveryService, repository: FakeDeliveryRepository
    ) -> None:
        older = stored(repository, DeliveryStatus.CREATED, created_at=NOW - timedelta(days=1))
        newer = stored(repository, DeliveryStatus.ACTIVATED, courier=LAPTEV, created_at=NOW)

        listed = await service.list_deliveries(MANAGER)

        assert [delivery.id for delivery in listed.items] == [newer.id, older.id]
        assert listed.total == 2

    async def test_a_courier_sees_only_their_own_deliveries(
        self, service: DeliveryService, repository: FakeDeliveryRepository
    ) -> None:
        own = stored(repository, DeliveryStatus.ACTIVATED, courier=LAPTEV)
        stored(repository, DeliveryStatus.ACTIVATED, courier=ZUEV)
        stored(repository, DeliveryStatus.CREATED)

        listed = await service.list_deliveries(LAPTEV_COURIER)

        assert [delivery.id for delivery in listed.items] == [own.id]
        assert listed.total == 1

    async def test_a_courier_asking_for_another_couriers_deliveries_gets_none(
        self, service: DeliveryService, repository: FakeDeliveryRepository
    ) -> None:
        stored(repository, DeliveryStatus.ACTIVATED, courier=ZUEV)

        listed = await service.list_deliveries(LAPTEV_COURIER, DeliveryQuery(deliveryman_id=ZUEV.id))

        assert listed == Page((), 0)

    async def test_a_manager_filters_by_status_and_courier(
        self, service: DeliveryService, repository: FakeDeliveryRepository
    ) -> None:
        wanted = stored(repository, DeliveryStatus.DONE, courier=ZUEV)
        stored(repository, DeliveryStatus.ACTIVATED, courier=ZUEV)
        stored(repository, DeliveryStatus.DONE, courier=LAPTEV)

        query = DeliveryQuery(status=DeliveryStatus.DONE, deliveryman_id=ZUEV.id)
        listed = await service.list_deliveries(MANAGER, query)

        assert [delivery.id for delivery in listed.items] == [wanted.id]

    async def test_a_courier_gets_their_own_delivery(
        self, service: DeliveryService, repository: FakeDeliveryRepository
    ) -> None:
        own = stored(repository, DeliveryStatus.ACTIVATED, courier=LAPTEV)

        assert (await service.get_delivery(LAPTEV_COURIER, own.id)).id == own.id

    async def test_a_courier_does_not_get_another_couriers_delivery(
        self, service: DeliveryService, repository: FakeDeliveryRepository
    ) -> None:
        others = stored(repository, DeliveryStatus.ACTIVATED, courier=ZUEV)

        with pytest.raises(DeliveryNotFound):
            await service.get_delivery(LAPTEV_COURIER, others.id)

    async def test_a_courier_does_not_get_an_unappointed_delivery(
        self, service: DeliveryService, repository: FakeDeliveryRepository
    ) -> None:
        unappointed = stored(repository, DeliveryStatus.ACTIVATED)

        with pytest.raises(DeliveryNotFound):
            await service.get_delivery(LAPTEV_COURIER, unappointed.id)

    async def test_a_manager_gets_any_delivery(
        self, service: DeliveryService, repository: FakeDeliveryRepository
    ) -> None:
        others = stored(repository, DeliveryStatus.ACTIVATED, courier=ZUEV)

        assert (await service.get_delivery(MANAGER, others.id)).id == others.id

    async def test_a_delivery_still_waiting_for_its_order_is_hidden(
        self, service: DeliveryService, repository: FakeDeliveryRepository
    ) -> None:
        order_id = uuid.uuid4()
        await service.on_order_canceled(OrderCanceled(order_id=order_id, version=3, reason="changed my mind"))

        assert (await service.list_deliveries(MANAGER)).total == 0
        with pytest.raises(DeliveryNotFound):
            await service.get_delivery(MANAGER, order_id)
        with pytest.raises(DeliveryNotFound):
            await service.cancel_delivery(order_id)

    async def test_the_couriers_are_listed_by_name(self, service: DeliveryService) -> None:
        couriers = await service.list_deliverymen()

        assert [man.name for man, _ in couriers] == [ZUEV.name, LAPTEV.name]

    async def test_each_courier_is_listed_with_the_deliveries_open_in_their_hands(
        self, service: DeliveryService, repository: FakeDeliveryRepository
    ) -> None:
        stored(repository, DeliveryStatus.ACTIVATED, courier=ZUEV)
        stored(repository, DeliveryStatus.ACTIVATED, courier=ZUEV)
        stored(repository, DeliveryStatus.DONE, courier=ZUEV)
        stored(repository, DeliveryStatus.CANCELED, courier=LAPTEV)
        stored(repository, DeliveryStatus.ACTIVATED)

        couriers = await service.list_deliverymen()

        assert [(man.name, count) for man, count in couriers] == [(ZUEV.name, 2), (LAPTEV.name, 0)]

    async def test_a_courier_asking_for_unassigned_deliveries_gets_none(
        self, service: DeliveryService, repository: FakeDeliveryRepository
    ) -> None:
        stored(repository, DeliveryStatus.ACTIVATED)
        stored(repository, DeliveryStatus.ACTIVATED, courier=LAPTEV)

        listed = await service.list_deliveries(LAPTEV_COURIER, DeliveryQuery(unassigned=True))

        assert listed.total == 0


class TestOrderEvents:
    async def test_order_created_creates_a_delivery(
        self, service: DeliveryService, repository: FakeDeliveryRepository, events: RecordingEventSink
    ) -> None:
        order_id = uuid.uuid4()

        await service.on_order_created(OrderCreated.model_validate(snapshot(order_id, 1)))

        delivery = await service.get_delivery(MANAGER, order_id)
        assert delivery.status == DeliveryStatus.CREATED
        assert delivery.address == ADDRESS
        assert delivery.date == DELIVERY_DATE
        assert events.emitted == []

    async def test_order_paid_activates_the_delivery(
        self, service: DeliveryService, repository: FakeDeliveryRepository, events: RecordingEventSink
    ) -> None:
        order_id = uuid.uuid4()
        await service.on_order_created(OrderCreated.model_validate(snapshot(order_id, 1)))

        await service.on_order_paid(OrderPaid.model_validate({**snapshot(order_id, 2), "paid_at": NOW}))

        assert (await service.get_delivery(MANAGER, order_id)).status == DeliveryStatus.ACTIVATED
        assert repository.deliveries[order_id].activated_at == NOW
        assert events.emitted == []

    async def test_order_paid_first_creates_an_activated_delivery(
        self, service: DeliveryService, repository: FakeDeliveryRepository
    ) -> None:
        order_id = uuid.uuid4()

        await service.on_order_paid(OrderPaid.model_validate({**snapshot(order_id, 2), "paid_at": NOW}))
        await service.on_order_created(OrderCreated.model_validate(snapshot(order_id, 1)))

        assert len(repository.deliveries) == 1
        delivery = await service.get_delivery(MANAGER, order_id)
        assert delivery.status == DeliveryStatus.ACTIVATED

    async def test_order_canceled_cancels_the_delivery(
        self, service: DeliveryService, repository: FakeDeliveryRepository, events: RecordingEventSink
    ) -> None:
        order_id = uuid.uuid4()
        await service.on_order_created(OrderCreated.model_validate(snapshot(order_id, 1)))

        await service.on_order_canceled(OrderCanceled(order_id=order_id, version=2, reason="changed my mind"))

        assert (await service.get_delivery(MANAGER, order_id)).status == DeliveryStatus.CANCELED
        assert repository.deliveries[order_id].cancel_reason == "changed my mind"
        assert events.emitted == []

    async def test_order_canceled_first_then_created_stays_canceled(self, service: DeliveryService) -> None:
        order_id = uuid.uuid4()

        await service.on_order_canceled(OrderCanceled(order_id=order_id, version=2, reason="changed my mind"))
        await service.on_order_created(OrderCreated.model_validate(snapshot(order_id, 1)))

        delivery = await service.get_delivery(MANAGER, order_id)
        assert delivery.status == DeliveryStatus.CANCELED
        assert delivery.address == ADDRESS

    async def test_every_change_of_a_delivery_raises_the_version_its_events_carry(
        self, service: DeliveryService, events: RecordingEventSink
    ) -> None:
        order_id = uuid.uuid4()
        await service.on_order_created(OrderCreated.model_validate(snapshot(order_id, 1)))
        await service.on_order_paid(OrderPaid.model_validate({**snapshot(order_id, 2), "paid_at": NOW}))

        await service.appoint_deliveryman(order_id, LAPTEV.id)
        await service.appoint_deliveryman(order_id, ZUEV.id)
        await service.finish_delivery(MANAGER, order_id)

        assert [getattr(payload, "version", None) for payload, _ in events.emitted] == [3, 4, 5]

    @pytest.mark.parametrize("status", [DeliveryStatus.CREATED, DeliveryStatus.ACTIVATED])
    async def test_a_requested_cancel_of_an_open_delivery_cancels_it_and_says_so(
        self,
        service: DeliveryService,
        repository: FakeDeliveryRepository,
        events: RecordingEventSink,
        status: DeliveryStatus,
    ) -> None:
        delivery = stored(repository, status, courier=LAPTEV)

        await service.on_order_cancel_requested(
            OrderCancelRequested(order_id=delivery.id, version=3, reason="canceled by the customer")
        )

        assert delivery.status == DeliveryStatus.CANCELED
        assert delivery.cancel_reason == "canceled by the customer"
        assert events.emitted == [
            (
                DeliveryCanceled(order_id=delivery.id, reason="canceled by the customer", version=2),
                str(delivery.id),
            )
        ]

    @pytest.mark.parametrize("status", [DeliveryStatus.DONE, DeliveryStatus.CANCELED])
    async def test_a_requested_cancel_of_a_closed_delivery_changes_nothing(
        self,
        service: DeliveryService,
        repository: FakeDeliveryRepository,
        events: RecordingEventSink,
        status: DeliveryStatus,
    ) -> None:
        # A done delivery's delivery.finished, a canceled one's delivery.canceled, was sent already.
        delivery = stored(repository, status, courier=LAPTEV)

        await service.on_order_cancel_requested(
            OrderCancelRequested(order_id=delivery.id, version=3, reason="canceled by the customer")
        )

        assert delivery.status == status
        assert delivery.version == 1
        assert events.emitted == []

    async def test_a_requested_cancel_before_the_order_arrived_cancels_and_says_so(
        self, service: DeliveryService, repository: FakeDeliveryRepository, events: RecordingEventSink
    ) -> None:
        order_id = uuid.uuid4()

        await service.on_order_cancel_requested(
            OrderCancelRequested(order_id=order_id, version=3, reason="canceled by the customer")
        )
        await service.on_order_created(OrderCreated.model_validate(snapshot(order_id, 1)))
        await service.on_order_paid(OrderPaid.model_validate({**snapshot(order_id, 2), "paid_at": NOW}))

        delivery = await service.get_delivery(MANAGER, order_id)
        assert delivery.status == DeliveryStatus.CANCELED
        assert [type(payload) for payload, _ in events.emitted] == [DeliveryCanceled]

    async def test_a_requested_cancel_twice_is_answered_once(
        self, service: DeliveryService, repository: FakeDeliveryRepository, events: RecordingEventSink
    ) -> None:
        delivery = stored(repository, DeliveryStatus.ACTIVATED)
        request = OrderCancelRequested(order_id=delivery.id, version=3, reason="canceled by the customer")

        await service.on_order_cancel_requested(request)
        await service.on_order_cancel_requested(request)

        assert [type(payload) for payload, _ in events.emitted] == [DeliveryCanceled]

    async def test_a_legacy_order_created_with_a_naive_date_is_read_as_utc(
        self, service: DeliveryService
    ) -> None:
        order_id = uuid.uuid4()

        await service.on_legacy_order_created(
            LegacyOrderCreated(order_id=order_id, date=datetime(2025, 3, 3, 15, 0), address=ADDRESS)
        )

        delivery = await service.get_delivery(MANAGER, order_id)
        assert delivery.status == DeliveryStatus.CREATED
        assert delivery.date == DELIVERY_DATE

    async def test_legacy_paid_before_legacy_created_ends_activated(self, service: DeliveryService) -> None:
        order_id = uuid.uuid4()

        await service.on_legacy_order_paid(LegacyOrderPaid(id=order_id))
        with pytest.raises(DeliveryNotFound):
            await service.get_delivery(MANAGER, order_id)
        await service.on_legacy_order_created(
            LegacyOrderCreated(order_id=order_id, date=DELIVERY_DATE, address=ADDRESS)
        )

        delivery = await service.get_delivery(MANAGER, order_id)
        assert delivery.status == DeliveryStatus.ACTIVATED
