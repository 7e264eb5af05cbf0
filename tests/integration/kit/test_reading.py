"""A unit of work that only reads: no transaction around its statements on PostgreSQL."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from sqlalchemy import text

from deliveryhub_contracts.events import ORDERS_SOURCE
from deliveryhub_kit.db import Database
from deliveryhub_kit.outbox import Outbox
from tests.support.stand_in import StandInOutbox, order_created

pytestmark = pytest.mark.integration

TRANSACTION = text("SELECT txid_current()")


async def test_each_statement_of_a_read_is_a_transaction_of_its_own(stand_in_database: Database) -> None:
    async with stand_in_database.reading() as work:
        first, second = (await work.scalar(TRANSACTION)), (await work.scalar(TRANSACTION))
    assert first != second  # no BEGIN: nothing held open between them

    async with stand_in_database.transaction() as work:
        first, second = (await work.scalar(TRANSACTION)), (await work.scalar(TRANSACTION))
    assert first == second  # a write's statements share one transaction


async def test_an_event_emitted_while_reading_is_refused_not_lost(stand_in_database: Database) -> None:
    order_id = uuid.uuid4()
    async with stand_in_database.reading() as work:
        with pytest.raises(RuntimeError, match="reading unit of work"):
            Outbox(work, StandInOutbox, ORDERS_SOURCE).emit(order_created(order_id), subject=str(order_id))


async def test_a_read_on_sqlite_is_a_transaction_as_usual(tmp_path: Path) -> None:
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'read.sqlite3'}")
    try:
        async with database.reading() as work:
            assert await work.scalar(text("SELECT 1")) == 1
            assert work.in_transaction()
    finally:
        await database.dispose()


async def test_a_read_holds_one_connection_however_it_asks(stand_in_database: Database) -> None:
    pool = stand_in_database.engine.pool
    before = pool.checkedout()  # type: ignore[attr-defined]
    async with stand_in_database.reading() as work:
        core = await work.connection()
        backend = await core.scalar(text("SELECT pg_backend_pid()"))
        # A statement through the session (as an ORM query goes) runs on that same connection.
        assert await work.scalar(text("SELECT pg_backend_pid()")) == backend
        assert await (await work.connection()).scalar(text("SELECT pg_backend_pid()")) == backend
        assert pool.checkedout() == before + 1  # type: ignore[attr-defined]
    assert pool.checkedout() == before  # type: ignore[attr-defined]
