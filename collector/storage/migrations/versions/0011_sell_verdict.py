"""Can the register sell now / when will it stop (issue 16 §1): ``register_state.sell_status``,
``sell_rank`` (what lists sort on first) and ``verdict`` (the pure ``collector.alerts.Verdict`` as
JSON, rendered into words at read time). Filled by the alert engine's next sweep.

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("register_state") as batch:
        batch.add_column(sa.Column("sell_status", sa.String(length=20), nullable=True))
        batch.add_column(sa.Column("sell_rank", sa.SmallInteger(), nullable=True))
        batch.add_column(
            sa.Column("verdict", sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"), nullable=True)
        )
    op.create_index(op.f("ix_register_state_sell_rank"), "register_state", ["sell_rank", "blocks_at"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_register_state_sell_rank"), table_name="register_state")
    with op.batch_alter_table("register_state") as batch:
        batch.drop_column("verdict")
        batch.drop_column("sell_rank")
        batch.drop_column("sell_status")
