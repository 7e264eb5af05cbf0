"""The orders HTTP API in-process on the real PostgreSQL and RabbitMQ."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from deliveryhub_contracts.events import parse_envelope
from tests.support.broker import Amqp
from tests.support.events import ADDRESS, DELIVERY_DATE
from tests.support.orders import Customer, NewCustomer, OrdersRecords, RunningOrders, order_body
from tests.support.tokens import Tokens

pytestmark = pytest.mark.integration


@pytest.fixture
def customer(new_customer: NewCustomer) -> Customer:
    return new_customer()


def ids(orders: list[dict[str, Any]]) -> list[str]:
    return [order["id"] for order in orders]


class TestPlacingAnOrder:
    async def test_the_order_is_created_with_its_total_computed_by_the_server(
        self, orders: RunningOrders, customer: Customer
    ) -> None:
        response = await orders.client.post("/api/orders", json=order_body(), headers=customer.headers)

        assert response.status_code == 201, response.text
        placed = response.json()
        assert response.headers["Location"] == f"/api/orders/{placed['id']}"
        assert placed["status"] == "created"
        assert placed["total"] == 800.49
        assert placed["customer_id"] == str(customer.id)
        assert placed["address"] == ADDRESS
        assert placed["deliveryman"] is None
        assert await customer.get_order(placed["id"]) == placed

    async def test_exactly_one_outbox_row_holds_the_order_created_event(
        self, orders: RunningOrders, customer: Customer, orders_records: OrdersRecords, amqp: Amqp
    ) -> None:
        tap = await amqp.tap("order.*")

        placed = await customer.place_order()

        [row] = await orders_records.outbox()
        assert row.routing_key == "order.created"
        event = parse_envelope(row.body.encode())
        assert event.id == row.event_id
        assert event.type == "deliveryhub.order.created"
        assert event.source == "/orders"
        assert event.subject == placed["id"]
        assert event.data == {
            "order_id": placed["id"],
            "customer_id": str(customer.id),
            "address": ADDRESS,
            "date": DELIVERY_DATE.isoformat().replace("+00:00", "Z"),
            "total": 800.49,
            "version": 1,
        }
        [published] = await tap.take(1)
        assert parse_envelope(published.body) == event

    async def test_a_rolled_back_request_writes_no_outbox_row(
        self, orders: RunningOrders, customer: Customer, orders_records: OrdersRecords
    ) -> None:
        placed = await customer.place_order()
        canceled = await orders.client.post(f"/api/orders/{placed['id']}/cancel", headers=customer.headers)
        assert canceled.status_code == 200, canceled.text
        before = await orders_records.outbox()

        refused = await orders.client.post(f"/api/orders/{placed['id']}/pay", headers=customer.headers)

        assert refused.status_code == 409
        assert refused.json()["error"] == "invalid_transition"
        assert [row.event_id for row in await orders_records.outbox()] == [row.event_id for row in before]
        assert [row.routing_key for row in before] == ["order.created", "order.canceled"]
        assert (await customer.get_order(placed["id"]))["status"] == "canceled"

    async def test_an_invalid_order_is_refused_and_nothing_is_written(
        self, orders: RunningOrders, customer: Customer, orders_records: OrdersRecords
    ) -> None:
        response = await orders.client.post(
            "/api/orders", json=order_body(items=[]), headers=customer.headers
        )

        assert response.status_code == 422
        assert response.json()["error"] == "validation_error"
        assert await orders_records.orders() == []
        assert await orders_records.outbox() == []

    @pytest.mark.parametrize(
        "changes",
        [
            {"items": [{"name": "Золото", "quantity": 10_000, "price": "9999999999.99"}]},
            {"address": "Москва\x00"},
            {"items": [{"name": "Ч\x00ай", "quantity": 1, "price": "1.00"}]},
            {"date": "9999-12-31T23:59:59-05:00"},
            {"date": "0001-01-01T00:00:00+05:00"},
        ],
        ids=[
            "total beyond the column",
            "NUL in address",
            "NUL in item name",
            "date after 9999",
            "date before 1",
        ],
    )
    async def test_input_the_database_cannot_store_is_refused_not_a_server_error(
        self,
        orders: RunningOrders,
        customer: Customer,
        orders_records: OrdersRecords,
        changes: dict[str, Any],
    ) -> None:
        response = await orders.client.post(
            "/api/orders", json=order_body(**changes), headers=customer.headers
        )

        assert response.status_code == 422, response.text
        assert response.json()["error"] == "validation_error"
        assert await orders_records.orders() == []


class TestIdempotencyKey:
    async def test_a_repeated_key_returns_the_first_answer(
        self, orders: RunningOrders, customer: Customer, orders_records: OrdersRecords
    ) -> None:
        headers = {**customer.headers, "Idempotency-Key": "checkout-7"}
        first = await orders.client.post("/api/orders", json=order_body(), headers=headers)
        again = await orders.client.post("/api/orders", json=order_body(), headers=headers)

        assert (first.status_code, again.status_code) == (201, 201)
        assert again.json() == first.json()
        assert again.headers["Idempotent-Replayed"] == "true"
        assert "Idempotent-Replayed" not in first.headers
        assert len(await orders_records.orders()) == 1
        assert len(await orders_records.outbox()) == 1

    async def test_the_same_key_with_another_body_is_a_conflict(
        self, orders: RunningOrders, customer: Customer, orders_records: OrdersRecords
    ) -> None:
        headers = {**customer.headers, "Idempotency-Key": "checkout-7"}
        first = await orders.client.post("/api/orders", json=order_body(), headers=headers)
        other = await orders.client.post(
            "/api/orders", json=order_body(address="Тверь, улица Мира, 5"), headers=headers
        )

        assert first.status_code == 201
        assert other.status_code == 409
        assert other.json()["error"] == "idempotency_key_reused"
        assert len(await orders_records.orders()) == 1

    async def test_two_concurrent_requests_with_one_key_create_one_order(
        self, orders: RunningOrders, customer: Customer, orders_records: OrdersRecords
    ) -> None:
        headers = {**customer.headers, "Idempotency-Key": f"checkout-{uuid.uuid4()}"}

        answers = await asyncio.gather(
            *(orders.client.post("/api/orders", json=order_body(), headers=headers) for _ in range(2))
        )

        assert [answer.status_code for answer in answers] == [201, 201], [a.text for a in answers]
        first, second = (answer.json() for answer in answers)
        assert first == second
        [stored] = await orders_records.orders()
        assert str(stored.id) == first["id"]
        [row] = await orders_records.outbox()
        assert parse_envelope(row.body.encode()).subject == first["id"]


class TestPayingAnOrder:
    async def test_paying_writes_order_paid_at_version_two(
        self, orders: RunningOrders, customer: Customer, orders_records: OrdersRecords
    ) -> None:
        placed = await customer.place_order()

        response = await orders.client.post(f"/api/orders/{placed['id']}/pay", headers=customer.headers)

        assert response.status_code == 200, response.text
        assert response.json()["status"] == "paid"
        created, paid = (parse_envelope(row.body.encode()) for row in await orders_records.outbox())
        assert (created.routing_key, paid.routing_key) == ("order.created", "order.paid")
        assert paid.data["order_id"] == placed["id"]
        assert paid.data["version"] == 2
        assert paid.data["total"] == 800.49

    async def test_two_concurrent_payments_pay_once(
        self, orders: RunningOrders, customer: Customer, orders_records: OrdersRecords
    ) -> None:
        placed = await customer.place_order()

        answers = await asyncio.gather(
            *(
                orders.client.post(f"/api/orders/{placed['id']}/pay", headers=customer.headers)
                for _ in range(2)
            )
        )

        assert sorted(answer.status_code for answer in answers) == [200, 409]
        routing_keys = [row.routing_key for row in await orders_records.outbox()]
        assert routing_keys == ["order.created", "order.paid"]


class TestListingOrders:
    async def test_a_customer_lists_their_own_orders_newest_first(
        self, orders: RunningOrders, new_customer: NewCustomer
    ) -> None:
        alice, boris = new_customer(), new_customer()
        older = await alice.place_order()
        await boris.place_order()
        newer = await alice.place_order()

        response = await orders.client.get("/api/orders", headers=alice.headers)

        assert response.status_code == 200
        assert ids(response.json()) == [newer["id"], older["id"]]

    async def test_a_manager_lists_every_order(
        self, orders: RunningOrders, new_customer: NewCustomer, tokens: Tokens
    ) -> None:
        alices = await new_customer().place_order()
        boris = await new_customer().place_order()

        response = await orders.client.get("/api/orders", headers=tokens.manager())

        assert response.status_code == 200
        assert ids(response.json()) == [boris["id"], alices["id"]]

    async def test_the_list_filters_by_status(self, orders: RunningOrders, customer: Customer) -> None:
        created = await customer.place_order()
        paid = await customer.place_order()
        canceled = await customer.place_order()
        await orders.client.post(f"/api/orders/{paid['id']}/pay", headers=customer.headers)
        await orders.client.post(f"/api/orders/{canceled['id']}/cancel", headers=customer.headers)

        async def listed(status: str) -> list[str]:
            response = await orders.client.get(
                "/api/orders", params={"status": status}, headers=customer.headers
            )
            assert response.status_code == 200, response.text
            assert {order["status"] for order in response.json()} <= {status}
            return ids(response.json())

        assert await listed("created") == [created["id"]]
        assert await listed("paid") == [paid["id"]]
        assert await listed("canceled") == [canceled["id"]]
        assert await listed("delivered") == []

    async def test_limit_and_offset_page_through_the_list(
        self, orders: RunningOrders, customer: Customer
    ) -> None:
        placed = [await customer.place_order() for _ in range(5)]
        newest_first = ids(placed)[::-1]

        async def page(limit: int, offset: int) -> list[str]:
            response = await orders.client.get(
                "/api/orders", params={"limit": limit, "offset": offset}, headers=customer.headers
            )
            assert response.status_code == 200, response.text
            return ids(response.json())

        assert await page(2, 0) == newest_first[0:2]
        assert await page(2, 2) == newest_first[2:4]
        assert await page(2, 4) == newest_first[4:5]
        assert await page(2, 6) == []
        assert await page(1000, 0) == newest_first

    @pytest.mark.parametrize(
        "params",
        [{"status": "lost"}, {"limit": 0}, {"limit": 1001}, {"offset": -1}, {"offset": 2**63}],
        ids=["unknown status", "limit 0", "limit 1001", "negative offset", "offset beyond bigint"],
    )
    async def test_out_of_range_list_parameters_are_refused(
        self, orders: RunningOrders, customer: Customer, params: dict[str, Any]
    ) -> None:
        response = await orders.client.get("/api/orders", params=params, headers=customer.headers)

        assert response.status_code == 422
        assert response.json()["error"] == "validation_error"


class TestWhoMayDoWhat:
    async def test_another_customers_order_does_not_exist_for_them(
        self, orders: RunningOrders, new_customer: NewCustomer
    ) -> None:
        alice, boris = new_customer(), new_customer()
        order = await alice.place_order()

        for method, path in [
            ("GET", f"/api/orders/{order['id']}"),
            ("POST", f"/api/orders/{order['id']}/pay"),
            ("POST", f"/api/orders/{order['id']}/cancel"),
        ]:
            response = await orders.client.request(method, path, headers=boris.headers)
            assert response.status_code == 404, (method, path)
            assert response.json()["error"] == "order_not_found"
        assert (await alice.get_order(order["id"]))["status"] == "created"

    async def test_a_manager_sees_and_cancels_any_order_but_cannot_place_or_pay(
        self, orders: RunningOrders, customer: Customer, tokens: Tokens
    ) -> None:
        manager = tokens.manager()
        order = await customer.place_order()

        seen = await orders.client.get(f"/api/orders/{order['id']}", headers=manager)
        paid = await orders.client.post(f"/api/orders/{order['id']}/pay", headers=manager)
        placed = await orders.client.post("/api/orders", json=order_body(), headers=manager)
        canceled = await orders.client.post(f"/api/orders/{order['id']}/cancel", headers=manager)

        assert seen.status_code == 200
        assert seen.json() == order
        assert (paid.status_code, placed.status_code) == (403, 403)
        assert canceled.status_code == 200
        assert canceled.json()["status"] == "canceled"

    async def test_without_a_token_nothing_is_answered(self, orders: RunningOrders) -> None:
        response = await orders.client.get("/api/orders")

        assert response.status_code == 401
        assert response.json()["error"] == "unauthenticated"
