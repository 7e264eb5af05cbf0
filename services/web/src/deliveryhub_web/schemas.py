"""The order form and the orders API's body: one from the other, with what a person typed made exact."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from typing import TypedDict

from deliveryhub_web.forms import CheckedForm
from deliveryhub_web.resources import NewItem, NewOrder


class OrderFormLine(TypedDict):
    """One line of the order form, as typed."""

    name: str
    quantity: str
    price: str


class OrderFormValues(TypedDict):
    """What the order form holds, as typed: shown again as it was when the order is refused."""

    address: str
    date: str
    items: list[OrderFormLine]
    idempotency_key: str
    timezone_offset: str


def order_form_defaults() -> OrderFormValues:
    """An empty order form: one line, delivery this time tomorrow."""
    return {
        "address": "",
        "date": (datetime.now().replace(second=0, microsecond=0) + timedelta(days=1)).strftime(
            "%Y-%m-%dT%H:%M"
        ),
        "items": [{"name": "", "quantity": "1", "price": ""}],
        "idempotency_key": str(uuid.uuid4()),
        "timezone_offset": "0",
    }


def order_form_values(form: CheckedForm) -> OrderFormValues:
    """The order form as it was submitted; the lines left empty dropped."""
    names, quantities, prices = form.list("item_name"), form.list("item_quantity"), form.list("item_price")
    items: list[OrderFormLine] = [
        {"name": name, "quantity": quantity, "price": price}
        for name, quantity, price in zip(names, quantities, prices, strict=False)
        if name.strip() or price.strip()
    ]
    return {
        "address": form.text("address"),
        "date": form.text("date"),
        "items": items or [{"name": "", "quantity": "1", "price": ""}],
        "idempotency_key": form.text("idempotency_key") or str(uuid.uuid4()),
        "timezone_offset": form.text("timezone_offset") or "0",
    }


def order_body(values: OrderFormValues) -> NewOrder:
    """The orders API's body from the form; the browser's time zone makes the date exact."""
    try:
        local = datetime.fromisoformat(values["date"])
        offset = int(values["timezone_offset"])
    except ValueError as error:
        raise ValueError("choose a delivery date and time") from error
    if not -14 * 60 <= offset <= 14 * 60:
        raise ValueError("the time zone is not valid")
    date = local.replace(tzinfo=timezone(-timedelta(minutes=offset)))
    items = []
    for item in values["items"]:
        try:
            quantity = int(item["quantity"])
        except ValueError as error:
            raise ValueError(f"the quantity of {item['name'] or 'an item'} must be a whole number") from error
        items.append(NewItem(name=item["name"], quantity=quantity, price=item["price"].replace(",", ".")))
    return NewOrder(address=values["address"], date=date.isoformat(), items=items)
