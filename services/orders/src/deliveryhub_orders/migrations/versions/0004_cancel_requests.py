"""a paid order's cancel is a request the delivery service decides; delivery events are ordered

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 12:30:00

Status `canceling`, when the request was made and why it was refused, and the delivery version of
the courier shown, so that an overtaken re-appointment cannot replace a later one.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STATUSES = "status IN ('created', 'paid', 'canceling', 'delivered', 'canceled')"
OLD_STATUSES = "status IN ('created', 'paid', 'delivered', 'canceled')"


def upgrade() -> None:
    with op.batch_alter_table("orders") as orders:
        orders.add_column(sa.Column("courier_version", sa.Integer(), server_default="0", nullable=False))
        orders.add_column(sa.Column("cancel_requested_at", sa.DateTime(timezone=True), nullable=True))
        orders.add_column(sa.Column("cancel_refused", sa.Text(), nullable=True))
        orders.drop_constraint(op.f("ck_orders_status"), type_="check")
        orders.create_check_constraint(op.f("ck_orders_status"), STATUSES)


def downgrade() -> None:
    # A request still open is undone as the old rule did it: the order is canceled.
    op.execute(
        "UPDATE orders SET status = 'canceled', canceled_at = cancel_requested_at WHERE status = 'canceling'"
    )
    with op.batch_alter_table("orders") as orders:
        orders.drop_constraint(op.f("ck_orders_status"), type_="check")
        orders.create_check_constraint(op.f("ck_orders_status"), OLD_STATUSES)
        orders.drop_column("cancel_refused")
        orders.drop_column("cancel_requested_at")
        orders.drop_column("courier_version")
