"""Account tables, on the same ``MetaData`` as the storage schema (revision 0002 creates them).

Secrets are never stored: session, API and e-mail tokens are kept as SHA-256 hex digests (they
are long random strings, so a fast hash is enough); passwords as argon2id PHC strings. The
audit log keeps plain ids and labels instead of foreign keys so it survives the deletion of
what it talks about (and migration 0002 makes it append-only with triggers).
"""

from __future__ import annotations

import sqlalchemy as sa

from collector.storage.coltypes import UtcDateTime, json_document
from collector.storage.schema import metadata

TOKEN_HASH_LENGTH = 64  # SHA-256 hex


def _tenant_fk() -> sa.ForeignKey:
    return sa.ForeignKey("tenants.id", ondelete="CASCADE")


def _user_fk() -> sa.ForeignKey:
    return sa.ForeignKey("users.id", ondelete="CASCADE")


# The legal side of a tenant (the storage ``tenants`` table only has a display name).
tenant_profiles = sa.Table(
    "tenant_profiles",
    metadata,
    sa.Column("tenant_id", sa.Integer, _tenant_fk(), primary_key=True),
    sa.Column("inn", sa.String(12), nullable=False),
    sa.Column("root_node_id", sa.Integer, sa.ForeignKey("nodes.id", ondelete="SET NULL"), nullable=True),
    # IANA zone the pages show instants in (revision 0005); the company's head office, not the server's.
    sa.Column("time_zone", sa.String(64), nullable=False, server_default="Europe/Moscow"),
    # The company's alert threshold overrides (names of ``collector.alerts.Thresholds``), revision 0007.
    sa.Column("alert_thresholds", json_document(), nullable=True),
    sa.UniqueConstraint("inn"),
)

# Each tenant names the levels of its own tree; ``position`` 0 is the root (the company),
# exactly one level ``holds_registers`` (the store).
tree_levels = sa.Table(
    "tree_levels",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("tenant_id", sa.Integer, _tenant_fk(), nullable=False),
    sa.Column("position", sa.Integer, nullable=False),
    sa.Column("name", sa.String(50), nullable=False),
    sa.Column("holds_registers", sa.Boolean, nullable=False, server_default=sa.false()),
    # What people read for the level (revision 0011): nodes keep ``name`` as their kind, so the
    # company may call its levels anything at any time; None shows the default Russian title.
    sa.Column("title", sa.String(50), nullable=True),
    sa.UniqueConstraint("tenant_id", "position"),
    sa.UniqueConstraint("tenant_id", "name"),
)

users = sa.Table(
    "users",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("tenant_id", sa.Integer, _tenant_fk(), nullable=False),
    sa.Column("email", sa.String(254), nullable=False),  # stored lower-cased
    sa.Column("full_name", sa.String(200), nullable=False, server_default=""),
    sa.Column("password_hash", sa.String(255), nullable=True),  # None: cannot log in with a password
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("confirmed_at", UtcDateTime, nullable=True),
    sa.Column("failed_logins", sa.Integer, nullable=False, server_default="0"),
    sa.Column("failure_notice_at", UtcDateTime, nullable=True),  # when the user was last told of failed logins
    sa.Column("disabled", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.UniqueConstraint("email"),
    sa.Index(None, "tenant_id"),
)

sessions = sa.Table(
    "sessions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("token_hash", sa.String(TOKEN_HASH_LENGTH), nullable=False),
    sa.Column("user_id", sa.Integer, _user_fk(), nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("expires_at", UtcDateTime, nullable=False),
    sa.Column("csrf_secret", sa.String(64), nullable=False),
    sa.Column("revoked_at", UtcDateTime, nullable=True),
    sa.Column("ip", sa.String(64), nullable=True),
    sa.UniqueConstraint("token_hash"),
    sa.Index(None, "user_id"),
)

api_tokens = sa.Table(
    "api_tokens",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("user_id", sa.Integer, _user_fk(), nullable=False),
    sa.Column("name", sa.String(100), nullable=False),
    sa.Column("prefix", sa.String(20), nullable=False),  # shown in lists so a user can tell tokens apart
    sa.Column("token_hash", sa.String(TOKEN_HASH_LENGTH), nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("expires_at", UtcDateTime, nullable=True),
    sa.Column("last_used_at", UtcDateTime, nullable=True),
    sa.Column("revoked_at", UtcDateTime, nullable=True),
    sa.UniqueConstraint("token_hash"),
    sa.Index(None, "user_id"),
)

user_groups = sa.Table(
    "user_groups",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("tenant_id", sa.Integer, _tenant_fk(), nullable=False),
    sa.Column("name", sa.String(100), nullable=False),
    sa.UniqueConstraint("tenant_id", "name"),
)

group_members = sa.Table(
    "group_members",
    metadata,
    sa.Column("group_id", sa.Integer, sa.ForeignKey("user_groups.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("user_id", sa.Integer, _user_fk(), primary_key=True),
    sa.Index(None, "user_id"),
)

# A grant = (user group, role, node subtree). No deny rules: grants only add up.
grants = sa.Table(
    "grants",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("group_id", sa.Integer, sa.ForeignKey("user_groups.id", ondelete="CASCADE"), nullable=False),
    sa.Column("role", sa.String(20), nullable=False),
    sa.Column("node_id", sa.Integer, sa.ForeignKey("nodes.id", ondelete="CASCADE"), nullable=False),
    sa.UniqueConstraint("group_id", "role", "node_id"),
    sa.Index(None, "node_id"),
)

invitations = sa.Table(
    "invitations",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("tenant_id", sa.Integer, _tenant_fk(), nullable=False),
    sa.Column("group_id", sa.Integer, sa.ForeignKey("user_groups.id", ondelete="CASCADE"), nullable=False),
    sa.Column("email", sa.String(254), nullable=False),
    sa.Column("invited_by", sa.Integer, sa.ForeignKey("users.id", ondelete="SET NULL"), nullable=True),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("accepted_at", UtcDateTime, nullable=True),
    sa.Column("accepted_user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="SET NULL"), nullable=True),
    sa.Index(None, "tenant_id"),
)

# Single-use, expiring links sent by e-mail: confirm the address, reset the password, accept an
# invitation (the invitee may not have a user yet, hence the two nullable owners).
email_tokens = sa.Table(
    "email_tokens",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("purpose", sa.String(20), nullable=False),
    sa.Column("token_hash", sa.String(TOKEN_HASH_LENGTH), nullable=False),
    sa.Column("user_id", sa.Integer, _user_fk(), nullable=True),
    sa.Column(
        "invitation_id", sa.Integer, sa.ForeignKey("invitations.id", ondelete="CASCADE"), nullable=True
    ),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("expires_at", UtcDateTime, nullable=False),
    sa.Column("used_at", UtcDateTime, nullable=True),
    sa.UniqueConstraint("token_hash"),
    sa.CheckConstraint("(user_id IS NULL) <> (invitation_id IS NULL)", name="one_owner"),
)

# Failed logins per client address, so throttling holds across stateless web processes.
login_failures = sa.Table(
    "login_failures",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("ip", sa.String(64), nullable=False),
    sa.Column("at", UtcDateTime, nullable=False),
    sa.Index(None, "ip", "at"),
)

# Consecutive failed logins per (e-mail, client address): each pair waits longer after every
# failure, so nobody can lock an owner out from elsewhere. Keyed by the e-mail as typed (normalised),
# whether or not an account has it, so known and unknown addresses are treated identically.
login_throttle = sa.Table(
    "login_throttle",
    metadata,
    sa.Column("email", sa.String(254), primary_key=True),
    sa.Column("ip", sa.String(64), primary_key=True),
    sa.Column("failures", sa.Integer, nullable=False),
    sa.Column("last_failure_at", UtcDateTime, nullable=False),
    sa.Column("retry_at", UtcDateTime, nullable=False),
    sa.Index(None, "last_failure_at"),
)

kep_orders = sa.Table(
    "kep_orders",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("tenant_id", sa.Integer, _tenant_fk(), nullable=False),
    sa.Column("subject", sa.String(20), nullable=False),  # head | employee
    sa.Column("full_name", sa.String(200), nullable=False),
    sa.Column("position", sa.String(200), nullable=False),
    sa.Column("inn", sa.String(12), nullable=False),
    sa.Column("snils", sa.String(11), nullable=True),
    sa.Column("email", sa.String(254), nullable=False),
    sa.Column("phone", sa.String(30), nullable=False, server_default=""),
    sa.Column("state", sa.String(30), nullable=False),
    sa.Column("requested_by", sa.Integer, sa.ForeignKey("users.id", ondelete="SET NULL"), nullable=True),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
    sa.Column("reject_reason", sa.Text, nullable=True),
    # What the issuer asked for when it moved the order to documents_requested (revision 0010):
    # a list of ``collector.accounts.kep_documents.DOCUMENT_KINDS`` keys.
    sa.Column("requested_documents", json_document(), nullable=True),
    sa.Index(None, "tenant_id", "state"),
)

# The customer's uploads for a КЭП order (revision 0010): checked for size and type (by content,
# not by name) before they are stored.
kep_documents = sa.Table(
    "kep_documents",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("tenant_id", sa.Integer, _tenant_fk(), nullable=False),
    sa.Column("order_id", sa.Integer, sa.ForeignKey("kep_orders.id", ondelete="CASCADE"), nullable=False),
    sa.Column("kind", sa.String(40), nullable=False),
    sa.Column("filename", sa.String(200), nullable=False),
    sa.Column("content_type", sa.String(50), nullable=False),
    sa.Column("size", sa.Integer, nullable=False),
    sa.Column("content", sa.LargeBinary, nullable=False),
    sa.Column("uploaded_by", sa.Integer, sa.ForeignKey("users.id", ondelete="SET NULL"), nullable=True),
    sa.Column("uploaded_at", UtcDateTime, nullable=False),
    sa.Index(None, "order_id"),
)

kep_order_history = sa.Table(
    "kep_order_history",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("order_id", sa.Integer, sa.ForeignKey("kep_orders.id", ondelete="CASCADE"), nullable=False),
    sa.Column("at", UtcDateTime, nullable=False),
    sa.Column("from_state", sa.String(30), nullable=True),
    sa.Column("to_state", sa.String(30), nullable=False),
    sa.Column("actor_id", sa.Integer, nullable=True),
    sa.Column("note", sa.Text, nullable=False, server_default=""),
    sa.Index(None, "order_id", "at"),
)

kep_certificates = sa.Table(
    "kep_certificates",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("tenant_id", sa.Integer, _tenant_fk(), nullable=False),
    sa.Column("order_id", sa.Integer, sa.ForeignKey("kep_orders.id", ondelete="SET NULL"), nullable=True),
    sa.Column("serial", sa.String(100), nullable=False),
    sa.Column("owner_name", sa.String(200), nullable=False),
    sa.Column("issued_at", UtcDateTime, nullable=False),
    sa.Column("valid_until", UtcDateTime, nullable=False),
    sa.UniqueConstraint("tenant_id", "serial"),
    sa.Index(None, "tenant_id", "valid_until"),
)

# Alerts about the company itself rather than one register (the КЭП expiring): one row per
# (tenant, rule), the current occurrence, with the same lifecycle fields as register alerts.
account_alerts = sa.Table(
    "account_alerts",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("tenant_id", sa.Integer, _tenant_fk(), nullable=False),
    sa.Column("rule", sa.String(50), nullable=False),
    sa.Column("occurrence", sa.Integer, nullable=False, server_default="1"),
    sa.Column("severity", sa.String(20), nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("acknowledged", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("acked_by", sa.String(200), nullable=True),
    sa.Column("acked_at", UtcDateTime, nullable=True),
    sa.Column("started_at", UtcDateTime, nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
    sa.Column("cleared_at", UtcDateTime, nullable=True),
    sa.Column("message", sa.Text, nullable=False, server_default=""),
    sa.Column("details", json_document(), nullable=False),
    sa.UniqueConstraint("tenant_id", "rule"),
)

audit_log = sa.Table(
    "audit_log",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column("tenant_id", sa.Integer, nullable=True),
    sa.Column("at", UtcDateTime, nullable=False),
    sa.Column("actor_id", sa.Integer, nullable=True),  # None: the operator CLI or the system
    sa.Column("actor", sa.String(254), nullable=False),
    sa.Column("action", sa.String(50), nullable=False),
    sa.Column("target_type", sa.String(30), nullable=False),
    sa.Column("target_id", sa.String(100), nullable=False),
    sa.Column("details", json_document(), nullable=False),
    sa.Index(None, "tenant_id", "at"),
    sa.Index(None, "target_type", "target_id"),
)

ACCOUNT_TABLES: tuple[sa.Table, ...] = (
    tenant_profiles,
    tree_levels,
    users,
    sessions,
    api_tokens,
    user_groups,
    group_members,
    grants,
    invitations,
    email_tokens,
    login_failures,
    login_throttle,
    kep_orders,
    kep_order_history,
    kep_documents,
    kep_certificates,
    account_alerts,
    audit_log,
)
