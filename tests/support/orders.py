"""The orders service in-process as the tests drive it: its customers, its API's bodies, its database."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, Protocol

import httpx
from fastapi import FastAPI
from sqlalchemy import select

from deliveryhub_contracts.topology import ORDERS_DELIVERY_EVENTS, Names
from deliveryhub_kit.db import Database
from deliveryhub_kit.runtime import ServiceRuntime
from deliveryhub_orders.models import InboxMessage, Order, OutboxMessage
from deliveryhub_orders.settings import OrdersSettings
from tests.support.events import ADDRESS, DELIVERY_DATE
from tests.support.services import runtime_of
from tests.support.tokens import Tokens


@dataclass
class RunningOrders:
    """The orders service, started by its own lifespan, with an HTTP client in front of it."""

    app: FastAPI
    settings: OrdersSettings
    client: httpx.AsyncClient

    @property
    def runtime(self) -> ServiceRuntime:
        return runtime_of(self.app)

    @property
    def queue(self) -> str:
        return Names(self.settings.broker_prefix).queue(ORDERS_DELIVERY_EVENTS)

    @property
    def dead_letter_queue(self) -> str:
        return Names.dead_letter_queue(self.queue)


def order_body(**changes: Any) -> dict[str, Any]:
    """A valid `POST /api/orders` body: 2 × 150.25 + 1 × 499.99 = 800.49."""
    return {
        "address": ADDRESS,
        "date": DELIVERY_DATE.isoformat(),
        "items": [
            {"name": "Чай", "quantity": 2, "price": "150.25"},
            {"name": "Мёд", "quantity": 1, "price": "499.99"},
        ],
        **changes,
    }


class Customer:
    """One customer calling the orders API."""

    def __init__(self, client: httpx.AsyncClient, tokens: Tokens) -> None:
        self.id = uuid.uuid4()
        self.client = client
        self.headers = tokens.customer(self.id)

    async def place_order(self, **changes: Any) -> dict[str, Any]:
        """Place an order and return it as the API answered."""
        response = await self.client.post("/api/orders", json=order_body(**changes), headers=self.headers)
        assert response.status_code == 201, response.text
        placed: dict[str, Any] = response.json()
        return placed

    async def get_order(self, order_id: uuid.UUID | str) -> dict[str, Any]:
        response = await self.client.get(f"/api/orders/{order_id}", headers=self.headers)
        assert response.status_code == 200, response.text
        found: dict[str, Any] = response.json()
        return found


class NewCustomer(Protocol):
    def __call__(self) -> Customer: ...


class OrdersRecords:
    """The test's own view of the orders database."""

    def __init__(self, database: Database) -> None:
        self.database = database

    async def orders(self) -> list[Order]:
        async with self.database.transaction() as session:
            return list(await session.scalars(select(Order)))

    async def get(self, order_id: uuid.UUID) -> Order | None:
        async with self.database.transaction() as session:
            return await session.get(Order, order_id)

    async def outbox(self) -> list[OutboxMessage]:
        async with self.database.transaction() as session:
            return list(await session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)))

    async def inbox_ids(self) -> list[uuid.UUID]:
        async with self.database.transaction() as session:
            return list(await session.scalars(select(InboxMessage.event_id)))


class Settle(Protocol):
    async def __call__(self) -> None: ...
