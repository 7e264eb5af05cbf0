"""The orders migrations on the real PostgreSQL: each revision upgrades, downgrades and upgrades again."""

from __future__ import annotations

import asyncio

import pytest
from alembic.script import Script, ScriptDirectory

from deliveryhub_kit.migrations import alembic_config, downgrade, upgrade
from deliveryhub_orders.models import Base
from tests.support.databases import migrations_of
from tests.support.migrations import differences_from, revisions_oldest_first, table_names

pytestmark = pytest.mark.integration

ORDERS_MIGRATIONS = migrations_of("orders")


def revisions() -> list[Script]:
    """Every revision of the orders service, oldest first."""
    return revisions_oldest_first(ORDERS_MIGRATIONS)


def test_the_orders_migrations_form_one_line() -> None:
    script = ScriptDirectory.from_config(alembic_config(ORDERS_MIGRATIONS, "postgresql://unused/unused"))

    assert len(script.get_heads()) == 1
    assert revisions()[0].down_revision is None


async def tables_of(url: str) -> set[str]:
    """The tables in the database, besides alembic's own."""
    return await table_names(url) - {"alembic_version"}


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
    assert await differences_from(url, Base.metadata) == []


async def test_downgrading_to_base_removes_every_table(empty_database_url: str) -> None:
    url = empty_database_url
    await asyncio.to_thread(upgrade, ORDERS_MIGRATIONS, url)

    await asyncio.to_thread(downgrade, ORDERS_MIGRATIONS, url, "base")

    assert await tables_of(url) == set()
