"""Rows inserted at commit: written by one statement on PostgreSQL when the transaction ran no other,
exactly as SQLAlchemy's INSERT writes them otherwise, all or none."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import JSON, String, Table, event, func, insert, select, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from deliveryhub_contracts.events import ORDERS_SOURCE
from deliveryhub_kit.db import Database, ExactDecimal, UtcDateTime, make_metadata, utcnow
from deliveryhub_kit.failures import Verdict, classify
from deliveryhub_kit.outbox import Outbox, OutboxMessageMixin
from tests.support.databases import Databases
from tests.support.stand_in import order_created
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration


class Base(DeclarativeBase):
    metadata = make_metadata()


class Parcel(Base):
    """A row of every kind of column a service writes: defaults made in Python, JSON, decimals."""

    __tablename__ = "parcel"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    label: Mapped[str] = mapped_column(String(10))
    contents: Mapped[list[dict[str, Any]]] = mapped_column(JSON().with_variant(JSONB(), "postgresql"))
    weight: Mapped[Decimal] = mapped_column(ExactDecimal(14, 2))
    due: Mapped[datetime] = mapped_column(UtcDateTime)
    attempts: Mapped[int] = mapped_column(default=3)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    note: Mapped[str | None] = mapped_column(String(50))


class ParcelOutbox(OutboxMessageMixin, Base):
    __tablename__ = "outbox"


PARCELS: Table = Parcel.__table__  # type: ignore[assignment]


@pytest.fixture
async def database(databases: Databases) -> AsyncIterator[Database]:
    # One connection: a test can tell whether the pool kept it or opened another.
    async with databases.with_tables(
        "insert_at_commit", Base.metadata, pool_size=1, max_overflow=0
    ) as database:
        yield database


def parcel(label: str = "tea", **values: object) -> dict[str, object]:
    return {
        "label": label,
        "contents": [{"name": "Чай", "price": "250.00"}],
        "weight": Decimal("1.25"),
        "due": datetime(2026, 12, 24, 9, 30, tzinfo=UTC),
        **values,
    }


def statements_through_sqlalchemy(database: Database) -> list[str]:
    seen: list[str] = []

    @event.listens_for(database.engine.sync_engine, "before_cursor_execute")
    def note(_connection: object, _cursor: object, statement: str, *_: object) -> None:
        seen.append(statement)

    return seen


async def stored(database: Database) -> list[Parcel]:
    async with database.reading() as work:
        return list((await work.scalars(select(Parcel).order_by(Parcel.label))).all())


async def test_rows_and_events_of_a_transaction_that_ran_nothing_else_are_one_statement(
    database: Database,
) -> None:
    seen = statements_through_sqlalchemy(database)
    order_id = uuid.uuid4()
    committed: list[bool] = []
    database.on_commit(lambda work: committed.append(work.pending.emitted))

    async with database.transaction() as work:
        work.insert_at_commit(PARCELS, parcel("first"))
        work.insert_at_commit(PARCELS, parcel("second", id=uuid.uuid4(), note="by hand"))
        Outbox(work, ParcelOutbox, ORDERS_SOURCE).emit(order_created(order_id), subject=str(order_id))

    assert seen == []  # no BEGIN, INSERT or COMMIT through the session: the driver ran one statement
    assert committed == [True]  # the relay is woken as after any commit with an event
    first, second = await stored(database)
    assert (first.label, second.label) == ("first", "second")
    assert first.note is None
    assert second.note == "by hand"
    async with database.reading() as work:
        transactions = await work.scalar(
            text(
                "SELECT count(DISTINCT xmin::text)"
                " FROM (SELECT xmin FROM parcel UNION ALL SELECT xmin FROM outbox) AS rows"
            )
        )
        assert await work.scalar(select(func.count()).select_from(ParcelOutbox)) == 1
    assert transactions == 1  # every row of it committed together


async def test_one_statement_writes_what_sqlalchemy_would_have_written(database: Database) -> None:
    before = utcnow()
    async with database.transaction() as work:
        work.insert_at_commit(PARCELS, parcel("alone"))  # no transaction around it
    async with database.transaction() as work:
        transaction = await work.scalar(text("SELECT txid_current()::text"))
        work.insert_at_commit(PARCELS, parcel("inside"))  # written in the transaction, then committed
    async with database.transaction() as work:
        await work.execute(insert(PARCELS), parcel("sqlalchemy"))

    rows = {row.label: row for row in await stored(database)}
    assert set(rows) == {"alone", "inside", "sqlalchemy"}
    for row in rows.values():
        assert row.contents == [{"name": "Чай", "price": "250.00"}]
        assert row.weight == Decimal("1.25")
        assert row.due == datetime(2026, 12, 24, 9, 30, tzinfo=UTC)
        assert row.attempts == 3  # the column's Python default
        assert before <= row.created_at <= utcnow() + timedelta(seconds=1)
        assert row.note is None
    assert len({row.id for row in rows.values()}) == 3
    async with database.reading() as work:
        written_by = await work.scalar(text("SELECT xmin::text FROM parcel WHERE label = 'inside'"))
    assert written_by == transaction


async def test_a_row_the_database_refuses_takes_the_others_with_it(database: Database) -> None:
    order_id = uuid.uuid4()

    async def write() -> None:
        async with database.transaction() as work:
            work.insert_at_commit(PARCELS, parcel("fine"))
            work.insert_at_commit(PARCELS, parcel("far too long for ten"))
            Outbox(work, ParcelOutbox, ORDERS_SOURCE).emit(order_created(order_id), subject=str(order_id))

    with pytest.raises(Exception, match="too long") as refused:
        await write()
    failure = classify(refused.value)
    assert failure.code == "22001"  # a value too long: answered 422
    assert failure.verdict is Verdict.POISON
    assert await stored(database) == []
    async with database.reading() as work:
        assert await work.scalar(select(func.count()).select_from(ParcelOutbox)) == 0
    # The pool's one connection is kept: a refused value says nothing against it.
    connection = await backend(database)
    with pytest.raises(Exception, match="too long"):
        await write()
    assert await backend(database) == connection

    # Refused inside a transaction that wrote already, it takes that write with it too.
    async def write_after_a_write() -> None:
        async with database.transaction() as work:
            await work.execute(insert(PARCELS), parcel("written"))
            work.insert_at_commit(PARCELS, parcel("far too long for ten"))

    with pytest.raises(Exception, match="too long"):
        await write_after_a_write()
    assert await stored(database) == []
    async with database.transaction() as work:
        work.insert_at_commit(PARCELS, parcel("after"))
    assert [row.label for row in await stored(database)] == ["after"]


async def test_a_write_canceled_mid_statement_leaves_no_busy_connection_in_the_pool(
    database: Database,
) -> None:
    async with database.transaction() as work:
        work.insert_at_commit(PARCELS, parcel("warm"))
    connection = await backend(database)
    other = Database(database.engine.url.render_as_string(hide_password=False), pool_size=1, max_overflow=0)
    async with other.engine.connect() as locker:
        await locker.execute(text("LOCK TABLE parcel IN ACCESS EXCLUSIVE MODE"))

        async def write() -> None:
            async with database.transaction() as work:
                work.insert_at_commit(PARCELS, parcel("blocked"))

        writing = asyncio.create_task(write())

        async def blocked() -> bool:
            assert not writing.done(), "the write ended before it met the lock"
            return await _waiting_on_a_lock(locker)

        await wait_for(blocked, message="the write to wait on the lock")
        writing.cancel()
        with pytest.raises(asyncio.CancelledError):
            await writing
        await locker.rollback()
    await other.dispose()

    # The pool's one connection was dropped, not handed out mid-statement: the next write works.
    assert await backend(database) != connection
    async with database.transaction() as work:
        work.insert_at_commit(PARCELS, parcel("next"))
    labels = {row.label for row in await stored(database)}
    assert {"warm", "next"} <= labels


async def backend(database: Database) -> int:
    """The server process of the pool's (one) connection."""
    async with database.reading() as work:
        pid = await work.scalar(text("SELECT pg_backend_pid()"))
    assert isinstance(pid, int)
    return pid


async def _waiting_on_a_lock(locker: Any) -> bool:
    await locker.execute(text("SELECT pg_stat_clear_snapshot()"))  # a fresh look each time
    waiting = await locker.scalar(
        text(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND wait_event_type = 'Lock' AND query LIKE 'INSERT INTO parcel%'"
        )
    )
    return bool(waiting)


# Rows read to change: locked by a plain SELECT, changed on an object the session does not track,
# written back as the transaction commits.


@pytest.fixture(params=["postgresql", "sqlite"])
async def either(
    request: pytest.FixtureRequest, databases: Databases, tmp_path: Any
) -> AsyncIterator[Database]:
    """The parcel tables on PostgreSQL (one statement at commit) or SQLite (one UPDATE a row)."""
    if request.param == "postgresql":
        async with databases.with_tables(
            "change_at_commit", Base.metadata, pool_size=2, max_overflow=0
        ) as db:
            yield db
        return
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'parcels.sqlite3'}", pool_size=2, max_overflow=0)
    async with db.engine.begin() as connection:
        await connection.run_sync(Base.metadata.create_all)
    yield db
    await db.dispose()


LOCK_PARCEL = select(PARCELS).where(PARCELS.c.label == "tea").with_for_update()


async def locked_parcel(work: Any) -> Parcel:
    """The tea parcel, locked, as a plain object, watched for what this transaction changes."""
    row = (await (await work.connection()).execute(LOCK_PARCEL)).one()
    read = dict(row._mapping)
    record = Parcel(**read)
    work.change_at_commit(PARCELS, record, read)
    return record


def kinds(statements: list[str]) -> list[str]:
    """What each statement through SQLAlchemy did, but SQLite's BEGIN."""
    return [statement.split()[0] for statement in statements if statement.split()[0] != "BEGIN"]


async def the_parcel(database: Database) -> Parcel:
    (found,) = await stored(database)
    return found


async def test_a_locked_rows_change_is_written_with_its_event_at_commit(either: Database) -> None:
    async with either.transaction() as work:
        work.insert_at_commit(PARCELS, parcel("tea", note="fragile"))
    before = await the_parcel(either)
    seen = statements_through_sqlalchemy(either)
    order_id = uuid.uuid4()

    async with either.transaction() as work:
        record = await locked_parcel(work)
        record.weight = Decimal("2.50")
        record.attempts = record.attempts - 1
        record.note = None
        Outbox(work, ParcelOutbox, ORDERS_SOURCE).emit(order_created(order_id), subject=str(order_id))
    written = kinds(seen)

    after = await the_parcel(either)
    assert (after.weight, after.attempts, after.note) == (Decimal("2.50"), 2, None)
    assert (after.id, after.contents, after.due, after.created_at) == (
        before.id,
        before.contents,
        before.due,
        before.created_at,
    )
    async with either.reading() as work:
        assert await work.scalar(select(func.count()).select_from(ParcelOutbox)) == 1
    if either.engine.dialect.name == "postgresql":
        # Through SQLAlchemy only the locked read: the change and the event went in one statement,
        # in the transaction that read the row.
        assert written == ["SELECT"]
        async with either.reading() as work:
            writers = await work.scalar(
                text(
                    "SELECT count(DISTINCT xmin::text)"
                    " FROM (SELECT xmin FROM parcel UNION ALL SELECT xmin FROM outbox) AS rows"
                )
            )
        assert writers == 1
    else:
        assert written == ["SELECT", "UPDATE", "INSERT"]
        (update,) = [statement for statement in seen if statement.startswith("UPDATE")]
        # Only the columns the transaction changed.
        assert update.split(" WHERE ")[0] == "UPDATE parcel SET weight=?, attempts=?, note=?"


async def test_a_row_read_to_change_and_left_alone_is_not_written(either: Database) -> None:
    async with either.transaction() as work:
        work.insert_at_commit(PARCELS, parcel("tea"))
    seen = statements_through_sqlalchemy(either)

    async with either.transaction() as work:
        record = await locked_parcel(work)
        record.label = "tea"  # the same value again

    assert kinds(seen) == ["SELECT"]


async def test_a_change_of_a_transaction_that_rolls_back_is_not_written(either: Database) -> None:
    async with either.transaction() as work:
        work.insert_at_commit(PARCELS, parcel("tea"))

    async def change_my_mind() -> None:
        async with either.transaction() as work:
            record = await locked_parcel(work)
            record.weight = Decimal("9.99")
            raise RuntimeError("changed my mind")

    with pytest.raises(RuntimeError, match="changed my mind"):
        await change_my_mind()
    async with either.transaction() as work:
        record = await locked_parcel(work)
        record.note = "second try"

    after = await the_parcel(either)
    assert (after.weight, after.note) == (Decimal("1.25"), "second try")
