"""Object-level access: another customer's order and another courier's delivery do not exist for you.

The answer is the 404 that an order or delivery that does not exist gets, so that a caller cannot
tell the two apart, and the object and its events are left as they were.
"""

from __future__ import annotations

import uuid

import httpx
import pytest

from tests.support.shop import LAPTEV, ZUEV, Caller, Shop

pytestmark = pytest.mark.integration


def assert_not_found(response: httpx.Response, unknown: httpx.Response) -> None:
    """A 404 with the error body, word for word the answer about an object that does not exist."""
    assert response.status_code == 404, response.text
    body = response.json()
    assert set(body) == {"error", "detail"}
    assert body["error"].endswith("not_found")
    assert unknown.status_code == 404, unknown.text
    assert body["error"] == unknown.json()["error"]
    assert _without_ids(body["detail"]) == _without_ids(unknown.json()["detail"])


def _without_ids(detail: str) -> str:
    return " ".join("<id>" if _is_uuid(word) else word for word in detail.split())


def _is_uuid(word: str) -> bool:
    try:
        uuid.UUID(word)
    except ValueError:
        return False
    return True


@pytest.mark.parametrize(
    ("method", "action"),
    [("GET", ""), ("POST", "/pay"), ("POST", "/cancel")],
    ids=["read", "pay", "cancel"],
)
async def test_a_customer_cannot_reach_another_customers_order(shop: Shop, method: str, action: str) -> None:
    owner, intruder = Caller.customer(), Caller.customer()
    order_id = await shop.place_order(owner)
    before = await shop.order(order_id)
    headers = intruder.headers(shop.tokens)

    response = await shop.orders.request(method, f"/api/orders/{order_id}{action}", headers=headers)
    unknown = await shop.orders.request(method, f"/api/orders/{uuid.uuid4()}{action}", headers=headers)

    assert_not_found(response, unknown)
    assert await shop.order(order_id) == before
    assert await shop.orders_events_about(order_id) == ["order.created"]
    assert (
        await shop.orders.get(f"/api/orders/{order_id}", headers=owner.headers(shop.tokens))
    ).json() == before


async def test_a_customer_cannot_cancel_another_customers_paid_order(shop: Shop) -> None:
    owner, intruder = Caller.customer(), Caller.customer()
    order_id = await shop.paid_order(owner)

    response = await shop.orders.post(f"/api/orders/{order_id}/cancel", headers=intruder.headers(shop.tokens))

    assert response.status_code == 404, response.text
    assert (await shop.order(order_id))["status"] == "paid"
    assert await shop.orders_events_about(order_id) == ["order.created", "order.paid"]


async def test_a_customer_lists_only_their_own_orders(shop: Shop) -> None:
    customer, other = Caller.customer(), Caller.customer()
    own = {str(await shop.place_order(customer)) for _ in range(2)}
    others = {str(await shop.place_order(other)) for _ in range(2)}
    paid = str(await shop.paid_order(customer))

    listed = (await shop.orders.get("/api/orders", headers=customer.headers(shop.tokens))).json()
    listed_paid = (
        await shop.orders.get("/api/orders", params={"status": "paid"}, headers=customer.headers(shop.tokens))
    ).json()

    assert {order["id"] for order in listed} == {*own, paid}
    assert not others & {order["id"] for order in listed}
    assert {order["customer_id"] for order in listed} == {str(customer.subject)}
    assert [order["id"] for order in listed_paid] == [paid]


@pytest.mark.parametrize(("method", "action"), [("GET", ""), ("POST", "/finish")], ids=["read", "finish"])
@pytest.mark.parametrize(
    "appointed_to", [ZUEV, None], ids=["appointed to another courier", "appointed to nobody"]
)
async def test_a_courier_cannot_reach_a_delivery_that_is_not_theirs(
    shop: Shop, method: str, action: str, appointed_to: uuid.UUID | None
) -> None:
    delivery_id = await (shop.appointed_delivery(appointed_to) if appointed_to else shop.activated_delivery())
    before = await shop.delivery_of(delivery_id)
    events_before = await shop.delivery_events_about(delivery_id)
    laptev = Caller.courier(LAPTEV).headers(shop.tokens)

    response = await shop.delivery.request(method, f"/api/delivery/{delivery_id}{action}", headers=laptev)
    unknown = await shop.delivery.request(method, f"/api/delivery/{uuid.uuid4()}{action}", headers=laptev)

    assert_not_found(response, unknown)
    assert await shop.delivery_of(delivery_id) == before
    assert await shop.delivery_events_about(delivery_id) == events_before
    assert (await shop.order(delivery_id))["status"] == "paid"


async def test_the_appointed_courier_can_finish_what_another_courier_could_not(shop: Shop) -> None:
    delivery_id = await shop.appointed_delivery(ZUEV)
    path = f"/api/delivery/{delivery_id}/finish"

    refused = await shop.delivery.post(path, headers=Caller.courier(LAPTEV).headers(shop.tokens))
    finished = await shop.delivery.post(path, headers=Caller.courier(ZUEV).headers(shop.tokens))

    assert refused.status_code == 404, refused.text
    assert finished.status_code == 200, finished.text
    assert finished.json()["status"] == "done"
    assert await shop.delivery_events_about(delivery_id) == ["delivery.appointed", "delivery.finished"]


async def test_a_courier_lists_only_the_deliveries_appointed_to_them(shop: Shop) -> None:
    laptevs = {str(await shop.appointed_delivery(LAPTEV)) for _ in range(2)}
    zuevs = {str(await shop.appointed_delivery(ZUEV)) for _ in range(2)}
    unappointed = str(await shop.activated_delivery())
    laptev = Caller.courier(LAPTEV).headers(shop.tokens)

    async def listed(**params: str) -> list[dict[str, object]]:
        response = await shop.delivery.get("/api/delivery/", params=params, headers=laptev)
        assert response.status_code == 200, response.text
        found: list[dict[str, object]] = response.json()
        return found

    everything = await listed()
    asking_for_zuevs = await listed(deliveryman_id=str(ZUEV))
    activated = await listed(status="activated")

    ids = {str(delivery["id"]) for delivery in everything}
    assert laptevs <= ids
    assert not ids & {*zuevs, unappointed}
    assert all(
        delivery["deliveryman"] == {"id": str(LAPTEV), "name": "Лаптев Иван Алексаендрович"}
        for delivery in everything
    )
    assert asking_for_zuevs == []
    assert laptevs <= {str(delivery["id"]) for delivery in activated}
    assert not {str(delivery["id"]) for delivery in activated} & {*zuevs, unappointed}
