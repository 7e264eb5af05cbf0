"""The delivery service's migrations on the real PostgreSQL: the couriers seeded (every service's
stairway and schema: tests/integration/test_migrations.py)."""

from __future__ import annotations

import uuid

import pytest

from tests.support.migrations import query

pytestmark = pytest.mark.integration


async def test_the_three_couriers_exist_after_the_upgrade(delivery_database_url: str) -> None:
    couriers = await query(delivery_database_url, "SELECT id, name FROM deliverymen ORDER BY name")

    assert sorted((uuid.UUID(str(courier_id)), name) for courier_id, name in couriers) == sorted(
        [
            (uuid.UUID("85db966c-67f1-411e-95c0-f02edfa5464a"), "Лаптев Иван Алексаендрович"),
            (uuid.UUID("31babbb3-5541-4a2a-8201-537cdff25fed"), "Зуев Андрей Сергеевич"),
            (uuid.UUID("45309954-8e3c-4635-8066-b342f634252c"), "Кудж Станислав Алексеевич"),
        ]
    )
