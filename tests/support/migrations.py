"""What the services' migration tests share: their revisions, a look at a database, the diff."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import Script, ScriptDirectory
from sqlalchemy import Connection, MetaData, inspect, pool, text
from sqlalchemy.ext.asyncio import create_async_engine

from deliveryhub_kit.migrations import alembic_config
from deliveryhub_kit.settings import async_database_url


def revisions_oldest_first(migrations: Path) -> list[Script]:
    scripts = ScriptDirectory.from_config(alembic_config(migrations, "postgresql:///unused"))
    return list(reversed(list(scripts.walk_revisions())))


async def query(url: str, statement: str) -> Sequence[tuple[object, ...]]:
    engine = create_async_engine(async_database_url(url), poolclass=pool.NullPool)
    try:
        async with engine.connect() as connection:
            return [tuple(row) for row in await connection.execute(text(statement))]
    finally:
        await engine.dispose()


async def table_names(url: str) -> set[str]:
    engine = create_async_engine(async_database_url(url), poolclass=pool.NullPool)
    try:
        async with engine.connect() as connection:
            return set(await connection.run_sync(lambda sync: inspect(sync).get_table_names()))
    finally:
        await engine.dispose()


async def differences_from(url: str, metadata: MetaData) -> list[object]:
    """What autogenerate would still write: empty when the migrated schema matches the models."""

    def compare(connection: Connection) -> list[object]:
        return list(compare_metadata(MigrationContext.configure(connection), metadata))

    engine = create_async_engine(async_database_url(url), poolclass=pool.NullPool)
    try:
        async with engine.connect() as connection:
            return await connection.run_sync(compare)
    finally:
        await engine.dispose()
