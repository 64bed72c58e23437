"""``register_state.verdict_key``: what the stored verdict was computed on (a digest of the rule
inputs and their times, ``collector.ingest.rule_inputs.verdict_key``), so a collector sharing the
stream can tell that another collector's verdict still holds without the 4-table join (issue 11:
three collectors spent 2.7× one collector's evaluation CPU per message). Empty for existing rows:
their next evaluation fills it.

Revision ID: 0020
Revises: 0019
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("register_state", sa.Column("verdict_key", sa.String(length=120), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("register_state") as batch:
        batch.drop_column("verdict_key")
