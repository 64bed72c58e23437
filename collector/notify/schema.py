"""Notification tables, on the storage ``metadata`` so one Alembic environment sees them (revision 0004).

``notification_receivers``: where a tenant's alerts go (one mailbox or one webhook URL each) and
whose grants decide what that receiver hears about (``principal_user_id``, Zabbix's rule).
``notification_deliveries``: deliveries that failed for good (the dispatcher's dead letters), so
an administrator can see why a receiver heard nothing.
"""

from __future__ import annotations

import sqlalchemy as sa

import collector.accounts.schema  # noqa: F401  (users must be on the metadata for the foreign key)
from collector.storage.coltypes import UtcDateTime
from collector.storage.schema import metadata

notification_receivers = sa.Table(
    "notification_receivers",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("tenant_id", sa.Integer, sa.ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False),
    sa.Column("channel", sa.String(10), nullable=False),  # "email" | "webhook"
    sa.Column("address", sa.String(500), nullable=False),
    sa.Column("secret", sa.String(200), nullable=True),  # HMAC key of a webhook
    sa.Column("timezone", sa.String(64), nullable=False, server_default="Europe/Moscow"),
    sa.Column("quiet_start", sa.Time, nullable=True),
    sa.Column("quiet_end", sa.Time, nullable=True),
    sa.Column("quiet_floor", sa.String(16), nullable=True),
    sa.Column(
        "principal_user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=True
    ),
    sa.Column("enabled", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Index(None, "tenant_id"),
)

notification_deliveries = sa.Table(
    "notification_deliveries",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("tenant_id", sa.Integer, sa.ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False),
    sa.Column(
        "receiver_id",
        sa.Integer,
        sa.ForeignKey("notification_receivers.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("channel", sa.String(10), nullable=False),
    sa.Column("group_key", sa.String(300), nullable=False),
    sa.Column("last_error", sa.Text, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("failed_at", UtcDateTime, nullable=False),
    sa.Index(None, "tenant_id", "failed_at"),
    sa.Index(None, "receiver_id"),
)

NOTIFY_TABLES = (notification_receivers, notification_deliveries)
