"""The delivery service in-process as the tests drive it, and their own view of its database."""

from __future__ import annotations

import uuid
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Protocol

import httpx
from fastapi import FastAPI
from sqlalchemy import func, select

from deliveryhub_contracts.topology import DELIVERY_ORDER_EVENTS, Names
from deliveryhub_delivery.models import Delivery, InboxMessage, OutboxMessage
from deliveryhub_delivery.settings import DeliverySettings
from deliveryhub_kit.db import Database
from deliveryhub_kit.runtime import ServiceRuntime
from tests.support.services import runtime_of


@dataclass
class RunningDelivery:
    """The delivery service, started by its own lifespan, with an HTTP client in front of it."""

    app: FastAPI
    settings: DeliverySettings
    client: httpx.AsyncClient
    stack: AsyncExitStack

    @property
    def runtime(self) -> ServiceRuntime:
        return runtime_of(self.app)

    @property
    def names(self) -> Names:
        return Names(self.settings.broker_prefix)

    @property
    def queue(self) -> str:
        return self.names.queue(DELIVERY_ORDER_EVENTS)

    @property
    def dead_letter_queue(self) -> str:
        return Names.dead_letter_queue(self.queue)

    async def stop(self) -> None:
        """Run the shutdown half of the lifespan (consumers stop, the relay finishes its batch)."""
        await self.stack.aclose()


class StartDelivery(Protocol):
    async def __call__(
        self, *, legacy: bool = False, database_url: str | None = None, amqp_url: str | None = None
    ) -> RunningDelivery: ...


class DeliveryRecords:
    """The test's own view of the delivery database."""

    def __init__(self, database: Database) -> None:
        self.database = database

    async def get(self, delivery_id: uuid.UUID) -> Delivery | None:
        async with self.database.transaction() as session:
            return await session.get(Delivery, delivery_id)

    async def count_deliveries(self) -> int:
        async with self.database.transaction() as session:
            return int(await session.scalar(select(func.count()).select_from(Delivery)) or 0)

    async def inbox_ids(self) -> list[uuid.UUID]:
        async with self.database.transaction() as session:
            return list(await session.scalars(select(InboxMessage.event_id)))

    async def outbox(self) -> list[OutboxMessage]:
        async with self.database.transaction() as session:
            return list(await session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)))


class Settle(Protocol):
    async def __call__(self) -> uuid.UUID: ...
