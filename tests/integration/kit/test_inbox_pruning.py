"""The inbox records which events were applied, and forgets what it received long ago, and only that,
on PostgreSQL and on SQLite."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import event, func, insert, select

from deliveryhub_kit.db import Database, utcnow
from deliveryhub_kit.inbox import InboxPruner, prune_inbox, record_in_inbox
from deliveryhub_kit.settings import async_database_url
from tests.support.databases import Databases
from tests.support.stand_in import StandInBase, StandInInbox
from tests.support.waiting import WaitFor

pytestmark = pytest.mark.integration

RETENTION = timedelta(days=7)


@pytest.fixture(params=["postgresql", "sqlite"])
async def database(
    request: pytest.FixtureRequest, databases: Databases, tmp_path: Path
) -> AsyncIterator[Database]:
    """The stand-in service's tables on the real PostgreSQL, or in an SQLite file."""
    if request.param == "postgresql":
        url = await databases.create_with_tables("pruning", StandInBase.metadata)
        on_server = Database(async_database_url(url))
        yield on_server
        await on_server.dispose()
        await databases.drop(url)
        return
    in_file = Database(f"sqlite+aiosqlite:///{tmp_path / 'inbox.sqlite3'}")
    async with in_file.engine.begin() as connection:
        await connection.run_sync(StandInBase.metadata.create_all)
    yield in_file
    await in_file.dispose()


async def receive(database: Database, count: int, *, ago: timedelta) -> set[uuid.UUID]:
    """Inbox rows as a consumer writes them, received `ago` before now."""
    ids = {uuid.uuid4() for _ in range(count)}
    received_at = utcnow() - ago
    async with database.transaction() as session:
        await session.execute(
            insert(StandInInbox),
            [
                {"event_id": event_id, "event_type": "order.created", "received_at": received_at}
                for event_id in ids
            ],
        )
    return ids


async def kept(database: Database) -> set[uuid.UUID]:
    async with database.transaction() as session:
        return set(await session.scalars(select(StandInInbox.event_id)))


async def test_events_received_before_the_retention_are_forgotten_in_batches(database: Database) -> None:
    old = await receive(database, 1_203, ago=RETENTION + timedelta(hours=1))
    recent = await receive(database, 40, ago=RETENTION - timedelta(hours=1))

    pruned = await prune_inbox(database, StandInInbox, older_than=utcnow() - RETENTION, batch_size=500)

    assert pruned == len(old)
    assert await kept(database) == recent


async def test_the_pruner_keeps_pruning_while_the_service_runs(database: Database, wait_for: WaitFor) -> None:
    pruner = InboxPruner(
        database, StandInInbox, retention_seconds=RETENTION.total_seconds(), every_seconds=0.05
    )
    recent = await receive(database, 10, ago=timedelta(minutes=5))
    pruner.start()
    try:
        await receive(database, 25, ago=RETENTION * 2)

        async def only_recent_left() -> bool:
            return await kept(database) == recent

        await wait_for(only_recent_left, message="the old events to be forgotten")
        await receive(database, 5, ago=RETENTION * 3)  # and again, a round later
        await wait_for(only_recent_left, message="the next old events to be forgotten")
    finally:
        await pruner.stop()

    async with database.transaction() as session:
        assert await session.scalar(select(func.count()).select_from(StandInInbox)) == len(recent)


async def test_recording_reports_only_the_events_not_seen_before_whatever_the_batch(
    database: Database,
) -> None:
    seen_before = [uuid.uuid4() for _ in range(3)]
    async with database.transaction() as work:
        assert await record_in_inbox(
            work, StandInInbox, [(id_, "order.created") for id_ in seen_before]
        ) == set(seen_before)
    statements: list[str] = []
    event.listen(
        database.engine.sync_engine,
        "before_cursor_execute",
        lambda _connection, _cursor, statement, *_: statements.append(statement),
    )

    for size in (1, 250):
        new = [uuid.uuid4() for _ in range(size)]
        batch = [(id_, "order.paid") for id_ in [*new, *seen_before, new[0]]]  # repeats and a copy
        async with database.transaction() as work:
            assert await record_in_inbox(work, StandInInbox, batch) == set(new)

    async with database.reading() as work:
        assert await work.scalar(select(func.count()).select_from(StandInInbox)) == 3 + 1 + 250
    inserts = {statement for statement in statements if statement.startswith("INSERT")}
    if database.engine.dialect.name == "postgresql":
        # One statement for a batch of any size: compiled once, prepared once.
        assert len(inserts) == 1
