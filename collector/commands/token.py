"""``kassa-collector token create --email E``: a new API token for a user, printed once as the
last word of the output (only its hash is stored)."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from collector.accounts.cli_support import add_db_argument, run_in_transaction
from collector.accounts.errors import NotFound
from collector.accounts.schema import users
from collector.accounts.sessions import create_api_token


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("token", help="manage API tokens")
    actions = parser.add_subparsers(dest="token_command", metavar="ACTION", required=True)
    create = actions.add_parser("create", help="create an API token for a user (shown once)")
    add_db_argument(create)
    create.add_argument("--email", required=True, help="the user the token acts as")
    create.add_argument("--name", default="cli", help="a label to tell tokens apart")
    create.add_argument(
        "--expires-days", type=int, default=None, help="days until it expires (default: never)"
    )
    create.set_defaults(func=run_create)


def run_create(args: argparse.Namespace) -> int:
    def work(conn: sa.Connection) -> int:
        email = args.email.strip().lower()
        user_id = conn.execute(sa.select(users.c.id).where(users.c.email == email)).scalar_one_or_none()
        if user_id is None:
            raise NotFound(f"no user with e-mail {email}")
        now = datetime.now(UTC)
        expires = None if args.expires_days is None else now + timedelta(days=args.expires_days)
        created = create_api_token(conn, int(user_id), args.name, at=now, expires_at=expires)
        print(
            f"API token {created.prefix} for {email} (store it now, it is not shown again): {created.token}"
        )
        return 0

    return run_in_transaction(args, "kassa-collector token create", work)
