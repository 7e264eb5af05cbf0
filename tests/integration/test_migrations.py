"""Every service's migrations on the real PostgreSQL: one line of revisions, each step reversible,
and the newest schema what the models describe."""

from __future__ import annotations

import asyncio
import itertools

import pytest
from sqlalchemy import MetaData

from deliveryhub_delivery.models import Base as DeliveryBase
from deliveryhub_kit.migrations import downgrade, upgrade
from deliveryhub_orders.models import Base as OrdersBase
from deliveryhub_web.models import Base as WebBase
from tests.support.databases import Databases, migrations_of
from tests.support.migrations import differences_from, revisions_oldest_first, table_names

pytestmark = pytest.mark.integration

MODELS: dict[str, MetaData] = {
    "orders": OrdersBase.metadata,
    "delivery": DeliveryBase.metadata,
    "web": WebBase.metadata,
}
SERVICES = pytest.mark.parametrize("service", list(MODELS))


async def tables_of(url: str) -> set[str]:
    """The tables in the database, besides alembic's own."""
    return await table_names(url) - {"alembic_version"}


@SERVICES
def test_the_revisions_form_one_line_from_base_to_head(service: str) -> None:
    revisions = revisions_oldest_first(migrations_of(service))

    assert revisions, f"{service} has no migrations"
    assert revisions[0].down_revision is None
    for previous, current in itertools.pairwise(revisions):
        assert current.down_revision == previous.revision, f"{current.revision} does not follow"


@SERVICES
async def test_every_revision_upgrades_downgrades_and_upgrades_again(
    service: str, databases: Databases
) -> None:
    migrations = migrations_of(service)
    url = await databases.create_empty(f"{service}_stairway")
    for revision in revisions_oldest_first(migrations):
        previous = revision.down_revision
        assert previous is None or isinstance(previous, str), "a merge revision needs a stairway of its own"
        before = await tables_of(url)

        # Alembic runs its own event loop, so it gets a thread of its own.
        await asyncio.to_thread(upgrade, migrations, url, revision.revision)
        after = await tables_of(url)
        await asyncio.to_thread(downgrade, migrations, url, previous or "base")
        assert await tables_of(url) == before, f"downgrading {revision.revision} left its tables behind"
        await asyncio.to_thread(upgrade, migrations, url, revision.revision)

        assert await tables_of(url) == after, f"{revision.revision} did not upgrade again"
    await asyncio.to_thread(downgrade, migrations, url, "base")
    assert await tables_of(url) == set(), "downgrading to base left tables behind"
    await databases.drop(url)


@SERVICES
async def test_the_newest_schema_is_what_the_models_describe(service: str, databases: Databases) -> None:
    url = await databases.create_migrated(service)

    assert await tables_of(url) == set(MODELS[service].tables)
    assert await differences_from(url, MODELS[service]) == []
