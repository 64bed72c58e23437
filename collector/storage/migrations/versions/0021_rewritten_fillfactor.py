"""Room on PostgreSQL pages for the rows every message rewrites (``schema.REWRITTEN_FILLFACTOR``):
a latest state's new version then fits beside the old one (a HOT update, pruned by the page
itself) instead of moving to a new page and leaving a dead row for VACUUM. A 50 000-register fleet
grew ``register_state`` by ~2 GB an hour where autovacuum lagged. Existing pages get the room as
VACUUM frees them; SQLite has no fillfactor.

Revision ID: 0021
Revises: 0020
"""

from __future__ import annotations

from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None

_FILLFACTOR = {"register_state": 50, "agents": 70, "registers": 70, "ingest_marks": 70}


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, percent in _FILLFACTOR.items():
        op.execute(f"ALTER TABLE {table} SET (fillfactor = {percent})")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in _FILLFACTOR:
        op.execute(f"ALTER TABLE {table} RESET (fillfactor)")
