"""The web console's migrations on the real PostgreSQL: the rules its schema holds (every service's
stairway and schema: tests/integration/test_migrations.py)."""

from __future__ import annotations

import pytest
from sqlalchemy import exc as sa_exc

from tests.support.migrations import query

pytestmark = pytest.mark.integration


async def test_a_courier_without_a_deliveryman_is_refused_by_the_schema(web_database_url: str) -> None:
    with pytest.raises(sa_exc.IntegrityError, match="ck_users_courier_has_deliveryman"):
        await query(
            web_database_url,
            "INSERT INTO users (id, email, name, password_hash, role, created_at) VALUES "
            "(gen_random_uuid(), 'c@example.com', 'C', 'x', 'courier', now()) RETURNING id",
        )
