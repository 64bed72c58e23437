"""Notifications: receivers (mailbox or webhook, the user whose grants filter them, quiet hours)
and the dead letters of failed deliveries.

Frozen copy of ``collector.notify.schema``. A merge revision: it joins the accounts (0002) and
enrollment (0003) branches, since receivers point at users, so the history has one head again.

Revision ID: 0004
Revises: 0002, 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = ("0002", "0003")
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "notification_receivers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("channel", sa.String(length=10), nullable=False),
        sa.Column("address", sa.String(length=500), nullable=False),
        sa.Column("secret", sa.String(length=200), nullable=True),
        sa.Column("timezone", sa.String(length=64), server_default="Europe/Moscow", nullable=False),
        sa.Column("quiet_start", sa.Time(), nullable=True),
        sa.Column("quiet_end", sa.Time(), nullable=True),
        sa.Column("quiet_floor", sa.String(length=16), nullable=True),
        sa.Column("principal_user_id", sa.Integer(), nullable=True),
        sa.Column("enabled", sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["principal_user_id"],
            ["users.id"],
            name=op.f("fk_notification_receivers_principal_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_notification_receivers_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notification_receivers")),
    )
    op.create_index(
        op.f("ix_notification_receivers_tenant_id"), "notification_receivers", ["tenant_id"], unique=False
    )

    op.create_table(
        "notification_deliveries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("receiver_id", sa.Integer(), nullable=False),
        sa.Column("channel", sa.String(length=10), nullable=False),
        sa.Column("group_key", sa.String(length=300), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("failed_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["receiver_id"],
            ["notification_receivers.id"],
            name=op.f("fk_notification_deliveries_receiver_id_notification_receivers"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_notification_deliveries_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notification_deliveries")),
    )
    op.create_index(
        op.f("ix_notification_deliveries_tenant_id_failed_at"),
        "notification_deliveries",
        ["tenant_id", "failed_at"],
        unique=False,
    )
    op.create_index(
        op.f("ix_notification_deliveries_receiver_id"), "notification_deliveries", ["receiver_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_notification_deliveries_receiver_id"), table_name="notification_deliveries")
    op.drop_index(op.f("ix_notification_deliveries_tenant_id_failed_at"), table_name="notification_deliveries")
    op.drop_table("notification_deliveries")
    op.drop_index(op.f("ix_notification_receivers_tenant_id"), table_name="notification_receivers")
    op.drop_table("notification_receivers")
