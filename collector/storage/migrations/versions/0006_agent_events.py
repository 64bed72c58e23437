"""Agent-level events (outbox_gap, command_error) get their own table instead of dead letters.

Frozen copy of ``agent_events`` in ``collector.storage.schema``.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "agent_events",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("agent_id", sa.String(length=100), nullable=False),
        sa.Column("session", sa.BigInteger(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(length=50), nullable=False),
        sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("data", sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_agent_events")),
        sa.UniqueConstraint("agent_id", "session", "seq", name=op.f("uq_agent_events_agent_id_session_seq")),
    )
    op.create_index(op.f("ix_agent_events_agent_id_ts"), "agent_events", ["agent_id", "ts"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_agent_events_agent_id_ts"), table_name="agent_events")
    op.drop_table("agent_events")
