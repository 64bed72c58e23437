"""PostgreSQL: ``state_history`` and ``events`` become tables partitioned by day of ``ts``
(collector/storage/partitions.py), with a default partition; existing rows are copied into the
day partitions they belong to, ids and their sequence kept. ``state_history.state`` becomes
``json`` (the document's text; smaller than jsonb for the slim documents). SQLite is left as it is.

Revision ID: 0017
Revises: 0016
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

from collector.storage.partitions import DEFAULT_SUFFIX, create_day, maintain

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

_ENVELOPE = "agent_id varchar(100) NOT NULL, session bigint NOT NULL, seq bigint NOT NULL, register_id varchar(100) NOT NULL,"
_TIMES = "ts timestamptz NOT NULL, received_at timestamptz NOT NULL,"
# table → (its columns after id, the column list to copy)
_TABLES = {
    "state_history": (
        f"{_ENVELOPE} {_TIMES} state json NOT NULL, reason varchar(50)",
        "id, agent_id, session, seq, register_id, ts, received_at, state, reason",
    ),
    "events": (
        f"{_ENVELOPE} kind varchar(50) NOT NULL, {_TIMES} data jsonb NOT NULL",
        "id, agent_id, session, seq, register_id, kind, ts, received_at, data",
    ),
}
_OLD_INDEXES = ("register_id_ts", "ts", "received_at")


def _register_fk(table: str) -> str:
    return (
        f"CONSTRAINT fk_{table}_register_id_registers FOREIGN KEY (register_id)"
        " REFERENCES registers (register_id) ON DELETE CASCADE"
    )


def _rename_away(conn: sa.Connection, table: str, old: str) -> str:
    """Rename the table out of the way and free the names its keys and indexes hold; returns its id sequence."""
    sequence = conn.exec_driver_sql("SELECT pg_get_serial_sequence(%(t)s, 'id')", {"t": table}).scalar_one()
    conn.exec_driver_sql(f"ALTER TABLE {table} RENAME TO {old}")
    for name in (f"pk_{table}", f"uq_{table}_agent_id_session_seq", f"fk_{table}_register_id_registers"):
        conn.exec_driver_sql(f"ALTER TABLE {old} DROP CONSTRAINT IF EXISTS {name}")
    for index in _OLD_INDEXES:
        conn.exec_driver_sql(f"DROP INDEX IF EXISTS ix_{table}_{index}")
    conn.exec_driver_sql(f"ALTER SEQUENCE {sequence} OWNED BY NONE")
    return str(sequence)


def upgrade() -> None:
    conn = op.get_bind()
    if conn.dialect.name != "postgresql":
        return
    for table, (columns, copied) in _TABLES.items():
        old = f"{table}_unpartitioned"
        sequence = _rename_away(conn, table, old)
        conn.exec_driver_sql(
            f"CREATE TABLE {table} (id bigint NOT NULL DEFAULT nextval('{sequence}'), {columns}, {_register_fk(table)})"
            " PARTITION BY RANGE (ts)"
        )
        conn.exec_driver_sql(f"CREATE INDEX ix_{table}_register_id_ts ON {table} (register_id, ts)")
        conn.exec_driver_sql(f"CREATE INDEX ix_{table}_agent_id_session_seq ON {table} (agent_id, session, seq)")
        conn.exec_driver_sql(f"CREATE TABLE {table}{DEFAULT_SUFFIX} PARTITION OF {table} DEFAULT")
        days = conn.exec_driver_sql(f"SELECT DISTINCT (ts AT TIME ZONE 'UTC')::date FROM {old}").scalars()
        for day in sorted(days):
            create_day(conn, table, day)
        conn.exec_driver_sql(f"INSERT INTO {table} ({copied}) SELECT {copied} FROM {old}")
        conn.exec_driver_sql(f"DROP TABLE {old}")
        conn.exec_driver_sql(f"ALTER SEQUENCE {sequence} OWNED BY {table}.id")
    maintain(conn, datetime.now(UTC).date())


def downgrade() -> None:
    conn = op.get_bind()
    if conn.dialect.name != "postgresql":
        return
    for table, (columns, copied) in _TABLES.items():
        partitioned = f"{table}_partitioned"
        sequence = conn.exec_driver_sql("SELECT pg_get_serial_sequence(%(t)s, 'id')", {"t": table}).scalar_one()
        conn.exec_driver_sql(f"ALTER TABLE {table} RENAME TO {partitioned}")
        conn.exec_driver_sql(f"DROP INDEX ix_{table}_register_id_ts, ix_{table}_agent_id_session_seq")
        conn.exec_driver_sql(f"ALTER SEQUENCE {sequence} OWNED BY NONE")
        conn.exec_driver_sql(
            f"CREATE TABLE {table} (id bigint NOT NULL DEFAULT nextval('{sequence}'), {columns}, {_register_fk(table)},"
            f" CONSTRAINT pk_{table} PRIMARY KEY (id), CONSTRAINT uq_{table}_agent_id_session_seq UNIQUE (agent_id, session, seq))"
        )
        conn.exec_driver_sql(f"INSERT INTO {table} ({copied}) SELECT {copied} FROM {partitioned}")
        conn.exec_driver_sql(f"DROP TABLE {partitioned}")
        conn.exec_driver_sql(f"ALTER SEQUENCE {sequence} OWNED BY {table}.id")
        for index in _OLD_INDEXES:
            conn.exec_driver_sql(f"CREATE INDEX ix_{table}_{index} ON {table} ({index.replace('_ts', ', ts')})")
