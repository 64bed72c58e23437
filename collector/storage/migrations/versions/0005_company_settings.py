"""Company settings and company-level alerts: the tenant's time zone, and ``account_alerts``
(one row per tenant and rule, e.g. the КЭП running out).

Frozen copy of the matching parts of ``collector.accounts.schema``.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tenant_profiles") as batch:
        batch.add_column(sa.Column("time_zone", sa.String(length=64), server_default="Europe/Moscow", nullable=False))
    op.create_table(
        "account_alerts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("rule", sa.String(length=50), nullable=False),
        sa.Column("occurrence", sa.Integer(), server_default="1", nullable=False),
        sa.Column("severity", sa.String(length=20), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("acknowledged", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("acked_by", sa.String(length=200), nullable=True),
        sa.Column("acked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("cleared_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("message", sa.Text(), server_default="", nullable=False),
        sa.Column("details", sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_account_alerts_tenant_id_tenants"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_account_alerts")),
        sa.UniqueConstraint("tenant_id", "rule", name=op.f("uq_account_alerts_tenant_id_rule")),
    )


def downgrade() -> None:
    op.drop_table("account_alerts")
    with op.batch_alter_table("tenant_profiles") as batch:
        batch.drop_column("time_zone")
