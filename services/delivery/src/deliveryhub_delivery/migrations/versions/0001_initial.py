"""deliveries, couriers, outbox and inbox

Revision ID: 0001
Revises:
Create Date: 2026-11-28 15:49:35.881263

The three couriers of the teaching design exist from this first revision on.
"""

import uuid
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SEEDED_DELIVERYMEN = [
    {"id": uuid.UUID("85db966c-67f1-411e-95c0-f02edfa5464a"), "name": "Лаптев Иван Алексаендрович"},
    {"id": uuid.UUID("31babbb3-5541-4a2a-8201-537cdff25fed"), "name": "Зуев Андрей Сергеевич"},
    {"id": uuid.UUID("45309954-8e3c-4635-8066-b342f634252c"), "name": "Кудж Станислав Алексеевич"},
]


def upgrade() -> None:
    deliverymen = op.create_table(
        "deliverymen",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deliverymen")),
    )
    op.bulk_insert(deliverymen, SEEDED_DELIVERYMEN)
    op.create_table(
        "inbox",
        sa.Column("event_id", sa.Uuid(), nullable=False),
        sa.Column("event_type", sa.String(length=100), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_inbox")),
    )
    op.create_table(
        "outbox",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("event_id", sa.Uuid(), nullable=False),
        sa.Column("routing_key", sa.String(length=100), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox")),
        sa.UniqueConstraint("event_id", name=op.f("uq_outbox_event_id")),
    )
    op.create_index("ix_outbox_published_at", "outbox", ["published_at"], unique=False)
    op.create_index(
        "ix_outbox_waiting",
        "outbox",
        ["next_attempt_at", "id"],
        unique=False,
        postgresql_where="published_at IS NULL",
        sqlite_where=sa.text("published_at IS NULL"),
    )
    op.create_table(
        "deliveries",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("customer_id", sa.Uuid(), nullable=True),
        sa.Column("address", sa.Text(), nullable=True),
        sa.Column("date", sa.DateTime(timezone=True), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("deliveryman_id", sa.Uuid(), nullable=True),
        sa.Column("order_version", sa.Integer(), nullable=False),
        sa.Column("cancel_reason", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("activated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("canceled_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "status IN ('created', 'activated', 'done', 'canceled')", name=op.f("ck_deliveries_status")
        ),
        sa.ForeignKeyConstraint(
            ["deliveryman_id"], ["deliverymen.id"], name=op.f("fk_deliveries_deliveryman_id_deliverymen")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deliveries")),
    )
    op.create_index(
        "ix_deliveries_deliveryman_id_status", "deliveries", ["deliveryman_id", "status"], unique=False
    )
    op.create_index("ix_deliveries_status_created_at", "deliveries", ["status", "created_at"], unique=False)
    op.create_index("ix_deliveries_created_at", "deliveries", ["created_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_deliveries_created_at", table_name="deliveries")
    op.drop_index("ix_deliveries_status_created_at", table_name="deliveries")
    op.drop_index("ix_deliveries_deliveryman_id_status", table_name="deliveries")
    op.drop_table("deliveries")
    op.drop_index(
        "ix_outbox_waiting",
        table_name="outbox",
        postgresql_where="published_at IS NULL",
        sqlite_where=sa.text("published_at IS NULL"),
    )
    op.drop_index("ix_outbox_published_at", table_name="outbox")
    op.drop_table("outbox")
    op.drop_table("inbox")
    op.drop_table("deliverymen")
