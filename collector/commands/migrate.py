"""``kassa-collector migrate --db URL``: upgrade the database schema to the newest revision."""

from __future__ import annotations

import argparse
import os

from collector.config import ENV_PREFIX
from collector.storage import UnsupportedDatabaseUrl, migrate
from collector.storage.migrations import current_revisions, head_revisions


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("migrate", help="create or upgrade the database schema")
    parser.add_argument(
        "--db",
        default=os.environ.get(f"{ENV_PREFIX}DB_URL"),
        help="sqlite:///collector.db or postgresql://user@host/db (default: $KASSA_COLLECTOR_DB_URL)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if not args.db:
        print("kassa-collector migrate: --db URL is required (or set KASSA_COLLECTOR_DB_URL)")
        return 2
    try:
        before = current_revisions(args.db)
        migrate(args.db)
    except UnsupportedDatabaseUrl as exc:
        print(f"kassa-collector migrate: {exc}")
        return 2
    heads = ", ".join(sorted(head_revisions()))
    if set(before) == set(head_revisions()):
        print(f"database already at revision {heads}")
    else:
        print(f"database migrated from {', '.join(sorted(before)) or 'empty'} to {heads}")
    return 0
