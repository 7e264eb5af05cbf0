"""every delivery has a version that grows with each change and travels with its events

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 12:30:00

The deliveries there are start at version 1; the delivery events still waiting in the outbox were
written without one and are given version 1, so that the orders service, which now asks for it,
takes them.
"""

import json
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

outbox = sa.table(
    "outbox",
    sa.column("id", sa.BigInteger()),
    sa.column("routing_key", sa.String()),
    sa.column("body", sa.Text()),
    sa.column("published_at", sa.DateTime(timezone=True)),
)


def upgrade() -> None:
    with op.batch_alter_table("deliveries") as deliveries:
        deliveries.add_column(sa.Column("version", sa.Integer(), server_default="1", nullable=False))
    connection = op.get_bind()
    waiting = connection.execute(
        sa.select(outbox.c.id, outbox.c.body).where(
            outbox.c.published_at.is_(None), outbox.c.routing_key.like("delivery.%")
        )
    )
    for row_id, body in list(waiting):
        envelope = json.loads(body)
        if isinstance(envelope.get("data"), dict) and "version" not in envelope["data"]:
            envelope["data"]["version"] = 1
            connection.execute(
                sa.update(outbox).where(outbox.c.id == row_id).values(body=json.dumps(envelope))
            )


def downgrade() -> None:
    with op.batch_alter_table("deliveries") as deliveries:
        deliveries.drop_column("version")
