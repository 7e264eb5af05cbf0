"""Every event the running services publish on the exchange is what its committed JSON Schema says.

Both services run in-process on the real PostgreSQL and RabbitMQ, wired to each other on the test's
broker names; a queue of the test's own, bound to the exchange with `#`, keeps a copy of every event.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aio_pika
import httpx
import pytest
from aio_pika.abc import AbstractIncomingMessage
from fastapi import FastAPI
from jsonschema import Draft202012Validator

from deliveryhub_contracts.documents import schema_file_name
from deliveryhub_contracts.events import PAYLOAD_TYPES
from deliveryhub_delivery.app import create_app as create_delivery_app
from deliveryhub_delivery.settings import DeliverySettings
from deliveryhub_kit.keys import KeyPair
from deliveryhub_kit.runtime import ServiceRuntime
from deliveryhub_orders.app import create_app as create_orders_app
from deliveryhub_orders.settings import OrdersSettings

if TYPE_CHECKING:
    from tests.support.broker import Amqp, BrokerNamespace, Tap
    from tests.support.databases import Databases
    from tests.support.tokens import Tokens
    from tests.support.waiting import WaitFor

pytestmark = pytest.mark.integration

DOCUMENTS = Path(__file__).resolve().parents[2] / "docs" / "events"
LAPTEV = uuid.UUID("85db966c-67f1-411e-95c0-f02edfa5464a")
ORDER = {
    "address": "Казань, улица Баумана, 12",
    "date": "2030-06-02T10:00:00+03:00",
    "items": [{"name": "Пряники", "quantity": 3, "price": "120.40"}],
}


def validators() -> dict[str, Draft202012Validator]:
    """The committed schema of each event type, checking formats too."""
    found: dict[str, Draft202012Validator] = {}
    for key in PAYLOAD_TYPES:
        schema = json.loads((DOCUMENTS / schema_file_name(key)).read_text(encoding="utf-8"))
        found[key] = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
    return found


@dataclass
class Published:
    """What the exchange routed to the test's tap, in the order it arrived."""

    tap: Tap
    messages: list[AbstractIncomingMessage] = field(default_factory=list)

    async def routing_keys_about(self, order_id: str) -> list[str]:
        """The routing keys of the events about `order_id` so far, each event once."""
        while (message := await self.tap.get()) is not None:
            self.messages.append(message)
        seen: dict[str, str] = {}
        for message in self.messages:
            body = json_body(message)
            if isinstance(body, dict) and body.get("subject") == order_id:
                seen.setdefault(str(body.get("id")), message.routing_key or "")
        return list(seen.values())

    def refusals(self) -> list[str]:
        """Each way a message seen so far departs from the contract, naming the message."""
        schemas = validators()
        found: list[str] = []
        for number, message in enumerate(self.messages, 1):
            key = message.routing_key or ""
            name = f"message {number} ({key})"
            if key not in schemas:
                found.append(f"{name}: no committed schema for this routing key")
                continue
            body = json_body(message)
            if body is None:
                found.append(f"{name}: the body is not JSON")
                continue
            found += [f"{name}: {error.message}" for error in schemas[key].iter_errors(body)]
            if isinstance(body, dict) and message.message_id != body.get("id"):
                found.append(f"{name}: the message id {message.message_id} is not the event's id")
            if message.content_type != "application/json":
                found.append(f"{name}: content type {message.content_type!r}")
            if message.delivery_mode != aio_pika.DeliveryMode.PERSISTENT:
                found.append(f"{name}: not persistent")
        return found


def json_body(message: AbstractIncomingMessage) -> object:
    """The message's body as JSON, or None when it is not JSON."""
    try:
        body: object = json.loads(message.body)
    except ValueError:
        return None
    return body


@dataclass(frozen=True)
class Shop:
    """The two services' APIs as their users call them."""

    orders: httpx.AsyncClient
    delivery: httpx.AsyncClient
    tokens: Tokens
    wait_for: WaitFor

    async def place_order(self, customer: dict[str, str]) -> str:
        response = await self.orders.post("/api/orders", json=ORDER, headers=customer)
        assert response.status_code == 201, response.text
        return str(response.json()["id"])

    async def paid_order(self, customer: dict[str, str]) -> str:
        """A new order of `customer`, paid, once its delivery is activated."""
        order_id = await self.place_order(customer)
        response = await self.orders.post(f"/api/orders/{order_id}/pay", headers=customer)
        assert response.status_code == 200, response.text
        await self.wait_for_delivery(order_id, "activated")
        return order_id

    async def cancel(self, order_id: str, customer: dict[str, str]) -> int:
        response = await self.orders.post(f"/api/orders/{order_id}/cancel", headers=customer)
        assert response.status_code in (200, 202), response.text
        return response.status_code

    async def wait_for_order(self, order_id: str, status: str) -> None:
        manager = self.tokens.manager()

        async def in_status() -> bool:
            response = await self.orders.get(f"/api/orders/{order_id}", headers=manager)
            assert response.status_code == 200, response.text
            return bool(response.json()["status"] == status)

        await self.wait_for(in_status, timeout=20, message=f"order {order_id} to be {status}")

    async def wait_for_delivery(self, order_id: str, status: str) -> None:
        manager = self.tokens.manager()

        async def in_status() -> bool:
            response = await self.delivery.get(f"/api/delivery/{order_id}", headers=manager)
            return response.status_code == 200 and bool(response.json()["status"] == status)

        await self.wait_for(in_status, timeout=20, message=f"the delivery of {order_id} to be {status}")


async def started(stack: AsyncExitStack, app: FastAPI, base_url: str, wait_for: WaitFor) -> httpx.AsyncClient:
    """Run the app's lifespan until the stack closes; a client of it once it consumes its queue."""
    await stack.enter_async_context(app.router.lifespan_context(app))
    runtime: ServiceRuntime = app.state.runtime

    async def consuming() -> bool:
        await runtime.wait_until_attached()
        return bool(runtime.consumers) and runtime.broker.connected

    await wait_for(consuming, timeout=15, message=f"{base_url} to attach to the broker")
    return await stack.enter_async_context(
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=base_url)
    )


@pytest.fixture
async def shop(
    databases: Databases,
    delivery_database_url: str,
    broker_namespace: BrokerNamespace,
    key_pair: KeyPair,
    amqp_url: str,
    tokens: Tokens,
    wait_for: WaitFor,
) -> AsyncIterator[Shop]:
    """Both services on the test's databases and broker names, each consuming the other's events."""
    orders_database_url = await databases.create_migrated("orders")
    common: dict[str, Any] = {
        "environment": "test",
        "amqp_url": amqp_url,
        "broker_prefix": broker_namespace.prefix,
        "jwt_public_key": key_pair.public_pem,
        "outbox_poll_seconds": 0.1,
        "publish_timeout_seconds": 5.0,
        "database_pool_size": 5,
    }
    try:
        async with AsyncExitStack() as stack:
            # Delivery first: its queue must be bound before the first order event is published.
            delivery = await started(
                stack,
                create_delivery_app(DeliverySettings(database_url=delivery_database_url, **common)),
                "http://delivery.test",
                wait_for,
            )
            orders = await started(
                stack,
                create_orders_app(OrdersSettings(database_url=orders_database_url, **common)),
                "http://orders.test",
                wait_for,
            )
            yield Shop(orders=orders, delivery=delivery, tokens=tokens, wait_for=wait_for)
    finally:
        await databases.drop(orders_database_url)


@pytest.fixture
async def published(shop: Shop, amqp: Amqp) -> Published:
    """A copy of every event published on the test's exchange from now on."""
    return Published(await amqp.tap("#"))


async def expect_events(published: Published, wait_for: WaitFor, order_id: str, expected: list[str]) -> None:
    async def all_seen() -> bool:
        return set(expected) <= set(await published.routing_keys_about(order_id))

    await wait_for(all_seen, timeout=20, message=f"{expected} about order {order_id} on the exchange")
    assert await published.routing_keys_about(order_id) == expected
    assert published.refusals() == []


async def test_a_delivered_orders_events_match_their_schemas(
    shop: Shop, published: Published, tokens: Tokens, wait_for: WaitFor
) -> None:
    manager = tokens.manager()
    order_id = await shop.paid_order(tokens.customer())
    appointed = await shop.delivery.post(
        f"/api/delivery/{order_id}/appoint", json={"deliveryman_id": str(LAPTEV)}, headers=manager
    )
    assert appointed.status_code == 200, appointed.text
    finished = await shop.delivery.post(f"/api/delivery/{order_id}/finish", headers=tokens.courier(LAPTEV))
    assert finished.status_code == 200, finished.text
    await shop.wait_for_order(order_id, "delivered")

    await expect_events(
        published,
        wait_for,
        order_id,
        ["order.created", "order.paid", "delivery.appointed", "delivery.finished"],
    )


async def test_an_unpaid_orders_cancel_matches_its_schema(
    shop: Shop, published: Published, tokens: Tokens, wait_for: WaitFor
) -> None:
    customer = tokens.customer()
    order_id = await shop.place_order(customer)
    await shop.wait_for_delivery(order_id, "created")

    assert await shop.cancel(order_id, customer) == 200
    await shop.wait_for_delivery(order_id, "canceled")

    await expect_events(published, wait_for, order_id, ["order.created", "order.canceled"])


async def test_a_paid_orders_cancel_request_and_its_answer_match_their_schemas(
    shop: Shop, published: Published, tokens: Tokens, wait_for: WaitFor
) -> None:
    customer = tokens.customer()
    order_id = await shop.paid_order(customer)

    assert await shop.cancel(order_id, customer) == 202
    await shop.wait_for_order(order_id, "canceled")

    await expect_events(
        published,
        wait_for,
        order_id,
        ["order.created", "order.paid", "order.cancel-requested", "delivery.canceled"],
    )
