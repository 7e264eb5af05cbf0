"""Reading and writing deliveries and couriers with SQLAlchemy."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Row, Table, bindparam, func, select

from deliveryhub_delivery.domain import Courier, DeliveryStatus, DeliveryView
from deliveryhub_delivery.models import Base, Delivery, Deliveryman
from deliveryhub_kit.driver_reads import DriverRead, ReadRow
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


# What the read routes show, as plain rows: a delivery and its courier's name in one row, with no
# ORM identity map or loader on the way (a read routes' delivery is never changed).
_DELIVERY_TABLE: Table = Base.metadata.tables[Delivery.__tablename__]
_DELIVERY_COLUMNS = tuple(column.key for column in _DELIVERY_TABLE.columns)
_COURIER_TABLE: Table = Base.metadata.tables[Deliveryman.__tablename__]
_deliveries = _DELIVERY_TABLE.c
_couriers = _COURIER_TABLE.c
_WITH_COURIER = _DELIVERY_TABLE.outerjoin(_COURIER_TABLE)
_VIEWS = select(
    _deliveries.id,
    _deliveries.address,
    _deliveries.date,
    _deliveries.status,
    _deliveries.deliveryman_id,
    _couriers.name.label("deliveryman_name"),
    _deliveries.created_at,
    _deliveries.updated_at,
).select_from(_WITH_COURIER)
_ONE_VIEW = DriverRead(_VIEWS.where(_deliveries.id == bindparam("delivery_id")))
# What a transaction locks to change: every column, and the courier's name for its answer.
_LOCK_MANY = (
    select(_DELIVERY_TABLE, _couriers.name.label("courier_name"))
    .select_from(_WITH_COURIER)
    .where(_deliveries.id.in_(bindparam("ids", expanding=True)))
    .order_by(_deliveries.id)
    .with_for_update(of=_DELIVERY_TABLE)
)


def _view(row: Row[*tuple[Any, ...]] | ReadRow) -> DeliveryView:
    man = row.deliveryman_id
    return DeliveryView.of(row, Courier(man, row.deliveryman_name) if man is not None else None)


class SqlDeliveryRepository:
    def __init__(self, work: UnitOfWork) -> None:
        self._session = work
        # Deliveries this transaction has locked already, so that a batch's handlers need no query each.
        self._locked = work.locked.of(Delivery)

    async def get(self, delivery_id: uuid.UUID, *, for_update: bool = False) -> Delivery | None:
        """The delivery; `for_update`: locked for this transaction, to change (see `lock_many`)."""
        if not for_update:
            query = select(Delivery).where(Delivery.id == delivery_id)
            return (await self._session.scalars(query)).unique().one_or_none()
        await self.lock_many((delivery_id,))
        return self._locked[delivery_id]

    async def read(self, delivery_id: uuid.UUID) -> DeliveryView | None:
        """The delivery as the read routes show it, or None."""
        connection = await self._session.connection()
        row = await _ONE_VIEW.one_or_none(connection, delivery_id=delivery_id)
        return None if row is None else _view(row)

    async def lock_many(self, delivery_ids: Iterable[uuid.UUID]) -> None:
        """Lock the deliveries of these ids for this transaction in one query, in id order (so that
        two transactions locking overlapping sets cannot deadlock), and remember which exist.

        A locked delivery is read as a plain row (with its courier's name) into a `Delivery` the
        session does not track; what the transaction changes of it is written back as it commits
        (`UnitOfWork.change_at_commit`), with no ORM load and flush on the way."""
        wanted = sorted(set(delivery_ids) - self._locked.keys())
        if not wanted:
            return
        connection = await self._session.connection()
        found = {}
        for row in await connection.execute(_LOCK_MANY, {"ids": wanted}):
            read = {column: getattr(row, column) for column in _DELIVERY_COLUMNS}
            delivery = Delivery(**read)
            if row.deliveryman_id is not None:
                delivery.deliveryman = Deliveryman(id=row.deliveryman_id, name=row.courier_name)
            self._session.change_at_commit(_DELIVERY_TABLE, delivery, read)
            found[delivery.id] = delivery
        for delivery_id in wanted:
            self._locked[delivery_id] = found.get(delivery_id)

    def add(self, delivery: Delivery) -> None:
        """A new delivery, inserted as the transaction commits with what it holds then (the
        events after the first in a batch may change it)."""
        self._session.insert_record_at_commit(_DELIVERY_TABLE, delivery, _DELIVERY_COLUMNS)
        self._locked[delivery.id] = delivery

    async def list(self, query: DeliveryQuery, *, limit: int, offset: int) -> Page[DeliveryView]:
        conditions = _conditions(query)
        connection = await self._session.connection()
        total = await connection.scalar(select(func.count()).select_from(_DELIVERY_TABLE).where(*conditions))
        order = ordering(
            query.sort,
            created_at=_deliveries.created_at,
            updated_at=_deliveries.updated_at,
            id=_deliveries.id,
        )
        rows = await connection.execute(
            _VIEWS.where(*conditions).order_by(*order).limit(limit).offset(offset)
        )
        return Page([_view(row) for row in rows], int(total or 0))

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
    conditions: list[ColumnElement[bool]] = [_deliveries.address.is_not(None)]
    if query.status is not None:
        conditions.append(_deliveries.status == query.status)
    if query.deliveryman_id is not None:
        conditions.append(_deliveries.deliveryman_id == query.deliveryman_id)
    if query.unassigned:
        conditions.append(_deliveries.deliveryman_id.is_(None))
    if query.search is not None:
        conditions.append(query.search.condition(_deliveries.id, _deliveries.address))
    return conditions
