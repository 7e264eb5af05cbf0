"""Reading and writing orders and idempotency keys with SQLAlchemy."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import ColumnElement, bindparam, exc, func, select

from deliveryhub_kit.driver_reads import DriverRead
from deliveryhub_kit.lists import Page, Sort, ordering
from deliveryhub_kit.search import Search
from deliveryhub_kit.unit_of_work import UnitOfWork
from deliveryhub_orders.models import Base, IdempotencyRecord, Order

_ORDER_TABLE = Base.metadata.tables[Order.__tablename__]
_ORDER_COLUMNS = tuple(column.key for column in _ORDER_TABLE.columns)
_ORDER_BY_ID = select(_ORDER_TABLE).where(_ORDER_TABLE.c.id == bindparam("order_id"))
_ONE_ORDER = DriverRead(_ORDER_BY_ID)
_LOCK_ORDER = _ORDER_BY_ID.with_for_update()


@dataclass(frozen=True)
class OrderQuery:
    """Which orders a list shows: one customer's (None: everyone's), of one status, matching a
    search; and in which order."""

    customer_id: uuid.UUID | None = None
    status: str | None = None
    search: Search | None = None
    sort: Sort = Sort.NEWEST


class SqlOrderRepository:
    def __init__(self, session: UnitOfWork) -> None:
        self._session = session
        # Orders this transaction has locked already: one object each, however often asked for.
        self._locked = session.locked.of(Order)

    async def get(self, order_id: uuid.UUID, *, for_update: bool = False) -> Order | None:
        """The order, read as a plain row into an `Order` the session does not track: no ORM load
        on the way. `for_update`: locked for this transaction, to change; what the transaction
        changes of it is written back as it commits (`UnitOfWork.change_at_commit`), with no flush."""
        if for_update and order_id in self._locked:
            return self._locked[order_id]
        connection = await self._session.connection()
        if not for_update:
            found = await _ONE_ORDER.one_or_none(connection, order_id=order_id)
            return None if found is None else Order(**found._asdict())
        row = (await connection.execute(_LOCK_ORDER, {"order_id": order_id})).one_or_none()
        order = None
        if row is not None:
            read = dict(row._mapping)
            order = Order(**read)
            self._session.change_at_commit(_ORDER_TABLE, order, read)
        self._locked[order_id] = order
        return order

    async def list(self, query: OrderQuery, *, limit: int, offset: int) -> Page[Order]:
        conditions: list[ColumnElement[bool]] = []
        if query.customer_id is not None:
            conditions.append(Order.customer_id == query.customer_id)
        if query.status is not None:
            conditions.append(Order.status == query.status)
        if query.search is not None:
            conditions.append(query.search.condition(Order.id, Order.address))
        connection = await self._session.connection()
        total = await connection.scalar(select(func.count()).select_from(_ORDER_TABLE).where(*conditions))
        order = ordering(query.sort, created_at=Order.created_at, updated_at=Order.updated_at, id=Order.id)
        rows = select(_ORDER_TABLE).where(*conditions).order_by(*order).limit(limit).offset(offset)
        return Page([Order(**row._mapping) for row in await connection.execute(rows)], int(total or 0))

    async def get_idempotency_record(self, customer_id: uuid.UUID, key: str) -> IdempotencyRecord | None:
        return await self._session.get(IdempotencyRecord, (customer_id, key))

    async def add(self, order: Order, record: IdempotencyRecord | None) -> bool:
        """Add the order (and its key); False if a concurrent request took the key first."""
        if record is None:
            # Written as the transaction commits, with its event: in one statement when nothing
            # else ran. The session need not track an order this transaction only creates.
            self._session.insert_at_commit(
                _ORDER_TABLE, {column: getattr(order, column) for column in _ORDER_COLUMNS}
            )
            return True
        # Only a key can collide: a savepoint keeps the transaction usable to read the winner's answer.
        try:
            async with self._session.begin_nested():
                self._session.add_all([order, record])
                await self._session.flush()
        except exc.IntegrityError:
            return False
        return True
