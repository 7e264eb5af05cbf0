"""The orders and delivery services wired to each other in-process, and a shop that drives their APIs
as their users do, to bring orders and deliveries into a given state."""

from __future__ import annotations

import asyncio
import uuid
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import func, select

from deliveryhub_delivery.models import OutboxMessage as DeliveryOutbox
from deliveryhub_kit.db import Database
from deliveryhub_kit.identity import Principal, Role
from deliveryhub_orders.models import Order
from deliveryhub_orders.models import OutboxMessage as OrdersOutbox
from tests.support.delivery import DeliveryRecords
from tests.support.orders import OrdersRecords, order_body
from tests.support.services import start_in_process
from tests.support.tokens import Tokens
from tests.support.waiting import WaitFor

LAPTEV = uuid.UUID("85db966c-67f1-411e-95c0-f02edfa5464a")
ZUEV = uuid.UUID("31babbb3-5541-4a2a-8201-537cdff25fed")
KUDZH = uuid.UUID("45309954-8e3c-4635-8066-b342f634252c")


@dataclass(frozen=True)
class RunningService:
    """One service started by its own lifespan, with an HTTP client in front of it."""

    app: FastAPI
    client: httpx.AsyncClient
    # The event loop the service runs on: a synchronous test drives it from there.
    loop: asyncio.AbstractEventLoop

    @classmethod
    async def start(cls, stack: AsyncExitStack, app: FastAPI, name: str) -> RunningService:
        """`app` started on `stack`, with the event loop it runs on."""
        client = await start_in_process(stack, app, name)
        return cls(app=app, client=client, loop=asyncio.get_running_loop())


@dataclass(frozen=True)
class Caller:
    """Someone calling the APIs: a role (None for a caller without a token) and who they are."""

    role: Role | None
    subject: uuid.UUID
    deliveryman_id: uuid.UUID | None = None

    @classmethod
    def customer(cls) -> Caller:
        return cls(Role.CUSTOMER, uuid.uuid4())

    @classmethod
    def manager(cls) -> Caller:
        return cls(Role.MANAGER, uuid.uuid4())

    @classmethod
    def courier(cls, deliveryman_id: uuid.UUID = LAPTEV) -> Caller:
        return cls(Role.COURIER, uuid.uuid4(), deliveryman_id)

    @classmethod
    def anonymous(cls) -> Caller:
        return cls(None, uuid.uuid4())

    @classmethod
    def of(cls, role: Role | None) -> Caller:
        """A new caller of `role`; a courier is Laptev, one of the three couriers."""
        if role is None:
            return cls.anonymous()
        return {Role.CUSTOMER: cls.customer, Role.MANAGER: cls.manager, Role.COURIER: cls.courier}[role]()

    def headers(self, tokens: Tokens) -> dict[str, str]:
        if self.role is None:
            return {}
        return tokens.headers(
            Principal(subject=self.subject, role=self.role, deliveryman_id=self.deliveryman_id)
        )


class Shop:
    """The two APIs as their users drive them, to bring orders and deliveries into a given state."""

    def __init__(
        self,
        services: Services,
        tokens: Tokens,
        wait_for: WaitFor,
        orders_records: OrdersRecords,
        delivery_records: DeliveryRecords,
    ) -> None:
        self.orders = services.orders.client
        self.delivery = services.delivery.client
        self.tokens = tokens
        self.orders_records = orders_records
        self.delivery_records = delivery_records
        self._wait_for = wait_for
        self._manager = Caller.manager().headers(tokens)

    async def place_order(self, customer: Caller, **changes: Any) -> uuid.UUID:
        """A new `created` order of `customer`."""
        response = await self.orders.post(
            "/api/orders", json=order_body(**changes), headers=customer.headers(self.tokens)
        )
        assert response.status_code == 201, response.text
        return uuid.UUID(response.json()["id"])

    async def paid_order(self, customer: Caller) -> uuid.UUID:
        order_id = await self.place_order(customer)
        response = await self.orders.post(
            f"/api/orders/{order_id}/pay", headers=customer.headers(self.tokens)
        )
        assert response.status_code == 200, response.text
        return order_id

    async def order(self, order_id: uuid.UUID) -> dict[str, Any]:
        """The order as a manager sees it."""
        response = await self.orders.get(f"/api/orders/{order_id}", headers=self._manager)
        assert response.status_code == 200, response.text
        found: dict[str, Any] = response.json()
        return found

    async def delivery_of(self, order_id: uuid.UUID) -> dict[str, Any] | None:
        """The order's delivery as a manager sees it, once the delivery service has it."""
        response = await self.delivery.get(f"/api/delivery/{order_id}", headers=self._manager)
        if response.status_code == 404:
            return None
        assert response.status_code == 200, response.text
        found: dict[str, Any] = response.json()
        return found

    async def activated_delivery(self, customer: Caller | None = None) -> uuid.UUID:
        """A delivery of a paid order, `activated` and waiting for a courier."""
        order_id = await self.paid_order(customer or Caller.customer())
        await self.wait_for_delivery(order_id, "activated")
        return order_id

    async def appointed_delivery(self, courier: uuid.UUID = LAPTEV) -> uuid.UUID:
        """An activated delivery with `courier` appointed to it."""
        delivery_id = await self.activated_delivery()
        response = await self.delivery.post(
            f"/api/delivery/{delivery_id}/appoint",
            json={"deliveryman_id": str(courier)},
            headers=self._manager,
        )
        assert response.status_code == 200, response.text
        return delivery_id

    async def stored_orders_of(self, customer_id: uuid.UUID) -> list[Order]:
        """The orders of `customer_id` as the orders database holds them."""
        async with self.orders_records.database.transaction() as session:
            return list(await session.scalars(select(Order).where(Order.customer_id == customer_id)))

    async def orders_events_about(self, order_id: uuid.UUID) -> list[str]:
        """The routing keys of the orders outbox's events about `order_id`, oldest first."""
        return await _events_about(self.orders_records.database, OrdersOutbox, order_id)

    async def delivery_events_about(self, delivery_id: uuid.UUID) -> list[str]:
        """The routing keys of the delivery outbox's events about `delivery_id`, oldest first."""
        return await _events_about(self.delivery_records.database, DeliveryOutbox, delivery_id)

    async def orders_outbox_size(self) -> int:
        async with self.orders_records.database.transaction() as session:
            return int(await session.scalar(select(func.count()).select_from(OrdersOutbox)) or 0)

    async def wait_for_delivery(self, order_id: uuid.UUID, status: str) -> dict[str, Any]:
        async def in_status() -> dict[str, Any] | None:
            found = await self.delivery_of(order_id)
            return found if found is not None and found["status"] == status else None

        return await self._wait_for(in_status, message=f"the delivery of order {order_id} to be {status}")


async def _events_about(
    database: Database, outbox: type[OrdersOutbox] | type[DeliveryOutbox], subject: uuid.UUID
) -> list[str]:
    async with database.transaction() as session:
        rows = await session.scalars(
            select(outbox.routing_key)
            .where(outbox.body.contains(f'"subject":"{subject}"'))
            .order_by(outbox.id)
        )
        return list(rows)


@dataclass(frozen=True)
class Servers:
    orders_database_url: str
    delivery_database_url: str
    broker_prefix: str


@dataclass(frozen=True)
class Services:
    orders: RunningService
    delivery: RunningService
