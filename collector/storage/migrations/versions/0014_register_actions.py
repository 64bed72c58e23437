"""Remote actions on registers: ``register_actions``, one row per command with its lifecycle
(requested → sent → accepted → done | failed | refused | expired).

Frozen copy of ``register_actions`` in ``collector.storage.schema``.

Revision ID: 0014
Revises: 0013
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "register_actions",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("register_id", sa.String(length=100), nullable=False),
        sa.Column("agent_id", sa.String(length=100), nullable=True),
        sa.Column("action", sa.String(length=30), nullable=False),
        sa.Column("args", sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"), nullable=False),
        sa.Column("requested_by", sa.String(length=200), nullable=False),
        sa.Column("requested_by_id", sa.Integer(), nullable=True),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("deadline", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("code", sa.Integer(), nullable=True),
        sa.Column("meaning", sa.Text(), nullable=True),
        sa.Column("reason", sa.String(length=64), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("bulk_id", sa.String(length=64), nullable=True),
        sa.Column("open_for", sa.String(length=100), nullable=True),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_register_actions_tenant_id_tenants"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["register_id"], ["registers.register_id"],
            name=op.f("fk_register_actions_register_id_registers"), ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_register_actions")),
        sa.UniqueConstraint("open_for", name=op.f("uq_register_actions_open_for")),
    )
    op.create_index(
        op.f("ix_register_actions_register_id_requested_at"), "register_actions", ["register_id", "requested_at"]
    )
    op.create_index(op.f("ix_register_actions_status_deadline"), "register_actions", ["status", "deadline"])
    op.create_index(op.f("ix_register_actions_bulk_id"), "register_actions", ["bulk_id"])


def downgrade() -> None:
    op.drop_table("register_actions")
