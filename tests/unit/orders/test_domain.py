"""The order state machine and the order total, without I/O."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from deliveryhub_kit.errors import InvalidTransition
from deliveryhub_orders import domain
from deliveryhub_orders.domain import CancelOutcome, Item, OrderStatus, order_total
from deliveryhub_orders.models import Order

PLACED_AT = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
NOW = PLACED_AT + timedelta(hours=2)
DELIVERY_DATE = datetime(2025, 3, 3, 15, 0, tzinfo=UTC)
ADDRESS = "Москва, ул. Ленина, д. 1"
LAPTEV_ID = uuid.UUID("85db966c-67f1-411e-95c0-f02edfa5464a")
LAPTEV_NAME = "Лаптев Иван Алексаендрович"
ZUEV_ID = uuid.UUID("31babbb3-5541-4a2a-8201-537cdff25fed")
ZUEV_NAME = "Зуев Андрей Сергеевич"

ALL_STATUSES = list(OrderStatus)
OPEN_STATUSES = [OrderStatus.CREATED, OrderStatus.PAID, OrderStatus.CANCELING]
CLOSED_STATUSES = [OrderStatus.DELIVERED, OrderStatus.CANCELED]
FINISHED_AT = NOW - timedelta(minutes=30)


def placed_order(*items: Item) -> Order:
    return domain.new_order(
        customer_id=uuid.uuid4(),
        address=ADDRESS,
        date=DELIVERY_DATE,
        items=list(items) or [Item(name="Чай", quantity=2, price=Decimal("150.25"))],
        now=PLACED_AT,
    )


def order_in(status: OrderStatus) -> Order:
    """An order brought to `status` by the moves a customer and the delivery would make."""
    order = placed_order()
    if status is OrderStatus.PAID:
        domain.pay(order, PLACED_AT)
    elif status is OrderStatus.CANCELING:
        domain.pay(order, PLACED_AT)
        domain.cancel(order, "canceled by the customer", PLACED_AT)
    elif status is OrderStatus.DELIVERED:
        domain.pay(order, PLACED_AT)
        domain.delivered(order, PLACED_AT, PLACED_AT)
    elif status is OrderStatus.CANCELED:
        domain.cancel(order, "canceled by the customer", PLACED_AT)
    assert order.status == status
    return order


class TestNewOrder:
    def test_a_new_order_is_created_at_version_one_with_its_total(self) -> None:
        customer_id = uuid.uuid4()

        order = domain.new_order(
            customer_id=customer_id,
            address=ADDRESS,
            date=DELIVERY_DATE,
            items=[
                Item(name="Чай", quantity=2, price=Decimal("150.25")),
                Item(name="Сахар", quantity=1, price=Decimal("89.90")),
            ],
            now=PLACED_AT,
        )

        assert order.status == OrderStatus.CREATED
        assert order.version == 1
        assert order.customer_id == customer_id
        assert order.total == Decimal("390.40")
        assert order.items == [
            {"name": "Чай", "quantity": 2, "price": "150.25"},
            {"name": "Сахар", "quantity": 1, "price": "89.90"},
        ]
        assert order.created_at == order.updated_at == PLACED_AT
        assert order.deliveryman_id is None

    def test_every_order_gets_an_id_of_its_own(self) -> None:
        assert placed_order().id != placed_order().id


class TestOrderTotal:
    def test_the_total_is_the_sum_of_quantity_times_price(self) -> None:
        items = [
            Item(name="Чай", quantity=3, price=Decimal("150.25")),
            Item(name="Мёд", quantity=1, price=Decimal("499.99")),
        ]

        assert order_total(items) == Decimal("950.74")

    def test_the_total_always_has_two_decimal_places(self) -> None:
        total = order_total([Item(name="Хлеб", quantity=2, price=Decimal(40))])

        assert total == Decimal("80.00")
        assert str(total) == "80.00"

    @pytest.mark.parametrize(
        ("price", "quantity", "total"),
        [
            (Decimal("0.125"), 1, Decimal("0.13")),  # half a cent rounds up
            (Decimal("0.124"), 1, Decimal("0.12")),
            (Decimal("0.335"), 3, Decimal("1.01")),  # 1.005: rounded once, on the sum
            (Decimal("33.333"), 3, Decimal("100.00")),
        ],
    )
    def test_the_total_is_rounded_to_the_cent(self, price: Decimal, quantity: int, total: Decimal) -> None:
        assert order_total([Item(name="Орехи", quantity=quantity, price=price)]) == total

    def test_free_items_cost_nothing(self) -> None:
        assert order_total([Item(name="Пакет", quantity=5, price=Decimal("0.00"))]) == Decimal("0.00")

    def test_no_items_total_zero(self) -> None:
        assert order_total([]) == Decimal("0.00")


class TestPay:
    def test_a_created_order_is_paid_and_its_version_grows_by_one(self) -> None:
        order = placed_order()

        domain.pay(order, NOW)

        assert order.status == OrderStatus.PAID
        assert order.paid_at == NOW
        assert order.updated_at == NOW
        assert order.version == 2

    @pytest.mark.parametrize(
        "status", [status for status in OrderStatus if status is not OrderStatus.CREATED]
    )
    def test_only_a_created_order_can_be_paid(self, status: OrderStatus) -> None:
        order = order_in(status)
        version = order.version

        with pytest.raises(InvalidTransition, match=f"this one is {status}"):
            domain.pay(order, NOW)

        assert order.status == status
        assert order.version == version
        assert order.updated_at == PLACED_AT


class TestCancel:
    def test_an_unpaid_order_is_canceled_at_once_with_its_reason(self) -> None:
        order = order_in(OrderStatus.CREATED)

        assert domain.cancel(order, "canceled by the shop manager", NOW) is CancelOutcome.CANCELED

        assert order.status == OrderStatus.CANCELED
        assert order.cancel_reason == "canceled by the shop manager"
        assert order.canceled_at == NOW
        assert order.cancel_requested_at is None
        assert order.updated_at == NOW
        assert order.version == 2

    def test_a_paid_order_asks_the_delivery_service_and_waits_for_it(self) -> None:
        # Only the delivery service knows whether the parcel was handed over already.
        order = order_in(OrderStatus.PAID)
        version = order.version

        assert domain.cancel(order, "canceled by the customer", NOW) is CancelOutcome.REQUESTED

        assert order.status == OrderStatus.CANCELING
        assert order.cancel_reason == "canceled by the customer"
        assert order.cancel_requested_at == NOW
        assert order.canceled_at is None
        assert order.version == version + 1

    def test_a_cancel_already_asked_for_is_not_asked_again(self) -> None:
        order = order_in(OrderStatus.CANCELING)
        version = order.version

        with pytest.raises(InvalidTransition, match="already requested"):
            domain.cancel(order, "canceled by the shop manager", NOW)

        assert order.version == version
        assert order.cancel_reason == "canceled by the customer"

    @pytest.mark.parametrize("status", CLOSED_STATUSES)
    def test_a_delivered_or_canceled_order_cannot_be_canceled(self, status: OrderStatus) -> None:
        order = order_in(status)
        version = order.version
        reason = order.cancel_reason

        with pytest.raises(InvalidTransition, match=f"is {status} cannot be canceled"):
            domain.cancel(order, "canceled by the customer again", NOW)

        assert order.status == status
        assert order.version == version
        assert order.cancel_reason == reason


class TestDelivered:
    @pytest.mark.parametrize("status", OPEN_STATUSES)
    def test_a_finished_delivery_delivers_an_open_order(self, status: OrderStatus) -> None:
        order = order_in(status)
        version = order.version

        assert domain.delivered(order, FINISHED_AT, NOW) is True

        assert order.status == OrderStatus.DELIVERED
        assert order.delivered_at == NOW
        assert order.updated_at == NOW
        assert order.version == version + 1

    def test_a_cancel_asked_for_after_the_handover_is_refused_and_kept(self) -> None:
        order = order_in(OrderStatus.CANCELING)

        assert domain.delivered(order, FINISHED_AT, NOW) is True

        assert order.status == OrderStatus.DELIVERED
        assert order.cancel_refused == "too late: delivered at 2025-03-01 13:30 UTC"
        assert order.cancel_requested_at == PLACED_AT
        assert order.canceled_at is None

    def test_a_delivery_without_a_cancel_request_has_no_refusal(self) -> None:
        order = order_in(OrderStatus.PAID)

        domain.delivered(order, FINISHED_AT, NOW)

        assert order.cancel_refused is None

    @pytest.mark.parametrize("status", CLOSED_STATUSES)
    def test_a_delivered_or_canceled_order_does_not_move(self, status: OrderStatus) -> None:
        order = order_in(status)
        version = order.version

        assert domain.delivered(order, FINISHED_AT, NOW) is False

        assert order.status == status
        assert order.version == version
        assert order.updated_at == PLACED_AT


class TestDeliveryCanceled:
    @pytest.mark.parametrize("status", OPEN_STATUSES)
    def test_a_canceled_delivery_cancels_an_open_order_with_its_reason(self, status: OrderStatus) -> None:
        order = order_in(status)
        version = order.version

        assert domain.delivery_canceled(order, "the courier could not reach the address", NOW) is True

        assert order.status == OrderStatus.CANCELED
        assert order.cancel_reason == "the courier could not reach the address"
        assert order.canceled_at == NOW
        assert order.version == version + 1

    @pytest.mark.parametrize("status", CLOSED_STATUSES)
    def test_a_delivered_or_canceled_order_does_not_move(self, status: OrderStatus) -> None:
        order = order_in(status)
        version = order.version
        reason = order.cancel_reason

        assert domain.delivery_canceled(order, "canceled by the shop manager", NOW) is False

        assert order.status == status
        assert order.version == version
        assert order.cancel_reason == reason


class TestShowCourier:
    @pytest.mark.parametrize("status", ALL_STATUSES)
    def test_the_appointed_courier_is_shown_whatever_the_status(self, status: OrderStatus) -> None:
        order = order_in(status)
        version = order.version

        assert domain.show_deliveryman(order, LAPTEV_ID, LAPTEV_NAME, 3, NOW) is True

        assert (order.deliveryman_id, order.deliveryman_name) == (LAPTEV_ID, LAPTEV_NAME)
        assert order.courier_version == 3
        assert order.status == status
        assert order.updated_at == NOW
        assert order.version == version + 1

    def test_the_courier_already_shown_changes_nothing(self) -> None:
        order = order_in(OrderStatus.PAID)
        domain.show_deliveryman(order, LAPTEV_ID, LAPTEV_NAME, 3, PLACED_AT)
        version = order.version

        assert domain.show_deliveryman(order, LAPTEV_ID, LAPTEV_NAME, 3, NOW) is False

        assert order.version == version
        assert order.updated_at == PLACED_AT

    def test_a_later_appointment_replaces_the_courier_shown(self) -> None:
        order = order_in(OrderStatus.PAID)
        domain.show_deliveryman(order, LAPTEV_ID, LAPTEV_NAME, 3, PLACED_AT)
        version = order.version

        assert domain.show_deliveryman(order, ZUEV_ID, ZUEV_NAME, 4, NOW) is True

        assert (order.deliveryman_id, order.deliveryman_name) == (ZUEV_ID, ZUEV_NAME)
        assert order.courier_version == 4
        assert order.version == version + 1

    def test_an_appointment_overtaken_by_a_later_one_changes_nothing(self) -> None:
        # The re-appointment (delivery version 4) arrived first; the first appointment (3) late.
        order = order_in(OrderStatus.PAID)
        domain.show_deliveryman(order, ZUEV_ID, ZUEV_NAME, 4, PLACED_AT)
        version = order.version

        assert domain.show_deliveryman(order, LAPTEV_ID, LAPTEV_NAME, 3, NOW) is False

        assert (order.deliveryman_id, order.deliveryman_name) == (ZUEV_ID, ZUEV_NAME)
        assert order.courier_version == 4
        assert order.version == version
        assert order.updated_at == PLACED_AT


Move = Callable[[Order], object]

EVERY_MOVE: dict[str, Move] = {
    "pay": lambda order: domain.pay(order, NOW),
    "cancel": lambda order: domain.cancel(order, "canceled by the customer", NOW),
    "delivered": lambda order: domain.delivered(order, FINISHED_AT, NOW),
    "delivery_canceled": lambda order: domain.delivery_canceled(order, "no courier", NOW),
    "show_deliveryman": lambda order: domain.show_deliveryman(order, LAPTEV_ID, LAPTEV_NAME, 2, NOW),
}


@pytest.mark.parametrize("move", list(EVERY_MOVE))
def test_a_delivered_order_is_never_moved_backwards(move: str) -> None:
    order = order_in(OrderStatus.DELIVERED)

    with contextlib.suppress(InvalidTransition):
        EVERY_MOVE[move](order)

    assert order.status == OrderStatus.DELIVERED
    assert order.cancel_reason is None


@pytest.mark.parametrize("move", list(EVERY_MOVE))
def test_a_canceled_order_stays_canceled(move: str) -> None:
    order = order_in(OrderStatus.CANCELED)

    with contextlib.suppress(InvalidTransition):
        EVERY_MOVE[move](order)

    assert order.status == OrderStatus.CANCELED
    assert order.cancel_reason == "canceled by the customer"
