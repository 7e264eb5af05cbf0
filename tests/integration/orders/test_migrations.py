"""The orders migrations on the real PostgreSQL: each revision upgrades, downgrades and upgrades again."""

from __future__ import annotations

import asyncio

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import Script, ScriptDirectory
from sqlalchemy import Connection, inspect, pool
from sqlalchemy.ext.asyncio import create_async_engine

from deliveryhub_kit.migrations import alembic_config, downgrade, upgrade
from deliveryhub_kit.settings import async_database_url
from deliveryhub_orders.models import Base
from tests.integration.orders.conftest import ORDERS_MIGRATIONS

pytestmark = pytest.mark.integration


def revisions() -> list[Script]:
    """Every revision of the orders service, oldest first."""
    config = alembic_config(ORDERS_MIGRATIONS, "postgresql://unused/unused")
    script = ScriptDirectory.from_config(config)
    return list(reversed(list(script.walk_revisions("base", "heads"))))


def test_the_orders_migrations_form_one_line() -> None:
    script = ScriptDirectory.from_config(alembic_config(ORDERS_MIGRATIONS, "postgresql://unused/unused"))

    assert len(script.get_heads()) == 1
    assert revisions()[0].down_revision is None


async def tables_of(url: str) -> set[str]:
    """The tables in the database, besides alembic's own."""
    engine = create_async_engine(async_database_url(url), poolclass=pool.NullPool)
    try:
        async with engine.connect() as connection:
            names = await connection.run_sync(lambda sync: inspect(sync).get_table_names())
    finally:
        await engine.dispose()
    return set(names) - {"alembic_version"}


async def differences_from_the_models(url: str) -> list[object]:
    """What autogenerate would still write: empty when the migrated schema matches the models."""

    def compare(connection: Connection) -> list[object]:
        return list(compare_metadata(MigrationContext.configure(connection), Base.metadata))

    engine = create_async_engine(async_database_url(url), poolclass=pool.NullPool)
    try:
        async with engine.connect() as connection:
            return await connection.run_sync(compare)
    finally:
        await engine.dispose()


async def test_stairway_each_revision_upgrades_downgrades_and_upgrades_again(empty_database_url: str) -> None:
    url = empty_database_url
    for revision in revisions():
        previous = revision.down_revision
        assert previous is None or isinstance(previous, str), "a merge revision needs a stairway of its own"
        before = await tables_of(url)

        await asyncio.to_thread(upgrade, ORDERS_MIGRATIONS, url, revision.revision)
        after = await tables_of(url)
        await asyncio.to_thread(downgrade, ORDERS_MIGRATIONS, url, previous or "base")
        assert await tables_of(url) == before, f"downgrading {revision.revision} left its tables behind"
        await asyncio.to_thread(upgrade, ORDERS_MIGRATIONS, url, revision.revision)

        assert await tables_of(url) == after, f"{revision.revision} did not upgrade again"


async def test_the_newest_schema_is_what_the_models_describe(empty_database_url: str) -> None:
    url = empty_database_url

    await asyncio.to_thread(upgrade, ORDERS_MIGRATIONS, url)

    assert await tables_of(url) == {"orders", "idempotency_keys", "outbox", "inbox"}
    assert await differences_from_the_models(url) == []


async def test_downgrading_to_base_removes_every_table(empty_database_url: str) -> None:
    url = empty_database_url
    await asyncio.to_thread(upgrade, ORDERS_MIGRATIONS, url)

    await asyncio.to_thread(downgrade, ORDERS_MIGRATIONS, url, "base")

    assert await tables_of(url) == set()
