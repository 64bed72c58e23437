"""Enrollment tables, on the storage ``metadata`` so one Alembic environment sees them (revision 0003).

Only a SHA-256 of each token is stored: a token is 256 random bits, so a fast hash is enough,
and a database dump cannot be replayed as enrollments. ``agent_credentials`` keeps the broker
password as a Mosquitto ``$7$`` hash for audit ("which credential did this agent get, when, is
it revoked?"); the plaintext exists only in the enrollment response and the agent's config.
"""

from __future__ import annotations

import sqlalchemy as sa

from collector.storage.coltypes import UtcDateTime
from collector.storage.schema import metadata

enrollment_tokens = sa.Table(
    "enrollment_tokens",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("tenant_id", sa.Integer, sa.ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False),
    sa.Column("node_id", sa.Integer, sa.ForeignKey("nodes.id", ondelete="CASCADE"), nullable=False),
    sa.Column("created_by", sa.String(200), nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("expires_at", UtcDateTime, nullable=False),
    sa.Column("used_at", UtcDateTime, nullable=True),
    sa.Column("used_by_agent", sa.String(100), nullable=True),
    sa.Index(None, "node_id"),
    sa.Index(None, "expires_at"),
)

agent_credentials = sa.Table(
    "agent_credentials",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column(
        "agent_id", sa.String(100), sa.ForeignKey("agents.agent_id", ondelete="CASCADE"), nullable=False
    ),
    sa.Column("username", sa.String(100), nullable=False),
    sa.Column("password_hash", sa.String(200), nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("revoked_at", UtcDateTime, nullable=True),
    sa.Index(None, "agent_id"),
    sa.Index(None, "username"),
)

ENROLLMENT_TABLES = (enrollment_tokens, agent_credentials)
