"""the lists at a shop's volume: an index for each list the API answers, and one for the search

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 17:30:00

Each list walks an index in its order and counts its matches from it: every delivery shown (one
waiting for its order's snapshot has no address and is not), those of one status, those waiting
for a courier (activated, nobody appointed), a courier's, and those open in a courier's hands
(which the couriers' list counts). On PostgreSQL the words of the
address get a GIN index for the search (`to_tsvector('simple', address)`).
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LISTED = "address IS NOT NULL"
WAITING = "status = 'activated' AND deliveryman_id IS NULL"
OPEN = "status = 'activated' AND deliveryman_id IS NOT NULL"


def _where(condition: str) -> dict[str, Any]:
    return {"postgresql_where": sa.text(condition), "sqlite_where": sa.text(condition)}


def upgrade() -> None:
    op.drop_index("ix_deliveries_created_at", table_name="deliveries")
    op.drop_index("ix_deliveries_status_created_at", table_name="deliveries")
    op.drop_index("ix_deliveries_deliveryman_id_status", table_name="deliveries")
    op.create_index("ix_deliveries_listed", "deliveries", ["created_at", "id"], **_where(LISTED))
    op.create_index(
        "ix_deliveries_status_listed", "deliveries", ["status", "created_at", "id"], **_where(LISTED)
    )
    op.create_index(
        "ix_deliveries_waiting", "deliveries", ["created_at", "id"], **_where(f"{LISTED} AND {WAITING}")
    )
    op.create_index(
        "ix_deliveries_courier_listed",
        "deliveries",
        ["deliveryman_id", "status", "created_at", "id"],
        **_where(LISTED),
    )
    op.create_index("ix_deliveries_open", "deliveries", ["deliveryman_id"], **_where(f"{LISTED} AND {OPEN}"))
    if op.get_bind().dialect.name == "postgresql":
        op.create_index(
            "ix_deliveries_address_words",
            "deliveries",
            [sa.text("to_tsvector('simple'::regconfig, address)")],
            postgresql_using="gin",
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.drop_index("ix_deliveries_address_words", table_name="deliveries")
    op.drop_index("ix_deliveries_open", table_name="deliveries")
    op.drop_index("ix_deliveries_courier_listed", table_name="deliveries")
    op.drop_index("ix_deliveries_waiting", table_name="deliveries")
    op.drop_index("ix_deliveries_status_listed", table_name="deliveries")
    op.drop_index("ix_deliveries_listed", table_name="deliveries")
    op.create_index("ix_deliveries_deliveryman_id_status", "deliveries", ["deliveryman_id", "status"])
    op.create_index("ix_deliveries_status_created_at", "deliveries", ["status", "created_at"])
    op.create_index("ix_deliveries_created_at", "deliveries", ["created_at"])
