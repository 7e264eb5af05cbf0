"""The design's story over HTTP, as a customer, a manager and a courier live it, against a running system:
the steps the end-to-end tests and the deployment's process test share."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from deliveryhub_kit.identity import Role
from tests.support.running_system import LAPTEV, ZUEV, System
from tests.support.waiting import eventually

Json = dict[str, Any]


def order_body(**changes: Any) -> Json:
    body: Json = {
        "address": "ул. Ленина, 1",
        "date": (datetime.now(UTC) + timedelta(days=1)).isoformat(),
        "items": [
            {"name": "Чай", "quantity": 2, "price": "250.00"},
            {"name": "Мёд", "quantity": 1, "price": 99.9},
        ],
    }
    body.update(changes)
    return body


def ok(response: httpx.Response, status: int = 200) -> Json:
    assert response.status_code == status, response.text
    body: Json = response.json()
    return body


def ok_list(response: httpx.Response) -> list[Json]:
    assert response.status_code == 200, response.text
    body: list[Json] = response.json()
    return body


def refused(response: httpx.Response, status: int) -> Json:
    assert response.status_code == status, response.text
    body: Json = response.json()
    assert set(body) == {"error", "detail"}, body
    return body


def delivery_status(system: System, order_id: str, status: str) -> Json:
    manager = system.auth(Role.MANAGER)

    def probe() -> Json | None:
        response = system.delivery.get(f"/api/delivery/{order_id}", headers=manager)
        return (
            response.json() if response.status_code == 200 and response.json()["status"] == status else None
        )

    return eventually(probe, what=f"delivery {order_id} to be {status}")


def order_status(system: System, order_id: str, status: str, headers: dict[str, str]) -> Json:
    def probe() -> Json | None:
        body = ok(system.orders.get(f"/api/orders/{order_id}", headers=headers))
        return body if body["status"] == status else None

    return eventually(probe, what=f"order {order_id} to be {status}")


def place_paid_order(system: System, customer: dict[str, str]) -> str:
    order_id: str = ok(system.orders.post("/api/orders", json=order_body(), headers=customer), 201)["id"]
    ok(system.orders.post(f"/api/orders/{order_id}/pay", headers=customer))
    delivery_status(system, order_id, "activated")
    return order_id


def the_whole_story_ends_delivered(system: System) -> None:
    """An order placed, paid, given a courier and delivered; each step seen by both services."""
    customer = system.auth(Role.CUSTOMER)
    manager = system.auth(Role.MANAGER)
    courier = system.auth(Role.COURIER, deliveryman_id=LAPTEV)

    order = ok(system.orders.post("/api/orders", json=order_body(), headers=customer), 201)
    assert order["status"] == "created"
    assert order["total"] == 599.9
    delivery = delivery_status(system, order["id"], "created")
    assert delivery["address"] == "ул. Ленина, 1"
    assert delivery["deliveryman"] is None

    assert ok(system.orders.post(f"/api/orders/{order['id']}/pay", headers=customer))["status"] == "paid"
    delivery_status(system, order["id"], "activated")

    couriers = ok_list(system.delivery.get("/api/deliverymen", headers=manager))
    assert {c["id"] for c in couriers} >= {str(LAPTEV), str(ZUEV)}
    appointed = ok(
        system.delivery.post(
            f"/api/delivery/{order['id']}/appoint", json={"deliveryman_id": str(LAPTEV)}, headers=manager
        )
    )
    assert appointed["deliveryman"] == {"id": str(LAPTEV), "name": "Лаптев Иван Алексаендрович"}
    eventually(
        lambda: (
            True
            if ok(system.orders.get(f"/api/orders/{order['id']}", headers=customer))["deliveryman"]
            else None
        ),
        what="the order to show its courier",
    )

    own = ok_list(system.delivery.get("/api/delivery/", headers=courier))
    assert order["id"] in {d["id"] for d in own}
    assert (
        ok(system.delivery.post(f"/api/delivery/{order['id']}/finish", headers=courier))["status"] == "done"
    )
    delivered = order_status(system, order["id"], "delivered", customer)
    assert delivered["deliveryman"]["id"] == str(LAPTEV)
