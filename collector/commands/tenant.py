"""``kassa-collector tenant create --name NAME --inn INN``: a client company with its tree root."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime

import sqlalchemy as sa

from collector.accounts.audit import Actor
from collector.accounts.cli_support import add_db_argument, run_in_transaction
from collector.accounts.tree import create_company
from collector.accounts.tree_levels import DEFAULT_LEVELS


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("tenant", help="manage client companies (tenants)")
    actions = parser.add_subparsers(dest="tenant_command", metavar="ACTION", required=True)
    create = actions.add_parser("create", help="create a company with its ИНН and tree root")
    add_db_argument(create)
    create.add_argument("--name", required=True, help="company name, also the name of the tree root")
    create.add_argument("--inn", required=True, help="the company's ИНН (10 digits, or 12 for a sole trader)")
    create.add_argument(
        "--levels",
        default=",".join(DEFAULT_LEVELS),
        help="comma-separated tree levels from the root to the store (default: %(default)s)",
    )
    create.set_defaults(func=run_create)


def run_create(args: argparse.Namespace) -> int:
    def work(conn: sa.Connection) -> int:
        levels = [name for name in args.levels.split(",") if name.strip()]
        company = create_company(
            conn, Actor.cli(), name=args.name, inn=args.inn, at=datetime.now(UTC), levels=levels
        )
        print(
            f"tenant {company.tenant_id} created: {args.name} (ИНН {args.inn.strip()}), root node {company.root_node_id}"
        )
        return 0

    return run_in_transaction(args, "kassa-collector tenant create", work)
