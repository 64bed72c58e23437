"""Enrollment: one-time tokens bound to a store node, and the broker credentials issued to agents.

Frozen copy of ``collector.enrollment.schema``. A branch of its own on top of 0001 (label
"enrollment"), a sibling of the accounts branch (0002), so ``migrate`` upgrades to "heads".

Revision ID: 0003
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0001"
branch_labels = ("enrollment",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "enrollment_tokens",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("node_id", sa.Integer(), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("used_by_agent", sa.String(length=100), nullable=True),
        sa.ForeignKeyConstraint(
            ["node_id"], ["nodes.id"], name=op.f("fk_enrollment_tokens_node_id_nodes"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_enrollment_tokens_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_enrollment_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_enrollment_tokens_token_hash")),
    )
    op.create_index(op.f("ix_enrollment_tokens_node_id"), "enrollment_tokens", ["node_id"], unique=False)
    op.create_index(
        op.f("ix_enrollment_tokens_expires_at"), "enrollment_tokens", ["expires_at"], unique=False
    )

    op.create_table(
        "agent_credentials",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("agent_id", sa.String(length=100), nullable=False),
        sa.Column("username", sa.String(length=100), nullable=False),
        sa.Column("password_hash", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["agent_id"],
            ["agents.agent_id"],
            name=op.f("fk_agent_credentials_agent_id_agents"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_agent_credentials")),
    )
    op.create_index(op.f("ix_agent_credentials_agent_id"), "agent_credentials", ["agent_id"], unique=False)
    op.create_index(op.f("ix_agent_credentials_username"), "agent_credentials", ["username"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_agent_credentials_username"), table_name="agent_credentials")
    op.drop_index(op.f("ix_agent_credentials_agent_id"), table_name="agent_credentials")
    op.drop_table("agent_credentials")
    op.drop_index(op.f("ix_enrollment_tokens_expires_at"), table_name="enrollment_tokens")
    op.drop_index(op.f("ix_enrollment_tokens_node_id"), table_name="enrollment_tokens")
    op.drop_table("enrollment_tokens")
