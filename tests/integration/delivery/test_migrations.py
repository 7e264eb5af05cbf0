"""The delivery service's migrations on the real PostgreSQL: every step reversible, the couriers seeded."""

from __future__ import annotations

import asyncio
import itertools
import uuid

import pytest
from alembic.script import Script

from deliveryhub_delivery.models import Base
from deliveryhub_kit.migrations import downgrade, upgrade
from tests.support import migrations as support
from tests.support.databases import Databases, migrations_of
from tests.support.migrations import differences_from, query, table_names

pytestmark = pytest.mark.integration

SERVICE = "delivery"
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
    url = await databases.create_empty("delivery_stairway")

    def stairway() -> None:
        for revision in revisions_oldest_first():
            upgrade(MIGRATIONS, url, revision.revision)
            downgrade(MIGRATIONS, url, "-1")
            upgrade(MIGRATIONS, url, revision.revision)

    # Alembic runs its own event loop, so it gets a thread of its own.
    await asyncio.to_thread(stairway)

    [(head,)] = await query(url, "SELECT version_num FROM alembic_version")
    assert head == revisions_oldest_first()[-1].revision
    await asyncio.to_thread(downgrade, MIGRATIONS, url, "base")
    assert await table_names(url) == {"alembic_version"}
    await databases.drop(url)


async def test_the_three_couriers_exist_after_the_upgrade(delivery_database_url: str) -> None:
    couriers = await query(delivery_database_url, "SELECT id, name FROM deliverymen ORDER BY name")

    assert sorted((uuid.UUID(str(courier_id)), name) for courier_id, name in couriers) == sorted(
        [
            (uuid.UUID("85db966c-67f1-411e-95c0-f02edfa5464a"), "Лаптев Иван Алексаендрович"),
            (uuid.UUID("31babbb3-5541-4a2a-8201-537cdff25fed"), "Зуев Андрей Сергеевич"),
            (uuid.UUID("45309954-8e3c-4635-8066-b342f634252c"), "Кудж Станислав Алексеевич"),
        ]
    )


async def test_the_models_and_the_migrations_describe_the_same_schema(delivery_database_url: str) -> None:
    assert await differences_from(delivery_database_url, Base.metadata) == []
