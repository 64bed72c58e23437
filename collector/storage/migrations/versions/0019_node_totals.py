"""``node_totals``: per node, its own registers counted as the tree shows them (by worst severity,
cannot sell now, the earliest stop ahead), kept with every summary refresh, so the tree sums one
row per node instead of grouping every register (issue 11). Backfilled from ``register_summary``;
a trigger keeps it when a register is deleted (its summary row goes by cascade, unrefreshed).

Revision ID: 0019
Revises: 0018
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from collector.storage.node_totals import TRIGGER, rebuild, trigger_ddl

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "node_totals",
        sa.Column("node_id", sa.Integer(), nullable=False),
        sa.Column("node_path", sa.String(length=1000).with_variant(sa.String(length=1000, collation="C"), "postgresql"), nullable=False),
        sa.Column("registers", sa.Integer(), nullable=False),
        sa.Column("cannot_sell", sa.Integer(), nullable=False),
        sa.Column("severity_info", sa.Integer(), nullable=False),
        sa.Column("severity_warning", sa.Integer(), nullable=False),
        sa.Column("severity_major", sa.Integer(), nullable=False),
        sa.Column("severity_critical", sa.Integer(), nullable=False),
        sa.Column("severity_blocked", sa.Integer(), nullable=False),
        sa.Column("earliest_stop", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["node_id"], ["nodes.id"], name=op.f("fk_node_totals_node_id_nodes"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("node_id", name=op.f("pk_node_totals")),
    )
    op.create_index(op.f("ix_node_totals_node_path"), "node_totals", ["node_path"])
    # The collector's own statement, against the table exactly as created above. A later revision
    # that changes this table's columns must stop calling it here (and backfill in its own terms).
    rebuild(op.get_bind())
    for ddl in trigger_ddl(op.get_bind().dialect.name):
        op.execute(ddl)


def downgrade() -> None:
    op.execute(f"DROP TRIGGER {TRIGGER}" + (" ON register_summary" if op.get_bind().dialect.name == "postgresql" else ""))
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"DROP FUNCTION {TRIGGER}()")
    op.drop_index(op.f("ix_node_totals_node_path"), table_name="node_totals")
    op.drop_table("node_totals")
