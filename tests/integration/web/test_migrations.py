"""The web console's migrations on the real PostgreSQL: every step reversible, models and schema alike."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Sequence

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import Script, ScriptDirectory
from sqlalchemy import exc as sa_exc
from sqlalchemy import inspect, pool, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from deliveryhub_kit.migrations import alembic_config, downgrade, upgrade
from deliveryhub_kit.settings import async_database_url
from deliveryhub_web.models import Base
from tests.conftest import Databases, migrations_of

pytestmark = pytest.mark.integration

SERVICE = "web"
MIGRATIONS = migrations_of(SERVICE)


def revisions_oldest_first() -> list[Script]:
    scripts = ScriptDirectory.from_config(alembic_config(MIGRATIONS, "postgresql:///unused"))
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


async def test_the_revisions_form_one_line_from_base_to_head() -> None:
    revisions = revisions_oldest_first()

    assert revisions, "the service has no migrations"
    assert revisions[0].down_revision is None
    for previous, current in itertools.pairwise(revisions):
        assert current.down_revision == previous.revision


async def test_every_revision_upgrades_downgrades_and_upgrades_again(databases: Databases) -> None:
    url = await databases.create_empty("web_stairway")

    def stairway() -> None:
        for revision in revisions_oldest_first():
            upgrade(MIGRATIONS, url, revision.revision)
            downgrade(MIGRATIONS, url, "-1")
            upgrade(MIGRATIONS, url, revision.revision)

    # Alembic runs its own event loop, so it gets a thread of its own.
    await asyncio.to_thread(stairway)

    [(head,)] = await query(url, "SELECT version_num FROM alembic_version")
    assert head == revisions_oldest_first()[-1].revision
    assert await table_names(url) == {"alembic_version", "users", "web_sessions"}
    await asyncio.to_thread(downgrade, MIGRATIONS, url, "base")
    assert await table_names(url) == {"alembic_version"}
    await databases.drop(url)


async def test_the_models_and_the_migrations_describe_the_same_schema(web_database_url: str) -> None:
    def differences(connection: Connection) -> list[object]:
        return list(compare_metadata(MigrationContext.configure(connection), Base.metadata))

    engine = create_async_engine(async_database_url(web_database_url), poolclass=pool.NullPool)
    try:
        async with engine.connect() as connection:
            diff = await connection.run_sync(differences)
    finally:
        await engine.dispose()

    assert diff == []


async def test_a_courier_without_a_deliveryman_is_refused_by_the_schema(web_database_url: str) -> None:
    with pytest.raises(sa_exc.IntegrityError, match="ck_users_courier_has_deliveryman"):
        await query(
            web_database_url,
            "INSERT INTO users (id, email, name, password_hash, role, created_at) VALUES "
            "(gen_random_uuid(), 'c@example.com', 'C', 'x', 'courier', now()) RETURNING id",
        )
