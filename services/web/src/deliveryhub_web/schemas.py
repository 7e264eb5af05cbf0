"""The order form and the orders API's body: one from the other, with what a person typed made exact."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

from deliveryhub_web.forms import CheckedForm


def order_form_defaults() -> dict[str, Any]:
    return {
        "address": "",
        "date": (datetime.now().replace(second=0, microsecond=0) + timedelta(days=1)).strftime(
            "%Y-%m-%dT%H:%M"
        ),
        "items": [{"name": "", "quantity": "1", "price": ""}],
        "idempotency_key": str(uuid.uuid4()),
        "timezone_offset": "0",
    }


def order_form_values(form: CheckedForm) -> dict[str, Any]:
    names, quantities, prices = form.list("item_name"), form.list("item_quantity"), form.list("item_price")
    items = [
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


def order_body(values: dict[str, Any]) -> dict[str, Any]:
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
        items.append({"name": item["name"], "quantity": quantity, "price": item["price"].replace(",", ".")})
    return {"address": values["address"], "date": date.isoformat(), "items": items}
