"""The design's story over HTTP against the services running as processes, with real tokens."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import aio_pika
import pytest

from deliveryhub_kit.identity import Role
from deliveryhub_kit.settings import DEFAULT_AMQP_URL
from tests.support.running_system import LAPTEV, ZUEV, System, run_async
from tests.support.story import (
    Json,
    delivery_status,
    ok,
    ok_list,
    order_body,
    order_status,
    place_paid_order,
    refused,
    the_whole_story_ends_delivered,
)
from tests.support.waiting import eventually

pytestmark = pytest.mark.e2e


def test_the_whole_story_ends_delivered(system: System) -> None:
    the_whole_story_ends_delivered(system)


def test_a_customer_cancels_and_the_delivery_follows(system: System) -> None:
    customer = system.auth(Role.CUSTOMER)
    unpaid: str = ok(system.orders.post("/api/orders", json=order_body(), headers=customer), 201)["id"]
    assert ok(system.orders.post(f"/api/orders/{unpaid}/cancel", headers=customer))["status"] == "canceled"
    delivery_status(system, unpaid, "canceled")

    # A paid order's cancel is asked of the delivery service, which cancels the delivery.
    order_id = place_paid_order(system, customer)
    requested = system.orders.post(f"/api/orders/{order_id}/cancel", headers=customer)
    assert ok(requested, 202)["status"] == "canceling"
    delivery_status(system, order_id, "canceled")
    order_status(system, order_id, "canceled", customer)
    assert refused(system.orders.post(f"/api/orders/{order_id}/pay", headers=customer), 409)["error"] == (
        "invalid_transition"
    )


def test_a_manager_cancels_the_delivery_and_the_order_follows(system: System) -> None:
    customer = system.auth(Role.CUSTOMER)
    manager = system.auth(Role.MANAGER)
    order_id = place_paid_order(system, customer)
    assert (
        ok(system.delivery.post(f"/api/delivery/{order_id}/cancel", headers=manager))["status"] == "canceled"
    )
    order_status(system, order_id, "canceled", customer)
    refused(system.delivery.post(f"/api/delivery/{order_id}/cancel", headers=manager), 409)
    refused(
        system.delivery.post(
            f"/api/delivery/{order_id}/appoint", json={"deliveryman_id": str(LAPTEV)}, headers=manager
        ),
        409,
    )


def test_callers_without_business_are_refused(system: System) -> None:
    owner = system.auth(Role.CUSTOMER)
    stranger = system.auth(Role.CUSTOMER)
    manager = system.auth(Role.MANAGER)
    laptev = system.auth(Role.COURIER, deliveryman_id=LAPTEV)
    zuev = system.auth(Role.COURIER, deliveryman_id=ZUEV)
    order_id = place_paid_order(system, owner)
    ok(
        system.delivery.post(
            f"/api/delivery/{order_id}/appoint", json={"deliveryman_id": str(LAPTEV)}, headers=manager
        )
    )

    refused(system.orders.get("/api/orders"), 401)
    refused(system.orders.get("/api/orders", headers={"Authorization": "Bearer not-a-token"}), 401)
    refused(system.delivery.get("/api/delivery/", headers=owner), 403)
    refused(system.delivery.get("/api/deliverymen", headers=laptev), 403)
    refused(system.orders.get("/api/orders", headers=laptev), 403)
    refused(system.orders.post(f"/api/orders/{order_id}/pay", headers=manager), 403)
    refused(
        system.delivery.post(
            f"/api/delivery/{order_id}/appoint", json={"deliveryman_id": str(ZUEV)}, headers=laptev
        ),
        403,
    )
    for call in (
        system.orders.get(f"/api/orders/{order_id}", headers=stranger),
        system.orders.post(f"/api/orders/{order_id}/cancel", headers=stranger),
        system.delivery.get(f"/api/delivery/{order_id}", headers=zuev),
        system.delivery.post(f"/api/delivery/{order_id}/finish", headers=zuev),
    ):
        refused(call, 404)
    assert order_id not in {o["id"] for o in ok_list(system.orders.get("/api/orders", headers=stranger))}
    assert order_id not in {d["id"] for d in ok_list(system.delivery.get("/api/delivery/", headers=zuev))}
    assert ok(system.orders.get(f"/api/orders/{order_id}", headers=manager))["status"] == "paid"


def test_a_repeated_idempotency_key_returns_the_first_answer(system: System) -> None:
    customer = system.auth(Role.CUSTOMER)
    key = {"Idempotency-Key": str(uuid.uuid4())}
    body = order_body()
    first = system.orders.post("/api/orders", json=body, headers={**customer, **key})
    again = system.orders.post("/api/orders", json=body, headers={**customer, **key})
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert len(ok_list(system.orders.get("/api/orders", headers=customer))) == 1
    other = system.orders.post(
        "/api/orders", json=order_body(address="Другой адрес"), headers={**customer, **key}
    )
    assert refused(other, 409)["error"] == "idempotency_key_reused"


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"address": "   "}, "address"),
        ({"address": "x" * 501}, "address"),
        ({"date": "2030-01-01T10:00:00"}, "date"),
        ({"items": []}, "items"),
        ({"items": [{"name": "a", "quantity": 1, "price": 1}] * 101}, "items"),
        ({"items": [{"name": "a", "quantity": 0, "price": 1}]}, "quantity"),
        ({"items": [{"name": "a", "quantity": 1, "price": -1}]}, "price"),
        ({"items": [{"name": "a", "quantity": 1, "price": "1.001"}]}, "price"),
        ({"total": 1}, "total"),
    ],
)
def test_invalid_orders_are_refused_with_a_reason(system: System, changes: Json, field: str) -> None:
    response = system.orders.post(
        "/api/orders", json=order_body(**changes), headers=system.auth(Role.CUSTOMER)
    )
    assert field in refused(response, 422)["detail"]


def test_malformed_requests_get_an_error_body(system: System) -> None:
    customer = system.auth(Role.CUSTOMER)
    refused(
        system.orders.post(
            "/api/orders", content=b"{not json", headers={**customer, "Content-Type": "application/json"}
        ),
        422,
    )
    refused(system.orders.get("/api/orders/not-a-uuid", headers=customer), 422)
    refused(system.orders.get(f"/api/orders/{uuid.uuid4()}", headers=customer), 404)
    refused(system.orders.get("/api/orders?limit=1001", headers=customer), 422)
    refused(system.orders.post("/api/orders", content=b"x" * 2_000_000, headers=customer), 413)
    refused(system.delivery.get("/nowhere"), 404)


# Only on the servers: the teaching design's producer writes to RabbitMQ, which the embedded system has not.
@pytest.mark.parametrize("system", ["servers"], indirect=True)
def test_a_teaching_design_producer_drives_the_delivery_service(system: System) -> None:
    order_id = str(uuid.uuid4())

    async def publish(queue: str, body: Json) -> None:
        connection = await aio_pika.connect(DEFAULT_AMQP_URL)
        async with connection:
            channel = await connection.channel()
            await channel.default_exchange.publish(
                aio_pika.Message(json.dumps(body).encode()), routing_key=queue
            )

    date = (datetime.now(UTC) + timedelta(days=3)).replace(microsecond=0)
    run_async(
        publish(
            f"{system.legacy_prefix}order_created_queue",
            {"order_id": order_id, "date": date.isoformat(), "address": "Тверская, 7"},
        )
    )
    created = delivery_status(system, order_id, "created")
    assert created["address"] == "Тверская, 7"
    assert datetime.fromisoformat(created["date"]) == date
    run_async(publish(f"{system.legacy_prefix}order_paid_queue", {"id": order_id}))
    delivery_status(system, order_id, "activated")


def test_log_lines_are_json_and_carry_the_correlation_id_across_services(system: System) -> None:
    correlation_id = f"e2e-{uuid.uuid4().hex[:12]}"
    customer = system.auth(Role.CUSTOMER)
    placed = system.orders.post(
        "/api/orders", json=order_body(), headers={**customer, "X-Request-ID": correlation_id}
    )
    assert placed.status_code == 201
    assert placed.headers["X-Request-ID"] == correlation_id
    delivery_status(system, placed.json()["id"], "created")

    def service_lines() -> list[Json]:
        text = system.log.read_text()
        after_start = text.split("Press Ctrl-C to stop.\n", 1)[1]
        return [json.loads(line) for line in after_start.splitlines() if line.strip()]

    def correlated() -> list[Json] | None:
        found = [line for line in service_lines() if line.get("request_id") == correlation_id]
        services = {line["service"] for line in found}
        return found if {"orders", "delivery"} <= services else None

    found = eventually(correlated, what="log lines of both services with the request's id")
    request_line = next(line for line in found if line["service"] == "orders" and line["event"] == "request")
    assert request_line["route"] == "/api/orders"
    assert request_line["status"] == 201
    consumed = next(line for line in found if line["service"] == "delivery")
    assert consumed["event_type"] == "order.created"
    for line in service_lines():
        assert {"time", "level", "service", "event"} <= set(line), line
