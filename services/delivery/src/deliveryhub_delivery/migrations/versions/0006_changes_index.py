"""the latest changes first: an index for `sort=updated`

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 19:00:00

The console's live view asks, twice a second while a page is open, which deliveries changed
last; `(updated_at, id)` over the deliveries shown answers it from the index's end.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LISTED = "address IS NOT NULL"


def upgrade() -> None:
    op.create_index(
        "ix_deliveries_updated",
        "deliveries",
        ["updated_at", "id"],
        postgresql_where=sa.text(LISTED),
        sqlite_where=sa.text(LISTED),
    )


def downgrade() -> None:
    op.drop_index("ix_deliveries_updated", table_name="deliveries")
