"""The OFD a register's contract is with: ``ofd_contracts.ofd_operator`` (a key of
``collector.alerts.ofd_operators``; NULL = not known), so the OFD diagnosis can tell a register set
to another operator's server («в кассе указан неверный адрес ОФД»).

Revision ID: 0015
Revises: 0013 (the lead re-chains it after 0014 at merge)
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("ofd_contracts") as batch:
        batch.add_column(sa.Column("ofd_operator", sa.String(length=40), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("ofd_contracts") as batch:
        batch.drop_column("ofd_operator")
