"""The web console's migrations on the real PostgreSQL: every step reversible, models and schema alike."""

from __future__ import annotations

import asyncio
import itertools

import pytest
from alembic.script import Script
from sqlalchemy import exc as sa_exc

from deliveryhub_kit.migrations import downgrade, upgrade
from deliveryhub_web.models import Base
from tests.support import migrations as support
from tests.support.databases import Databases, migrations_of
from tests.support.migrations import differences_from, query, table_names

pytestmark = pytest.mark.integration

SERVICE = "web"
MIGRATIONS = migrations_of(SERVICE)


def revisions_oldest_first() -> list[Script]:
    return support.revisions_oldest_first(MIGRATIONS)


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
    assert await differences_from(web_database_url, Base.metadata) == []


async def test_a_courier_without_a_deliveryman_is_refused_by_the_schema(web_database_url: str) -> None:
    with pytest.raises(sa_exc.IntegrityError, match="ck_users_courier_has_deliveryman"):
        await query(
            web_database_url,
            "INSERT INTO users (id, email, name, password_hash, role, created_at) VALUES "
            "(gen_random_uuid(), 'c@example.com', 'C', 'x', 'courier', now()) RETURNING id",
        )
