"""Fields a caller must not set (status, total, owner, id, version) in any body are refused.

The server decides these; a body that names one is a 422 and nothing is stored or announced,
rather than the field being silently taken or silently dropped.
"""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from tests.support.orders import order_body
from tests.support.shop import LAPTEV, Caller, Shop

pytestmark = pytest.mark.integration

SOMEONE_ELSE = uuid.uuid4()
AN_ID = uuid.uuid4()

SERVER_FIELDS: dict[str, Any] = {
    "status": "delivered",
    "total": "0.01",
    "customer_id": str(SOMEONE_ELSE),
    "id": str(AN_ID),
    "version": 99,
}
FIELDS = [pytest.param(name, value, id=name) for name, value in SERVER_FIELDS.items()]


def assert_unknown_field_refused(response: httpx.Response, field: str) -> None:
    assert response.status_code == 422, response.text
    body = response.json()
    assert set(body) == {"error", "detail"}
    assert body["error"] == "validation_error"
    assert field in body["detail"]


async def assert_no_order_stored(shop: Shop, customer: Caller, outbox_size: int) -> None:
    assert await shop.stored_orders_of(customer.subject) == []
    assert await shop.stored_orders_of(SOMEONE_ELSE) == []
    assert await shop.orders_records.get(AN_ID) is None
    assert await shop.orders_outbox_size() == outbox_size
    listed = await shop.orders.get("/api/orders", headers=customer.headers(shop.tokens))
    assert listed.json() == []


@pytest.mark.parametrize(("field", "value"), FIELDS)
async def test_an_order_naming_a_server_field_is_refused(shop: Shop, field: str, value: Any) -> None:
    customer = Caller.customer()
    outbox_size = await shop.orders_outbox_size()

    response = await shop.orders.post(
        "/api/orders", json=order_body(**{field: value}), headers=customer.headers(shop.tokens)
    )

    assert_unknown_field_refused(response, field)
    await assert_no_order_stored(shop, customer, outbox_size)


@pytest.mark.parametrize(("field", "value"), FIELDS)
async def test_an_item_naming_a_server_field_is_refused(shop: Shop, field: str, value: Any) -> None:
    customer = Caller.customer()
    outbox_size = await shop.orders_outbox_size()
    body = order_body()
    body["items"][1][field] = value

    response = await shop.orders.post("/api/orders", json=body, headers=customer.headers(shop.tokens))

    assert_unknown_field_refused(response, f"items.1.{field}")
    await assert_no_order_stored(shop, customer, outbox_size)


@pytest.mark.parametrize(("field", "value"), FIELDS)
async def test_an_appointment_naming_a_server_field_is_refused(shop: Shop, field: str, value: Any) -> None:
    delivery_id = await shop.activated_delivery()
    before = await shop.delivery_of(delivery_id)

    response = await shop.delivery.post(
        f"/api/delivery/{delivery_id}/appoint",
        json={"deliveryman_id": str(LAPTEV), field: value},
        headers=Caller.manager().headers(shop.tokens),
    )

    assert_unknown_field_refused(response, field)
    assert await shop.delivery_of(delivery_id) == before
    assert before is not None
    assert before["status"] == "activated"
    assert before["deliveryman"] is None
    assert await shop.delivery_events_about(delivery_id) == []
    assert (await shop.order(delivery_id))["deliveryman"] is None
