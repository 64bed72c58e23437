"""The collector's tables (SQLAlchemy Core). Alembic revisions under ``migrations/`` must match this.

Conventions: instants are ``UtcDateTime`` (aware UTC); register-local times (ФН dates, the
oldest unsent document) are naive ``DateTime``/``Date`` exactly as the register reports them;
(session, seq) are ``BigInteger`` (signed 64 bits on both backends); severities are the
lowercase labels of ``collector.alerts.severity.Severity``.
"""

from __future__ import annotations

import sqlalchemy as sa

from collector.storage.coltypes import UtcDateTime, json_document
from collector.storage.rows import SEVERITY_LEVELS

# Deterministic constraint names, so later migrations (and SQLite batch mode) can address them.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)

# Rows rewritten by (nearly) every message — a register's latest state, its agent's last_seen, the
# register's identity refresh, the agent's ingest mark — leave PostgreSQL pages this much room, so
# a new row version fits beside the old one (a HOT update: no index entries, and the page prunes
# the dead version itself when it fills up, without waiting for VACUUM). With full pages each update
# moved the row to a new page: 50 000 registers grew register_state by ~2 GB an hour wherever
# autovacuum lags or is off. Migration 0021 sets the same on existing tables.
REWRITTEN_FILLFACTOR = {"register_state": 50, "agents": 70, "registers": 70, "ingest_marks": 70}


def _register_fk() -> sa.ForeignKey:
    return sa.ForeignKey("registers.register_id", ondelete="CASCADE")


def _tenant_column() -> sa.Column[int]:
    return sa.Column("tenant_id", sa.Integer, sa.ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False)


tenants = sa.Table(
    "tenants",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
)

# The company tree. ``path`` is the materialised chain of ids ("/1/5/12/"), so a subtree is
# ``path LIKE '/1/5/%'`` without recursive queries; ``kind`` is the free level name (brand, city…).
nodes = sa.Table(
    "nodes",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    _tenant_column(),
    sa.Column("parent_id", sa.Integer, sa.ForeignKey("nodes.id", ondelete="CASCADE"), nullable=True),
    sa.Column("kind", sa.String(50), nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("path", sa.String(1000), nullable=False),
    sa.Index(None, "tenant_id", "parent_id"),
    sa.Index(None, "path"),
)

tags = sa.Table(
    "tags",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    _tenant_column(),
    sa.Column("name", sa.String(100), nullable=False),
    sa.UniqueConstraint("tenant_id", "name"),
)

agents = sa.Table(
    "agents",
    metadata,
    sa.Column("agent_id", sa.String(100), primary_key=True),
    _tenant_column(),
    sa.Column("node_id", sa.Integer, sa.ForeignKey("nodes.id", ondelete="SET NULL"), nullable=True),
    sa.Column("enrolled_at", UtcDateTime, nullable=False),
    sa.Column("revoked", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("last_session", sa.BigInteger, nullable=True),
    sa.Column("last_seen", UtcDateTime, nullable=True),
    sa.Column("online", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("status_session", sa.BigInteger, nullable=True),
    sa.Column("status_at", UtcDateTime, nullable=True),
    # How far the agent's clock is off (seconds, + = ahead), measured on its messages' arrival.
    sa.Column("clock_offset", sa.Float, nullable=True),
    sa.Column("clock_checked_at", UtcDateTime, nullable=True),
    sa.Index(None, "tenant_id"),
    sa.Index(None, "node_id"),
    postgresql_with={"fillfactor": REWRITTEN_FILLFACTOR["agents"]},
)

registers = sa.Table(
    "registers",
    metadata,
    sa.Column("register_id", sa.String(100), primary_key=True),
    _tenant_column(),
    sa.Column("node_id", sa.Integer, sa.ForeignKey("nodes.id", ondelete="SET NULL"), nullable=True),
    sa.Column(
        "agent_id", sa.String(100), sa.ForeignKey("agents.agent_id", ondelete="SET NULL"), nullable=True
    ),
    sa.Column("protocol", sa.String(30), nullable=False),
    sa.Column("serial", sa.String(40), nullable=True),
    sa.Column("rnm", sa.String(40), nullable=True),
    sa.Column("fn_serial", sa.String(40), nullable=True),
    sa.Column("model", sa.String(100), nullable=True),
    sa.Column("first_seen", UtcDateTime, nullable=False),
    sa.Column("last_seen", UtcDateTime, nullable=False),
    sa.Index(None, "tenant_id"),
    sa.Index(None, "node_id"),
    sa.Index(None, "agent_id"),
    postgresql_with={"fillfactor": REWRITTEN_FILLFACTOR["registers"]},
)

register_tags = sa.Table(
    "register_tags",
    metadata,
    sa.Column("register_id", sa.String(100), _register_fk(), primary_key=True),
    sa.Column("tag_id", sa.Integer, sa.ForeignKey("tags.id", ondelete="CASCADE"), primary_key=True),
    sa.Index(None, "tag_id"),
)

# Latest state per register plus the columns lists filter and sort on. ``time_to_block_seconds``
# is the value at ``evaluated_at``; sorting uses ``blocks_at`` which does not go stale. An evaluation
# that finds the stored outcome again writes nothing: ``evaluated_at`` is when this outcome was stored.
register_state = sa.Table(
    "register_state",
    metadata,
    sa.Column("register_id", sa.String(100), _register_fk(), primary_key=True),
    sa.Column("agent_id", sa.String(100), nullable=False),
    sa.Column("session", sa.BigInteger, nullable=False),
    sa.Column("seq", sa.BigInteger, nullable=False),
    # When the state was read, on the collector's clock (collector/ingest/agent_clock.py), not the agent's.
    sa.Column("agent_ts", UtcDateTime, nullable=False),
    sa.Column("received_at", UtcDateTime, nullable=False),
    sa.Column("state", json_document(), nullable=False),
    sa.Column("shift_status", sa.String(20), nullable=True),
    sa.Column("unsent_count", sa.Integer, nullable=True),
    sa.Column("oldest_unsent_at", sa.DateTime(timezone=False), nullable=True),
    sa.Column("fn_valid_until", sa.Date, nullable=True),
    sa.Column("link_up", sa.Boolean, nullable=True),
    sa.Column("time_to_block_seconds", sa.BigInteger, nullable=True),
    sa.Column("blocks_at", UtcDateTime, nullable=True),
    sa.Column("worst_severity", sa.String(20), nullable=True),
    sa.Column("evaluated_at", UtcDateTime, nullable=True),
    # Can it sell now (collector.alerts.Verdict): lists sort on sell_rank first, then blocks_at.
    sa.Column("sell_status", sa.String(20), nullable=True),
    sa.Column("sell_rank", sa.SmallInteger, nullable=True),
    sa.Column("verdict", json_document(), nullable=True),
    # What the verdict was computed on (collector.ingest.rule_inputs.verdict_key): another collector
    # sharing the stream compares its inputs with it instead of re-reading them with a join.
    sa.Column("verdict_key", sa.String(120), nullable=True),
    sa.Index(None, "blocks_at"),
    sa.Index("ix_register_state_sell_rank", "sell_rank", "blocks_at"),
    sa.Index(None, "worst_severity"),
    postgresql_with={"fillfactor": REWRITTEN_FILLFACTOR["register_state"]},
)


def _history_keys() -> list[sa.SchemaItem]:
    """Keys of a history table (``state_history``, ``events``). On PostgreSQL the table is
    partitioned by day of ``ts`` (``collector.storage.partitions``): a unique key or primary key
    would have to include ``ts``, so (agent, session, seq) is a plain index there and ingest skips
    duplicates with ``NOT EXISTS`` (``collector.ingest.pg_rows``); retention drops days, so the
    ``ts``/``received_at`` indexes are SQLite's only. ``id`` is then a sequence-filled column, no key."""
    sqlite, postgresql = {"dialect": "sqlite"}, {"dialect": "postgresql"}
    return [
        sa.PrimaryKeyConstraint("id").ddl_if(**sqlite),
        sa.UniqueConstraint("agent_id", "session", "seq").ddl_if(**sqlite),
        sa.Index(None, "agent_id", "session", "seq").ddl_if(**postgresql),
        sa.Index(None, "register_id", "ts"),
        sa.Index(None, "ts").ddl_if(**sqlite),
        sa.Index(None, "received_at").ddl_if(**sqlite),  # retention goes by the collector's clock, never the agent's
    ]

# One narrow row per register with what the register list, the dashboard counters and the tree
# filter and sort on, so they read one indexed table instead of joining four. Kept by
# ``collector.storage.register_summary`` in the transaction that changes a source row (registers,
# register_state, agents.online, alerts). Sort keys are NOT NULL and ascending, so a page can
# resume after a row-value cursor: ``block_order`` is blocks_at with "no stop ahead" as a far
# future, ``severity_order`` is 0 for the worst severity up to the number of levels for none.
register_summary = sa.Table(
    "register_summary",
    metadata,
    sa.Column("register_id", sa.String(100), _register_fk(), primary_key=True),
    sa.Column("tenant_id", sa.Integer, nullable=False),
    sa.Column("node_id", sa.Integer, sa.ForeignKey("nodes.id", ondelete="SET NULL"), nullable=True),
    # The node's materialised path, byte-ordered on both backends: a subtree is one range of it.
    sa.Column("node_path", sa.String(1000).with_variant(sa.String(1000, collation="C"), "postgresql"), nullable=True),
    sa.Column("protocol", sa.String(30), nullable=False),
    sa.Column("search_text", sa.String(240), nullable=False),  # lowered id, serial, РНМ, ФН number
    sa.Column("sell_rank", sa.SmallInteger, nullable=False),
    sa.Column("sell_status", sa.String(20), nullable=True),
    sa.Column("block_order", UtcDateTime, nullable=False),
    sa.Column("severity_order", sa.SmallInteger, nullable=False),
    sa.Column("worst_severity", sa.String(20), nullable=True),
    sa.Column("problem", sa.Boolean, nullable=False),  # has an active alert
    sa.Column("agent_online", sa.Boolean, nullable=True),  # NULL: no such agent
    sa.Column("link_up", sa.Boolean, nullable=True),
    sa.Column("shift_status", sa.String(20), nullable=True),
    sa.Index("ix_register_summary_by_block", "tenant_id", "sell_rank", "block_order", "severity_order", "register_id"),
    sa.Index("ix_register_summary_by_severity", "tenant_id", "severity_order", "sell_rank", "block_order", "register_id"),
    sa.Index(None, "node_id"),
    sa.Index(None, "tenant_id", "node_path"),
)

# Per node, the registers placed directly at it counted as the tree shows them: kept by
# ``collector.storage.node_totals`` with every refresh of ``register_summary`` (same transaction),
# so the tree adds up one row per node instead of grouping every register (issue 11). Subtrees are
# summed when read, over one range of ``node_path`` (a moved node's registers are refreshed, and
# with them the paths here); a node's subtree lies wholly inside any scope that shows the node.
node_totals = sa.Table(
    "node_totals",
    metadata,
    sa.Column("node_id", sa.Integer, sa.ForeignKey("nodes.id", ondelete="CASCADE"), primary_key=True),
    # The node's path, byte-ordered as in register_summary: a subtree's rows are one index range.
    sa.Column("node_path", sa.String(1000).with_variant(sa.String(1000, collation="C"), "postgresql"), nullable=False),
    sa.Column("registers", sa.Integer, nullable=False),
    sa.Column("cannot_sell", sa.Integer, nullable=False),
    *(sa.Column(f"severity_{label}", sa.Integer, nullable=False) for label in SEVERITY_LEVELS),
    sa.Column("earliest_stop", UtcDateTime, nullable=True),  # the earliest stop ahead of those that can sell
    sa.Index(None, "node_path"),
)

state_history = sa.Table(
    "state_history",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), nullable=False),
    sa.Column("agent_id", sa.String(100), nullable=False),
    sa.Column("session", sa.BigInteger, nullable=False),
    sa.Column("seq", sa.BigInteger, nullable=False),
    sa.Column("register_id", sa.String(100), _register_fk(), nullable=False),
    sa.Column("ts", UtcDateTime, nullable=False),
    sa.Column("received_at", UtcDateTime, nullable=False),
    # Since revision 0016 the slim history document (collector.ingest.history_policy), before it the
    # full state. Plain ``json`` on PostgreSQL too: stored as the text ingest made (~25 % smaller
    # than jsonb for these small documents), never queried inside.
    sa.Column("state", sa.JSON(), nullable=False),
    sa.Column("reason", sa.String(50), nullable=True),  # why the history policy kept it
    *_history_keys(),
    postgresql_partition_by="RANGE (ts)",
)

events = sa.Table(
    "events",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), nullable=False),
    sa.Column("agent_id", sa.String(100), nullable=False),
    sa.Column("session", sa.BigInteger, nullable=False),
    sa.Column("seq", sa.BigInteger, nullable=False),
    sa.Column("register_id", sa.String(100), _register_fk(), nullable=False),
    sa.Column("kind", sa.String(50), nullable=False),
    sa.Column("ts", UtcDateTime, nullable=False),
    sa.Column("received_at", UtcDateTime, nullable=False),
    sa.Column("data", json_document(), nullable=False),
    *_history_keys(),
    postgresql_partition_by="RANGE (ts)",
)

# Events about an agent rather than one of its registers: ``outbox_gap`` (states its full outbox
# had to drop — data the collector will never see) and ``command_error``. Keyed like ``events``;
# no foreign key, so a later clean-up of agents never fails on their history.
agent_events = sa.Table(
    "agent_events",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column("agent_id", sa.String(100), nullable=False),
    sa.Column("session", sa.BigInteger, nullable=False),
    sa.Column("seq", sa.BigInteger, nullable=False),
    sa.Column("kind", sa.String(50), nullable=False),
    sa.Column("ts", UtcDateTime, nullable=False),
    sa.Column("received_at", UtcDateTime, nullable=False),
    sa.Column("data", json_document(), nullable=False),
    sa.UniqueConstraint("agent_id", "session", "seq"),
    sa.Index(None, "agent_id", "ts"),
    sa.Index(None, "received_at"),
)

# An agent's installations (outbox epochs, see protocol.mqtt.models). A reinstalled agent restarts
# its sessions at 1, so the collector stores every session of epoch E as ``base + session``: each
# later installation gets a base above every session stored before, and dedup, ordering, status and
# acks keep working on one increasing number. Agents without an epoch (older versions) use base 0.
agent_epochs = sa.Table(
    "agent_epochs",
    metadata,
    sa.Column("agent_id", sa.String(100), primary_key=True),
    sa.Column("epoch", sa.String(64), primary_key=True),
    sa.Column("base", sa.BigInteger, nullable=False),
    sa.Column("first_session", sa.BigInteger, nullable=False),
    sa.Column("first_seen", UtcDateTime, nullable=False),
    sa.UniqueConstraint("agent_id", "base"),
)

# One row per (register, rule): the current occurrence; a new occurrence reuses the row and the
# history keeps what happened before.
alerts = sa.Table(
    "alerts",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("register_id", sa.String(100), _register_fk(), nullable=False),
    sa.Column("rule", sa.String(50), nullable=False),
    sa.Column("severity", sa.String(20), nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("acknowledged", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("acked_by", sa.String(200), nullable=True),
    sa.Column("acked_at", UtcDateTime, nullable=True),
    sa.Column("assignee", sa.String(200), nullable=True),
    sa.Column("started_at", UtcDateTime, nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
    sa.Column("cleared_at", UtcDateTime, nullable=True),
    sa.Column("silenced_until", UtcDateTime, nullable=True),
    sa.Column("message", sa.Text, nullable=False, server_default=""),
    sa.Column("details", json_document(), nullable=False),
    sa.UniqueConstraint("register_id", "rule"),
    sa.Index(None, "status", "severity"),
    sa.Index(None, "rule", "status"),
)

alert_history = sa.Table(
    "alert_history",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column("alert_id", sa.Integer, sa.ForeignKey("alerts.id", ondelete="CASCADE"), nullable=False),
    sa.Column("at", UtcDateTime, nullable=False),
    sa.Column("action", sa.String(50), nullable=False),
    sa.Column("actor", sa.String(200), nullable=True),
    sa.Column("details", json_document(), nullable=False),
    sa.Index(None, "alert_id", "at"),
)

alert_comments = sa.Table(
    "alert_comments",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("alert_id", sa.Integer, sa.ForeignKey("alerts.id", ondelete="CASCADE"), nullable=False),
    sa.Column("at", UtcDateTime, nullable=False),
    sa.Column("author", sa.String(200), nullable=False),
    sa.Column("text", sa.Text, nullable=False),
    sa.Index(None, "alert_id", "at"),
)

ofd_contracts = sa.Table(
    "ofd_contracts",
    metadata,
    sa.Column("register_id", sa.String(100), _register_fk(), primary_key=True),
    sa.Column("activated", sa.Boolean, nullable=False),
    sa.Column("paid_until", sa.Date, nullable=True),
    sa.Column("tariff", sa.String(200), nullable=True),
    sa.Column("updated_at", UtcDateTime, nullable=False),
    sa.Column("ofd_operator", sa.String(40), nullable=True),  # collector.alerts.ofd_operators key
)

# Exactly one of node_id / register_id: a maintenance window on a subtree or on one register.
silences = sa.Table(
    "silences",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    _tenant_column(),
    sa.Column("node_id", sa.Integer, sa.ForeignKey("nodes.id", ondelete="CASCADE"), nullable=True),
    sa.Column("register_id", sa.String(100), _register_fk(), nullable=True),
    sa.Column("starts_at", UtcDateTime, nullable=False),
    sa.Column("until", UtcDateTime, nullable=False),
    sa.Column("author", sa.String(200), nullable=False),
    sa.Column("reason", sa.Text, nullable=False, server_default=""),
    sa.CheckConstraint("(node_id IS NULL) <> (register_id IS NULL)", name="one_target"),
    sa.Index(None, "node_id"),
    sa.Index(None, "register_id"),
    sa.Index(None, "until"),
)

dead_letters = sa.Table(
    "dead_letters",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column("received_at", UtcDateTime, nullable=False),
    sa.Column("topic", sa.String(500), nullable=False),
    sa.Column("reason", sa.String(100), nullable=False),
    sa.Column("detail", sa.Text, nullable=False),
    # A bounded prefix of the payload, with the whole payload's size and SHA-256 (NULL on rows
    # stored before revision 0009, which kept the whole payload).
    sa.Column("raw", sa.LargeBinary, nullable=False),
    sa.Column("size", sa.BigInteger, nullable=True),
    sa.Column("sha256", sa.String(64), nullable=True),
    sa.Index(None, "received_at"),
)

# The collector's durable high-water mark per (agent, session): what the ``ack`` topic reports.
ingest_marks = sa.Table(
    "ingest_marks",
    metadata,
    sa.Column("agent_id", sa.String(100), primary_key=True),
    sa.Column("session", sa.BigInteger, primary_key=True),
    sa.Column("max_seq", sa.BigInteger, nullable=False),
    postgresql_with={"fillfactor": REWRITTEN_FILLFACTOR["ingest_marks"]},
)

# Remote actions on a register (collector.actions): one row per command, its id the command id the
# agent echoes. ``open_for`` holds the register id while the action is not final and NULL after,
# so the unique constraint allows one unfinished action per register even under concurrent requests.
register_actions = sa.Table(
    "register_actions",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    _tenant_column(),
    sa.Column("register_id", sa.String(100), _register_fk(), nullable=False),
    sa.Column("agent_id", sa.String(100), nullable=True),  # NULL: refused by the collector, never sent
    sa.Column("action", sa.String(30), nullable=False),
    sa.Column("args", json_document(), nullable=False),
    sa.Column("requested_by", sa.String(200), nullable=False),
    sa.Column("requested_by_id", sa.Integer, nullable=True),
    sa.Column("requested_at", UtcDateTime, nullable=False),
    # On the collector's clock; the command carries it shifted by the agent's measured clock error.
    sa.Column("deadline", UtcDateTime, nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("code", sa.Integer, nullable=True),
    sa.Column("meaning", sa.Text, nullable=True),
    sa.Column("reason", sa.String(64), nullable=True),
    sa.Column("updated_at", UtcDateTime, nullable=False),
    sa.Column("bulk_id", sa.String(64), nullable=True),
    sa.Column("open_for", sa.String(100), nullable=True),
    sa.UniqueConstraint("open_for"),
    sa.Index(None, "register_id", "requested_at"),
    sa.Index(None, "status", "deadline"),
    sa.Index(None, "bulk_id"),
)
