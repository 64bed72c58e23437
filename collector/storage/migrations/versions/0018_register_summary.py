"""``register_summary``: one narrow row per register with the register list's sort and filter keys
(cannot-sell-now, blocks-at, worst severity, search text, tenant and node), indexed, so the list,
the dashboard counters and the tree stop joining four tables (issue 11). Backfilled from the
existing rows with the collector's own refresh statement.

Revision ID: 0018
Revises: 0013
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from collector.storage.register_summary import refresh_all

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "register_summary",
        sa.Column("register_id", sa.String(length=100), nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("node_id", sa.Integer(), nullable=True),
        sa.Column("node_path", sa.String(length=1000).with_variant(sa.String(length=1000, collation="C"), "postgresql"), nullable=True),
        sa.Column("protocol", sa.String(length=30), nullable=False),
        sa.Column("search_text", sa.String(length=240), nullable=False),
        sa.Column("sell_rank", sa.SmallInteger(), nullable=False),
        sa.Column("sell_status", sa.String(length=20), nullable=True),
        sa.Column("block_order", sa.DateTime(timezone=True), nullable=False),
        sa.Column("severity_order", sa.SmallInteger(), nullable=False),
        sa.Column("worst_severity", sa.String(length=20), nullable=True),
        sa.Column("problem", sa.Boolean(), nullable=False),
        sa.Column("agent_online", sa.Boolean(), nullable=True),
        sa.Column("link_up", sa.Boolean(), nullable=True),
        sa.Column("shift_status", sa.String(length=20), nullable=True),
        sa.ForeignKeyConstraint(["node_id"], ["nodes.id"], name=op.f("fk_register_summary_node_id_nodes"), ondelete="SET NULL"),
        sa.ForeignKeyConstraint(
            ["register_id"], ["registers.register_id"], name=op.f("fk_register_summary_register_id_registers"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("register_id", name=op.f("pk_register_summary")),
    )
    op.create_index(
        "ix_register_summary_by_block",
        "register_summary",
        ["tenant_id", "sell_rank", "block_order", "severity_order", "register_id"],
    )
    op.create_index(
        "ix_register_summary_by_severity",
        "register_summary",
        ["tenant_id", "severity_order", "sell_rank", "block_order", "register_id"],
    )
    op.create_index(op.f("ix_register_summary_node_id"), "register_summary", ["node_id"])
    op.create_index(op.f("ix_register_summary_tenant_id_node_path"), "register_summary", ["tenant_id", "node_path"])
    # The collector's own statement, against the table exactly as created above. A later revision
    # that changes this table's columns must stop calling it here (and backfill in its own terms).
    refresh_all(op.get_bind(), with_node_totals=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_register_summary_tenant_id_node_path"), table_name="register_summary")
    op.drop_index(op.f("ix_register_summary_node_id"), table_name="register_summary")
    op.drop_index("ix_register_summary_by_severity", table_name="register_summary")
    op.drop_index("ix_register_summary_by_block", table_name="register_summary")
    op.drop_table("register_summary")
