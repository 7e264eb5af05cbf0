"""Reading and writing deliveries and couriers with SQLAlchemy."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from deliveryhub_delivery.models import Delivery, Deliveryman

# Deliveries this transaction has locked already, by id (None: there is none), so that the handlers
# of a batch of events find them without a query each.
LOCKED_KEY = "deliveries_locked"


class SqlDeliveryRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session
        self._locked: dict[uuid.UUID, Delivery | None] = session.info.setdefault(LOCKED_KEY, {})

    async def get(self, delivery_id: uuid.UUID, *, for_update: bool = False) -> Delivery | None:
        if for_update and delivery_id in self._locked:
            return self._locked[delivery_id]
        query = select(Delivery).where(Delivery.id == delivery_id)
        if for_update:
            query = query.with_for_update(of=Delivery)
        return (await self._session.scalars(query)).unique().one_or_none()

    async def lock_many(self, delivery_ids: Iterable[uuid.UUID]) -> None:
        """Lock the deliveries of these ids for this transaction in one query, in id order (so that
        two transactions locking overlapping sets cannot deadlock), and remember which exist."""
        wanted = sorted(set(delivery_ids) - self._locked.keys())
        if not wanted:
            return
        query = (
            select(Delivery).where(Delivery.id.in_(wanted)).order_by(Delivery.id).with_for_update(of=Delivery)
        )
        found = {delivery.id: delivery for delivery in (await self._session.scalars(query)).unique()}
        for delivery_id in wanted:
            self._locked[delivery_id] = found.get(delivery_id)

    def add(self, delivery: Delivery) -> None:
        self._session.add(delivery)
        self._locked[delivery.id] = delivery

    async def list(
        self,
        *,
        status: str | None,
        deliveryman_id: uuid.UUID | None,
        limit: int,
        offset: int,
    ) -> Sequence[Delivery]:
        # Records still waiting for their order's snapshot have no address and are not shown.
        query = select(Delivery).where(Delivery.address.is_not(None))
        if status is not None:
            query = query.where(Delivery.status == status)
        if deliveryman_id is not None:
            query = query.where(Delivery.deliveryman_id == deliveryman_id)
        query = query.order_by(Delivery.created_at.desc(), Delivery.id).limit(limit).offset(offset)
        return (await self._session.scalars(query)).unique().all()

    async def get_deliveryman(self, deliveryman_id: uuid.UUID) -> Deliveryman | None:
        return await self._session.get(Deliveryman, deliveryman_id)

    async def list_deliverymen(self) -> Sequence[Deliveryman]:
        return (await self._session.scalars(select(Deliveryman).order_by(Deliveryman.name))).all()
