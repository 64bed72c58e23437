"""Agent installations (``agent_epochs``), agent clock errors, retention by the collector's receive time.

* ``agent_epochs``: a reinstalled agent restarts its sessions under a new epoch; each epoch's
  sessions are stored above every earlier one (``base``). Frozen copy of ``collector.storage.schema``.
* ``received_at`` indexes on ``state_history``, ``events`` and ``agent_events``: retention deletes
  by when the collector received a row, so a wrong agent clock cannot delete fresh data.
* ``agents.clock_offset``/``clock_checked_at``: how far the agent's clock is off (``agent_clock`` rule).

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

_RECEIVED_AT_TABLES = ("state_history", "events", "agent_events")


def upgrade() -> None:
    op.create_table(
        "agent_epochs",
        sa.Column("agent_id", sa.String(length=100), nullable=False),
        sa.Column("epoch", sa.String(length=64), nullable=False),
        sa.Column("base", sa.BigInteger(), nullable=False),
        sa.Column("first_session", sa.BigInteger(), nullable=False),
        sa.Column("first_seen", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("agent_id", "epoch", name=op.f("pk_agent_epochs")),
        sa.UniqueConstraint("agent_id", "base", name=op.f("uq_agent_epochs_agent_id_base")),
    )
    for table in _RECEIVED_AT_TABLES:
        op.create_index(op.f(f"ix_{table}_received_at"), table, ["received_at"], unique=False)
    with op.batch_alter_table("agents") as batch:
        batch.add_column(sa.Column("clock_offset", sa.Float(), nullable=True))
        batch.add_column(sa.Column("clock_checked_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("agents") as batch:
        batch.drop_column("clock_checked_at")
        batch.drop_column("clock_offset")
    for table in _RECEIVED_AT_TABLES:
        op.drop_index(op.f(f"ix_{table}_received_at"), table_name=table)
    op.drop_table("agent_epochs")
