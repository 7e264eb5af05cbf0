"""the orders' search: on PostgreSQL, a GIN index on the words of the address

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 17:30:00

`q` finds an order by the first characters of its id (the primary key serves that) or by words of
its address, which `to_tsvector('simple', address)` indexes. SQLite has no such index.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.create_index(
            "ix_orders_address_words",
            "orders",
            [sa.text("to_tsvector('simple'::regconfig, address)")],
            postgresql_using="gin",
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.drop_index("ix_orders_address_words", table_name="orders")
