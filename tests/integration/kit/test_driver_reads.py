"""A SELECT run on the driver's connection: the rows SQLAlchemy would return, the locks it would
take, and a connection that broke under it never handed out again."""

from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import (
    Float,
    Numeric,
    String,
    Table,
    TypeDecorator,
    bindparam,
    cast,
    func,
    select,
    text,
    type_coerce,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError

from deliveryhub_contracts.events import ORDERS_SOURCE
from deliveryhub_kit.db import Database
from deliveryhub_kit.driver_reads import DriverRead
from deliveryhub_kit.failures import Verdict, classify
from deliveryhub_kit.outbox import Outbox
from tests.support.stand_in import StandInBase, StandInOutbox, order_created
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration

OUTBOX: Table = StandInOutbox.__table__  # type: ignore[assignment]
BY_EVENT = select(OUTBOX).where(OUTBOX.c.event_id == bindparam("event_id"))
ONE_ROW = DriverRead(BY_EVENT)


async def _emitted(database: Database, count: int = 1) -> list[uuid.UUID]:
    async with database.transaction() as work:
        outbox = Outbox(work, StandInOutbox, ORDERS_SOURCE)
        for _ in range(count):
            order_id = uuid.uuid4()
            outbox.emit(order_created(order_id), subject=str(order_id))
    async with database.reading() as work:
        return list((await work.scalars(select(OUTBOX.c.event_id).order_by(OUTBOX.c.id))).all())[-count:]


def _typed(values: dict[str, Any]) -> dict[str, tuple[type, Any]]:
    return {key: (type(value), value) for key, value in values.items()}


async def test_a_row_is_what_sqlalchemy_returns_value_for_value_and_type(stand_in_database: Database) -> None:
    [event_id] = await _emitted(stand_in_database)
    async with stand_in_database.reading() as work:
        connection = await work.connection()
        row = await ONE_ROW.one_or_none(connection, event_id=event_id)
        expected = (await connection.execute(BY_EVENT, {"event_id": event_id})).one()
    assert row is not None
    assert _typed(row._asdict()) == _typed(dict(expected._mapping))
    assert row.created_at.tzinfo is not None  # the column type's own processing: an aware timestamp
    async with stand_in_database.reading() as work:
        assert await ONE_ROW.one_or_none(await work.connection(), event_id=uuid.uuid4()) is None


class _Shouted(TypeDecorator[str]):
    """A type that changes values both ways, to see each column's and parameter's own processing."""

    impl = String
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Dialect) -> str | None:
        return None if value is None else value.lower()

    def process_result_value(self, value: str | None, dialect: Dialect) -> str | None:
        return None if value is None else value.upper()


async def test_values_and_parameters_are_processed_by_their_types(stand_in_database: Database) -> None:
    [event_id] = await _emitted(stand_in_database)
    shouted = select(
        type_coerce(OUTBOX.c.routing_key, _Shouted()).label("key"),
        # Sent as a float, taken as a decimal: what becomes of a value depends on what the server sends.
        type_coerce(cast(OUTBOX.c.attempts + 1.5, Float), Numeric(10, 2)).label("amount"),
    ).where(
        OUTBOX.c.event_id == bindparam("event_id"),
        OUTBOX.c.routing_key == bindparam("key", type_=_Shouted()),
    )
    async with stand_in_database.reading() as work:
        row = await DriverRead(shouted).one_or_none(
            await work.connection(), event_id=event_id, key="ORDER.Created"
        )
    assert row is not None
    assert row.key == "ORDER.CREATED"
    assert row.amount == Decimal("1.50")
    assert isinstance(row.amount, Decimal)


async def test_inside_a_transaction_it_runs_in_that_transaction_and_its_lock_holds(
    stand_in_database: Database,
) -> None:
    [event_id] = await _emitted(stand_in_database)
    locking = DriverRead(BY_EVENT.with_for_update())
    async with stand_in_database.transaction() as work:
        assert await locking.one_or_none(await work.connection(), event_id=event_id) is not None
        async with stand_in_database.engine.connect() as other:
            with pytest.raises(DBAPIError, match="could not obtain lock"):
                await other.execute(
                    text("SELECT 1 FROM outbox WHERE event_id = :event_id FOR UPDATE NOWAIT"),
                    {"event_id": event_id},
                )


async def test_a_connection_lost_under_a_read_is_an_outage_and_never_handed_out_again(
    stand_in_database: Database,
) -> None:
    [event_id] = await _emitted(stand_in_database)
    backend_of = DriverRead(select(func.pg_backend_pid().label("backend")))
    sleeping = DriverRead(select(func.pg_sleep(bindparam("seconds", type_=Float)).label("slept")))
    async with stand_in_database.reading() as work:
        connection = await work.connection()
        found = await backend_of.one_or_none(connection)
        assert found is not None
        read = asyncio.ensure_future(sleeping.one_or_none(connection, seconds=30))
        async with stand_in_database.engine.connect() as other:

            async def sleeping_now() -> bool:
                state = await other.scalar(
                    text("SELECT state FROM pg_stat_activity WHERE pid = :pid"), {"pid": found.backend}
                )
                await other.rollback()
                return bool(state == "active")

            await wait_for(sleeping_now, timeout=10, message="the read to be under way")
            await other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": found.backend})
        with pytest.raises(Exception) as lost:  # noqa: PT011 (the driver's own error, as it comes)
            await read
        assert classify(lost.value).verdict is Verdict.OUTAGE, lost.value
        assert connection.invalidated  # the pool opens a fresh one instead
    async with stand_in_database.reading() as work:
        assert await ONE_ROW.one_or_none(await work.connection(), event_id=event_id) is not None


async def test_on_sqlite_it_runs_through_sqlalchemy_into_the_same_rows(tmp_path: Path) -> None:
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'reads.sqlite3'}")
    try:
        async with database.engine.begin() as connection:
            await connection.run_sync(StandInBase.metadata.create_all)
        [event_id] = await _emitted(database)
        async with database.reading() as work:
            row = await ONE_ROW.one_or_none(await work.connection(), event_id=event_id)
        assert row is not None
        assert row.event_id == event_id
        assert row.created_at.tzinfo is not None
    finally:
        await database.dispose()


async def test_a_statement_with_an_expanding_parameter_is_refused_when_first_run(
    stand_in_database: Database,
) -> None:
    many = DriverRead(select(OUTBOX).where(OUTBOX.c.id.in_(bindparam("ids", expanding=True))))
    async with stand_in_database.reading() as work:
        with pytest.raises(ValueError, match="expanding"):
            await many.all(await work.connection(), ids=[1, 2])
