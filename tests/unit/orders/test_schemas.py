"""What a new order must look like, and how an order is shown."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError

from deliveryhub_orders import domain
from deliveryhub_orders.domain import Item, OrderStatus, order_total
from deliveryhub_orders.schemas import MAX_ITEMS, MAX_TOTAL, OrderCreate, OrderOut

ADDRESS = "Москва, ул. Ленина, д. 1"
NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def item(**changes: Any) -> dict[str, Any]:
    return {"name": "Чай", "quantity": 2, "price": "150.25", **changes}


def order_request(**changes: Any) -> dict[str, Any]:
    return {"address": ADDRESS, "date": "2025-03-03T15:00:00+03:00", "items": [item()], **changes}


def test_a_good_order_passes_with_its_address_and_names_trimmed() -> None:
    request = OrderCreate.model_validate(
        order_request(
            address="  Москва, ул. Ленина, д. 1 ",
            items=[item(name=" Чай "), item(name="Мёд", quantity=1, price=499)],
        )
    )

    assert request.address == ADDRESS
    assert request.date == datetime(2025, 3, 3, 12, 0, tzinfo=UTC)
    assert [entry.to_item() for entry in request.items] == [
        Item(name="Чай", quantity=2, price=Decimal("150.25")),
        Item(name="Мёд", quantity=1, price=Decimal(499)),
    ]


def test_a_hundred_items_are_allowed() -> None:
    request = OrderCreate.model_validate(order_request(items=[item()] * MAX_ITEMS))

    assert len(request.items) == 100


def test_a_free_item_is_allowed() -> None:
    request = OrderCreate.model_validate(order_request(items=[item(price="0")]))

    assert request.items[0].price == Decimal(0)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        pytest.param({"address": ""}, "address", id="empty address"),
        pytest.param({"address": "   \t "}, "address", id="blank address"),
        pytest.param({"address": "д" * 501}, "address", id="address too long"),
        pytest.param({"address": None}, "address", id="no address"),
        pytest.param({"address": "Москва\x00"}, "address", id="NUL in address"),
        pytest.param({"date": "2025-03-03T15:00:00"}, "date", id="naive date"),
        pytest.param({"date": "9999-12-31T23:59:59-05:00"}, "date", id="date after year 9999 in UTC"),
        pytest.param({"date": "0001-01-01T00:00:00+05:00"}, "date", id="date before year 1 in UTC"),
        pytest.param({"date": "tomorrow"}, "date", id="not a date"),
        pytest.param({"items": []}, "items", id="no items"),
        pytest.param({"items": [item()] * 101}, "items", id="101 items"),
        pytest.param({"items": [item(quantity=0)]}, "items.0.quantity", id="quantity 0"),
        pytest.param({"items": [item(quantity=-1)]}, "items.0.quantity", id="negative quantity"),
        pytest.param({"items": [item(quantity=1.5)]}, "items.0.quantity", id="fractional quantity"),
        pytest.param({"items": [item(price="-0.01")]}, "items.0.price", id="negative price"),
        pytest.param({"items": [item(price="10.005")]}, "items.0.price", id="3 decimals"),
        pytest.param({"items": [item(name="  ")]}, "items.0.name", id="blank item name"),
        pytest.param({"items": [item(name="x" * 201)]}, "items.0.name", id="item name too long"),
        pytest.param({"items": [item(name="Ч\x00ай")]}, "items.0.name", id="NUL in item name"),
        pytest.param({"discount": 10}, "discount", id="unknown field"),
        pytest.param({"items": [item(discount=10)]}, "items.0.discount", id="unknown item field"),
        pytest.param({"total": "1.00"}, "total", id="server-computed total"),
    ],
)
def test_an_invalid_order_is_refused_naming_the_field(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as refused:
        OrderCreate.model_validate(order_request(**changes))

    assert [".".join(str(part) for part in error["loc"]) for error in refused.value.errors()] == [field]


def test_the_largest_total_an_order_may_have_passes() -> None:
    largest = [item(quantity=100, price="9999999999.99"), item(quantity=1, price="0.99")]

    request = OrderCreate.model_validate(order_request(items=largest))

    assert order_total(entry.to_item() for entry in request.items) == MAX_TOTAL == Decimal("999999999999.99")


def test_a_total_beyond_the_largest_is_refused() -> None:
    too_large = [item(quantity=100, price="9999999999.99"), item(quantity=1, price="1.00")]

    with pytest.raises(ValidationError, match=r"total is more than 999999999999\.99"):
        OrderCreate.model_validate(order_request(items=too_large))


@pytest.mark.parametrize("missing", ["address", "date", "items"])
def test_every_field_is_required(missing: str) -> None:
    body = order_request()
    del body[missing]

    with pytest.raises(ValidationError, match=missing):
        OrderCreate.model_validate(body)


def test_an_order_is_shown_with_its_total_and_courier() -> None:
    customer_id = uuid.uuid4()
    order = domain.new_order(
        customer_id=customer_id,
        address=ADDRESS,
        date=datetime(2025, 3, 3, 12, 0, tzinfo=UTC),
        items=[Item(name="Чай", quantity=2, price=Decimal("150.25"))],
        now=NOW,
    )
    domain.pay(order, NOW)
    domain.show_deliveryman(order, uuid.UUID("85db966c-67f1-411e-95c0-f02edfa5464a"), "Лаптев Иван", 2, NOW)

    shown = OrderOut.of(order).to_document()

    assert shown == {
        "id": str(order.id),
        "customer_id": str(customer_id),
        "address": ADDRESS,
        "date": "2025-03-03T12:00:00Z",
        "items": [{"name": "Чай", "quantity": 2, "price": 150.25}],
        "total": 300.5,
        "status": OrderStatus.PAID.value,
        "deliveryman": {"id": "85db966c-67f1-411e-95c0-f02edfa5464a", "name": "Лаптев Иван"},
        "created_at": "2025-03-01T12:00:00Z",
        "updated_at": "2025-03-01T12:00:00Z",
        "cancel_requested_at": None,
        "cancel_refused": None,
    }


def test_an_order_without_a_courier_shows_none() -> None:
    order = domain.new_order(
        customer_id=uuid.uuid4(),
        address=ADDRESS,
        date=NOW,
        items=[Item(name="Чай", quantity=1, price=Decimal("1.00"))],
        now=NOW,
    )

    assert OrderOut.of(order).deliveryman is None
