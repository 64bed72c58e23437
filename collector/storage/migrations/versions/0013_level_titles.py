"""The company's own names for its tree levels: ``tree_levels.title`` (NULL = the default Russian
title of the level key).

Revision ID: 0013
Revises: 0012
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tree_levels") as batch:
        batch.add_column(sa.Column("title", sa.String(length=50), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("tree_levels") as batch:
        batch.drop_column("title")
