"""Alembic environment, run by ``collector.storage.migrations.migrate`` (or ``alembic.command``
with ``alembic_config(conn)``) on the connection passed in ``config.attributes["connection"]``."""

from __future__ import annotations

from alembic import context

from collector.storage.migrations import comparable, full_metadata

connection = context.config.attributes.get("connection")
if connection is None or context.is_offline_mode():
    raise RuntimeError(
        "run migrations through collector.storage.migrations (migrate(url) or alembic_config(conn)); "
        "there is no alembic.ini and no offline SQL mode"
    )

context.configure(
    connection=connection,
    target_metadata=full_metadata(),
    # SQLite cannot ALTER most things; batch mode rebuilds tables for later revisions.
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
    include_object=comparable(connection.dialect.name),
)
with context.begin_transaction():
    context.run_migrations()
