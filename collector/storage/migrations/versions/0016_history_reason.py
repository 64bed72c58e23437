"""Why a state became a history row: ``state_history.reason`` (NULL for rows stored before the
history policy, collector/ingest/history_policy.py).

Revision ID: 0016
Revises: 0013
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("state_history") as batch:
        batch.add_column(sa.Column("reason", sa.String(length=50), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("state_history") as batch:
        batch.drop_column("reason")
