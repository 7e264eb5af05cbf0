"""Each service's migrations and tables on SQLite: the same revisions, the same types, read back
as PostgreSQL gives them."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, MetaData, inspect, select

from deliveryhub_delivery.models import Base as DeliveryBase
from deliveryhub_delivery.models import Deliveryman
from deliveryhub_kit.db import Database
from deliveryhub_kit.migrations import downgrade, upgrade
from deliveryhub_orders.models import Base as OrdersBase
from deliveryhub_orders.models import Order
from deliveryhub_web.models import Base as WebBase
from deliveryhub_web.models import User
from deliveryhub_web.repository import SqlAccountRepository
from tests.support.databases import migrations_of

pytestmark = pytest.mark.embedded

MODELS: dict[str, MetaData] = {
    "orders": OrdersBase.metadata,
    "delivery": DeliveryBase.metadata,
    "web": WebBase.metadata,
}


def migrated(tmp_path: Path, service: str) -> str:
    """A new SQLite file of `service` at its newest revision."""
    url = f"sqlite+aiosqlite:///{tmp_path / f'{service}.sqlite3'}"
    upgrade(migrations_of(service), url)
    return url


@pytest.mark.parametrize("service", sorted(MODELS))
# The address-words index is PostgreSQL's alone; SQLite cannot reflect it, and has none.
@pytest.mark.filterwarnings("ignore:autogenerate skipping metadata-specified expression-based index")
async def test_the_migrations_go_up_down_and_up_again_to_the_models_schema(
    tmp_path: Path, service: str
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'stairway.sqlite3'}"
    # Alembic runs its own event loop: a thread of its own, as the PostgreSQL stairway does.
    await asyncio.to_thread(upgrade, migrations_of(service), url)
    await asyncio.to_thread(downgrade, migrations_of(service), url, "base")
    await asyncio.to_thread(upgrade, migrations_of(service), url)

    def differences(connection: Connection) -> tuple[set[str], list[object]]:
        tables = set(inspect(connection).get_table_names()) - {"alembic_version"}
        return tables, list(compare_metadata(MigrationContext.configure(connection), MODELS[service]))

    database = Database(url)
    async with database.engine.connect() as connection:
        tables, changes = await connection.run_sync(differences)
    await database.dispose()
    assert tables == set(MODELS[service].tables)
    assert changes == []


async def test_times_decimals_json_and_ids_read_back_as_on_postgresql(tmp_path: Path) -> None:
    url = await asyncio.to_thread(migrated, tmp_path, "orders")
    database = Database(url)
    moscow = timezone(timedelta(hours=3))
    order = Order(
        customer_id=uuid.uuid4(),
        address="Москва, Тверская улица, 7",
        date=datetime(2030, 5, 17, 14, 30, tzinfo=moscow),
        items=[{"name": "Чай", "quantity": 2, "price": "250.00"}],
        total=Decimal("123456789012.34"),
        status="created",
    )
    async with database.transaction() as session:
        session.add(order)
    earlier = datetime(2030, 5, 17, 11, 29, tzinfo=UTC)

    async with database.transaction() as session:
        read = await session.get_one(Order, order.id, populate_existing=True)
        later = (await session.scalars(select(Order.id).where(Order.date > earlier))).all()
    await database.dispose()

    assert read.date == datetime(2030, 5, 17, 11, 30, tzinfo=UTC)
    assert read.date.tzinfo is not None
    assert read.total == Decimal("123456789012.34")
    assert read.items == [{"name": "Чай", "quantity": 2, "price": "250.00"}]
    assert read.created_at.tzinfo is not None
    assert later == [order.id]


async def test_the_couriers_come_with_the_first_migration_and_a_taken_email_is_refused(
    tmp_path: Path,
) -> None:
    delivery = Database(await asyncio.to_thread(migrated, tmp_path, "delivery"))
    async with delivery.transaction() as session:
        couriers = (await session.scalars(select(Deliveryman.name))).all()
    await delivery.dispose()
    assert len(couriers) == 3

    web = Database(await asyncio.to_thread(migrated, tmp_path, "web"))

    def user() -> User:
        return User(
            id=uuid.uuid4(),
            email="same@example.com",
            name="Ольга",
            password_hash="not-a-real-hash",  # noqa: S106
            role="customer",
            created_at=datetime.now(UTC),
        )

    async with web.transaction() as session:
        first = await SqlAccountRepository(session).add_user(user())
    async with web.transaction() as session:
        second = await SqlAccountRepository(session).add_user(user())
    await web.dispose()
    assert (first, second) == (True, False)
