"""Reading and writing deliveries and couriers with SQLAlchemy."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import ColumnElement, func, select

from deliveryhub_delivery.domain import DeliveryStatus
from deliveryhub_delivery.models import Delivery, Deliveryman
from deliveryhub_kit.lists import Page, Sort, ordering
from deliveryhub_kit.search import Search
from deliveryhub_kit.unit_of_work import UnitOfWork


@dataclass(frozen=True)
class DeliveryQuery:
    """Which deliveries a list shows, and in which order."""

    status: DeliveryStatus | None = None
    deliveryman_id: uuid.UUID | None = None
    unassigned: bool = False  # no courier appointed yet
    search: Search | None = None
    sort: Sort = Sort.NEWEST


class SqlDeliveryRepository:
    def __init__(self, work: UnitOfWork) -> None:
        self._session = work
        # Deliveries this transaction has locked already, so that a batch's handlers need no query each.
        self._locked = work.locked.of(Delivery)

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

    async def list(self, query: DeliveryQuery, *, limit: int, offset: int) -> Page[Delivery]:
        conditions = _conditions(query)
        total = await self._session.scalar(select(func.count()).select_from(Delivery).where(*conditions))
        order = ordering(
            query.sort, created_at=Delivery.created_at, updated_at=Delivery.updated_at, id=Delivery.id
        )
        rows = select(Delivery).where(*conditions).order_by(*order).limit(limit).offset(offset)
        return Page((await self._session.scalars(rows)).unique().all(), int(total or 0))

    async def open_deliveries(self) -> dict[uuid.UUID, int]:
        """How many deliveries each courier has appointed and not yet done or canceled."""
        query = (
            select(Delivery.deliveryman_id, func.count())
            .where(
                ~Delivery.awaits_snapshot,  # as listed: the courier index covers these alone
                Delivery.status == DeliveryStatus.ACTIVATED,
                Delivery.deliveryman_id.is_not(None),
            )
            .group_by(Delivery.deliveryman_id)
        )
        return {man: int(count) for man, count in (await self._session.execute(query)).all() if man}

    async def get_deliveryman(self, deliveryman_id: uuid.UUID) -> Deliveryman | None:
        return await self._session.get(Deliveryman, deliveryman_id)

    async def list_deliverymen(self) -> Sequence[Deliveryman]:
        return (await self._session.scalars(select(Deliveryman).order_by(Deliveryman.name))).all()


def _conditions(query: DeliveryQuery) -> list[ColumnElement[bool]]:
    # Records still waiting for their order's snapshot have no address and are not shown.
    conditions: list[ColumnElement[bool]] = [~Delivery.awaits_snapshot]
    if query.status is not None:
        conditions.append(Delivery.status == query.status)
    if query.deliveryman_id is not None:
        conditions.append(Delivery.deliveryman_id == query.deliveryman_id)
    if query.unassigned:
        conditions.append(Delivery.deliveryman_id.is_(None))
    if query.search is not None:
        conditions.append(query.search.condition(Delivery.id, Delivery.address))
    return conditions
