"""The delivery state machine and the convergence of order events, without I/O."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from deliveryhub_delivery import domain
from deliveryhub_delivery.domain import DeliveryStatus, OrderChange, OrderFacts
from deliveryhub_delivery.models import Delivery, Deliveryman
from deliveryhub_kit.errors import InvalidTransition

CREATED_AT = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
DELIVERY_DATE = datetime(2025, 3, 3, 15, 0, tzinfo=UTC)
ADDRESS = "Москва, ул. Ленина, д. 1"
CUSTOMER_ID = uuid.UUID("0b7e3c3a-55a4-4f6e-9d8c-0d6c1f1d2a11")


def courier(name: str = "Зуев Андрей Сергеевич") -> Deliveryman:
    return Deliveryman(id=uuid.uuid4(), name=name)


def delivery_in(status: DeliveryStatus, *, appointed: Deliveryman | None = None) -> Delivery:
    delivery = domain.new_delivery(uuid.uuid4(), CREATED_AT)
    delivery.address = ADDRESS
    delivery.date = DELIVERY_DATE
    delivery.order_version = 1
    delivery.status = status
    if appointed is not None:
        delivery.deliveryman = appointed
        delivery.deliveryman_id = appointed.id
    return delivery


def facts(
    order_id: uuid.UUID,
    change: OrderChange,
    version: int | None,
    *,
    address: str | None = ADDRESS,
    date: datetime | None = DELIVERY_DATE,
    reason: str | None = None,
) -> OrderFacts:
    if change is OrderChange.CANCELED:
        return OrderFacts(order_id, change, version=version, reason=reason)
    return OrderFacts(order_id, change, version=version, address=address, date=date, customer_id=CUSTOMER_ID)


def test_a_new_delivery_is_created_and_waits_for_its_snapshot() -> None:
    order_id = uuid.uuid4()

    delivery = domain.new_delivery(order_id, NOW)

    assert delivery.id == order_id
    assert delivery.status == DeliveryStatus.CREATED
    assert delivery.order_version == 0
    assert delivery.address is None
    assert delivery.deliveryman_id is None


class TestAppoint:
    def test_an_activated_delivery_takes_a_courier(self) -> None:
        delivery = delivery_in(DeliveryStatus.ACTIVATED)
        man = courier()

        domain.appoint(delivery, man, NOW)

        assert delivery.status == DeliveryStatus.ACTIVATED
        assert delivery.deliveryman_id == man.id
        assert delivery.deliveryman is man
        assert delivery.updated_at == NOW

    def test_an_appointed_delivery_can_be_given_to_another_courier(self) -> None:
        first, second = courier("Лаптев Иван Алексаендрович"), courier("Кудж Станислав Алексеевич")
        delivery = delivery_in(DeliveryStatus.ACTIVATED, appointed=first)

        domain.appoint(delivery, second, NOW)

        assert delivery.deliveryman_id == second.id

    @pytest.mark.parametrize("status", [DeliveryStatus.CREATED, DeliveryStatus.DONE, DeliveryStatus.CANCELED])
    def test_no_other_status_takes_a_courier(self, status: DeliveryStatus) -> None:
        delivery = delivery_in(status)

        with pytest.raises(InvalidTransition, match=f"this one is {status.value}"):
            domain.appoint(delivery, courier(), NOW)

        assert delivery.status == status
        assert delivery.deliveryman_id is None
        assert delivery.updated_at == CREATED_AT


class TestFinish:
    def test_an_activated_delivery_with_a_courier_is_done(self) -> None:
        man = courier()
        delivery = delivery_in(DeliveryStatus.ACTIVATED, appointed=man)

        domain.finish(delivery, NOW)

        assert delivery.status == DeliveryStatus.DONE
        assert delivery.finished_at == NOW
        assert delivery.deliveryman_id == man.id

    def test_an_activated_delivery_without_a_courier_cannot_be_finished(self) -> None:
        delivery = delivery_in(DeliveryStatus.ACTIVATED)

        with pytest.raises(InvalidTransition, match="no courier"):
            domain.finish(delivery, NOW)

        assert delivery.status == DeliveryStatus.ACTIVATED
        assert delivery.finished_at is None

    @pytest.mark.parametrize("status", [DeliveryStatus.CREATED, DeliveryStatus.DONE, DeliveryStatus.CANCELED])
    def test_no_other_status_can_be_finished(self, status: DeliveryStatus) -> None:
        delivery = delivery_in(status, appointed=courier())

        with pytest.raises(InvalidTransition, match=f"this one is {status.value}"):
            domain.finish(delivery, NOW)

        assert delivery.status == status
        assert delivery.finished_at is None
        assert delivery.updated_at == CREATED_AT


class TestCancel:
    @pytest.mark.parametrize("status", [DeliveryStatus.CREATED, DeliveryStatus.ACTIVATED])
    def test_a_delivery_not_yet_done_can_be_canceled(self, status: DeliveryStatus) -> None:
        delivery = delivery_in(status)

        domain.cancel(delivery, "the customer moved", NOW)

        assert delivery.status == DeliveryStatus.CANCELED
        assert delivery.cancel_reason == "the customer moved"
        assert delivery.canceled_at == NOW

    def test_an_appointed_delivery_can_be_canceled(self) -> None:
        delivery = delivery_in(DeliveryStatus.ACTIVATED, appointed=courier())

        domain.cancel(delivery, "out of stock", NOW)

        assert delivery.status == DeliveryStatus.CANCELED

    @pytest.mark.parametrize("status", [DeliveryStatus.DONE, DeliveryStatus.CANCELED])
    def test_a_done_or_canceled_delivery_cannot_be_canceled(self, status: DeliveryStatus) -> None:
        delivery = delivery_in(status)

        with pytest.raises(InvalidTransition, match=f"that is {status.value} cannot be canceled"):
            domain.cancel(delivery, "too late", NOW)

        assert delivery.status == status
        assert delivery.cancel_reason is None
        assert delivery.canceled_at is None


class TestOrderEvents:
    def test_order_created_fills_the_snapshot_and_keeps_the_delivery_created(self) -> None:
        delivery = domain.new_delivery(uuid.uuid4(), CREATED_AT)

        domain.absorb_order_facts(delivery, facts(delivery.id, OrderChange.CREATED, 1), NOW)

        assert delivery.status == DeliveryStatus.CREATED
        assert delivery.address == ADDRESS
        assert delivery.date == DELIVERY_DATE
        assert delivery.customer_id == CUSTOMER_ID
        assert delivery.order_version == 1

    def test_order_paid_activates_a_created_delivery(self) -> None:
        delivery = domain.new_delivery(uuid.uuid4(), CREATED_AT)
        domain.absorb_order_facts(delivery, facts(delivery.id, OrderChange.CREATED, 1), CREATED_AT)

        domain.absorb_order_facts(delivery, facts(delivery.id, OrderChange.PAID, 2), NOW)

        assert delivery.status == DeliveryStatus.ACTIVATED
        assert delivery.activated_at == NOW
        assert delivery.order_version == 2

    def test_order_paid_before_order_created_still_activates(self) -> None:
        delivery = domain.new_delivery(uuid.uuid4(), CREATED_AT)

        domain.absorb_order_facts(delivery, facts(delivery.id, OrderChange.PAID, 2), NOW)
        domain.absorb_order_facts(delivery, facts(delivery.id, OrderChange.CREATED, 1), NOW)

        assert delivery.status == DeliveryStatus.ACTIVATED
        assert delivery.address == ADDRESS
        assert delivery.order_version == 2

    def test_a_stale_event_fills_missing_data_without_moving_the_status(self) -> None:
        delivery = domain.new_delivery(uuid.uuid4(), CREATED_AT)
        domain.absorb_order_facts(
            delivery, facts(delivery.id, OrderChange.PAID, 2, address=None, date=None), NOW
        )
        assert delivery.address is None

        later = NOW + timedelta(minutes=5)
        domain.absorb_order_facts(delivery, facts(delivery.id, OrderChange.CREATED, 1), later)

        assert delivery.address == ADDRESS
        assert delivery.date == DELIVERY_DATE
        assert delivery.status == DeliveryStatus.ACTIVATED
        assert delivery.order_version == 2

    def test_a_stale_event_does_not_overwrite_data_already_known(self) -> None:
        delivery = delivery_in(DeliveryStatus.ACTIVATED)
        delivery.order_version = 2

        domain.absorb_order_facts(
            delivery, facts(delivery.id, OrderChange.CREATED, 1, address="an older address"), NOW
        )

        assert delivery.address == ADDRESS

    def test_order_canceled_first_then_late_created_and_paid_stays_canceled(self) -> None:
        delivery = domain.new_delivery(uuid.uuid4(), CREATED_AT)

        domain.absorb_order_facts(
            delivery, facts(delivery.id, OrderChange.CANCELED, 3, reason="changed my mind"), NOW
        )
        domain.absorb_order_facts(delivery, facts(delivery.id, OrderChange.CREATED, 1), NOW)
        domain.absorb_order_facts(delivery, facts(delivery.id, OrderChange.PAID, 2), NOW)

        assert delivery.status == DeliveryStatus.CANCELED
        assert delivery.cancel_reason == "changed my mind"
        assert delivery.address == ADDRESS
        assert delivery.activated_at is None
        assert delivery.order_version == 3

    @pytest.mark.parametrize("status", [DeliveryStatus.CREATED, DeliveryStatus.ACTIVATED])
    def test_order_canceled_cancels_a_delivery_not_yet_done(self, status: DeliveryStatus) -> None:
        delivery = delivery_in(status)

        domain.absorb_order_facts(
            delivery, facts(delivery.id, OrderChange.CANCELED, 2, reason="customer request"), NOW
        )

        assert delivery.status == DeliveryStatus.CANCELED
        assert delivery.cancel_reason == "customer request"
        assert delivery.canceled_at == NOW

    def test_order_canceled_without_a_reason_gets_one(self) -> None:
        delivery = delivery_in(DeliveryStatus.CREATED)

        domain.absorb_order_facts(delivery, facts(delivery.id, OrderChange.CANCELED, 2), NOW)

        assert delivery.cancel_reason == "the order was canceled"

    def test_order_canceled_leaves_a_done_delivery_done(self) -> None:
        delivery = delivery_in(DeliveryStatus.DONE, appointed=courier())

        domain.absorb_order_facts(delivery, facts(delivery.id, OrderChange.CANCELED, 5), NOW)

        assert delivery.status == DeliveryStatus.DONE
        assert delivery.canceled_at is None

    def test_order_paid_does_not_revive_a_canceled_delivery(self) -> None:
        delivery = delivery_in(DeliveryStatus.CANCELED)

        domain.absorb_order_facts(delivery, facts(delivery.id, OrderChange.PAID, 2), NOW)

        assert delivery.status == DeliveryStatus.CANCELED

    def test_a_redelivered_event_changes_nothing(self) -> None:
        delivery = domain.new_delivery(uuid.uuid4(), CREATED_AT)
        paid = facts(delivery.id, OrderChange.PAID, 2)
        domain.absorb_order_facts(delivery, paid, NOW)

        domain.absorb_order_facts(delivery, paid, NOW + timedelta(hours=1))

        assert delivery.activated_at == NOW
        assert delivery.updated_at == NOW

    def test_a_stale_cancel_does_not_cancel(self) -> None:
        delivery = delivery_in(DeliveryStatus.ACTIVATED)
        delivery.order_version = 4

        domain.absorb_order_facts(delivery, facts(delivery.id, OrderChange.CANCELED, 3), NOW)

        assert delivery.status == DeliveryStatus.ACTIVATED

    def test_legacy_paid_before_legacy_created_converges_to_activated(self) -> None:
        delivery = domain.new_delivery(uuid.uuid4(), CREATED_AT)

        domain.absorb_order_facts(delivery, OrderFacts(delivery.id, OrderChange.PAID), NOW)
        domain.absorb_order_facts(
            delivery,
            OrderFacts(delivery.id, OrderChange.CREATED, address=ADDRESS, date=DELIVERY_DATE),
            NOW,
        )

        assert delivery.status == DeliveryStatus.ACTIVATED
        assert delivery.address == ADDRESS
        assert delivery.date == DELIVERY_DATE
        assert delivery.order_version == 0

    def test_legacy_facts_never_move_a_versioned_delivery_backwards(self) -> None:
        delivery = domain.new_delivery(uuid.uuid4(), CREATED_AT)
        domain.absorb_order_facts(delivery, facts(delivery.id, OrderChange.CANCELED, 3), NOW)

        domain.absorb_order_facts(delivery, OrderFacts(delivery.id, OrderChange.PAID), NOW)
        domain.absorb_order_facts(
            delivery, OrderFacts(delivery.id, OrderChange.CREATED, address=ADDRESS), NOW
        )

        assert delivery.status == DeliveryStatus.CANCELED
        assert delivery.order_version == 3
        assert delivery.address == ADDRESS
