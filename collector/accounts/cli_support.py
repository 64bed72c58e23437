"""What the operator subcommands (``tenant``, ``user``, ``token``) share: the ``--db`` option and
one write transaction with every expected failure turned into a one-line message."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable

import sqlalchemy as sa

from collector.accounts.errors import AccountsError
from collector.accounts.inn import InvalidNumber
from collector.accounts.passwords import WeakPassword
from collector.storage import UnsupportedDatabaseUrl, begin_write, create_engine_from_url

DB_ENV = "KASSA_COLLECTOR_DB_URL"


def add_db_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--db",
        default=os.environ.get(DB_ENV),
        help=f"sqlite:///collector.db or postgresql://user@host/db (default: ${DB_ENV})",
    )


def run_in_transaction(args: argparse.Namespace, prog: str, work: Callable[[sa.Connection], int]) -> int:
    """Run ``work`` in one committed transaction; print ``prog: reason`` and return 1 or 2 on failure."""
    if not args.db:
        print(f"{prog}: --db URL is required (or set {DB_ENV})", file=sys.stderr)
        return 2
    try:
        engine = create_engine_from_url(args.db)
    except UnsupportedDatabaseUrl as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    try:
        with begin_write(engine) as conn:
            return work(conn)
    except (AccountsError, InvalidNumber, WeakPassword, ValueError) as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 1
    except sa.exc.OperationalError as exc:
        print(
            f"{prog}: database error ({exc.orig}); is it migrated? run: kassa-collector migrate --db URL",
            file=sys.stderr,
        )
        return 1
    except sa.exc.ProgrammingError as exc:
        print(
            f"{prog}: database error ({exc.orig}); is it migrated? run: kassa-collector migrate --db URL",
            file=sys.stderr,
        )
        return 1
    finally:
        engine.dispose()
