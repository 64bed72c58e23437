"""A company's own alert thresholds: ``tenant_profiles.alert_thresholds`` (NULL = the defaults).

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tenant_profiles") as batch:
        batch.add_column(
            sa.Column(
                "alert_thresholds",
                sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
                nullable=True,
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("tenant_profiles") as batch:
        batch.drop_column("alert_thresholds")
