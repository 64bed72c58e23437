"""``kassa-collector user create --tenant NAME --email E --role ROLE [--password P]``.

Creates a confirmed user, the standard group of the role on the company root (if missing) with
that grant, and puts the user in it. Without ``--password`` it is prompted for (twice) on a
terminal, or read as one line from standard input otherwise.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from datetime import UTC, datetime

import sqlalchemy as sa

from collector.accounts.audit import Actor
from collector.accounts.cli_support import add_db_argument, run_in_transaction
from collector.accounts.errors import InvalidInput
from collector.accounts.groups import add_member, ensure_role_group
from collector.accounts.passwords import Passwords, check_password_policy
from collector.accounts.rights import Role, parse_role
from collector.accounts.service import create_user
from collector.accounts.tree import find_company


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("user", help="manage users")
    actions = parser.add_subparsers(dest="user_command", metavar="ACTION", required=True)
    create = actions.add_parser("create", help="create a confirmed user with a role on the whole company")
    add_db_argument(create)
    create.add_argument("--tenant", required=True, help="company name or ИНН")
    create.add_argument("--email", required=True)
    create.add_argument("--role", required=True, choices=[r.value for r in Role])
    create.add_argument("--password", help="the password (prompted for when omitted)")
    create.add_argument("--name", default="", help="the user's full name")
    create.set_defaults(func=run_create)


NO_PASSWORD = (
    "no password given, and standard input is not a terminal to ask for one: pass --password P, "
    "or send it as the first line of standard input (e.g. `printf '%s\\n' \"$PASSWORD\" | kassa-collector user create …`)"
)


def read_password() -> str:
    if not sys.stdin.isatty():
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:  # end of input or an empty line: nobody typed a password
            raise InvalidInput(NO_PASSWORD)
        return password
    first = getpass.getpass("Password: ")
    if getpass.getpass("Repeat password: ") != first:
        raise InvalidInput("the passwords do not match")
    return first


def run_create(args: argparse.Namespace) -> int:
    role = parse_role(args.role)
    try:
        password = args.password if args.password is not None else read_password()
        check_password_policy(password)
    except ValueError as exc:
        print(f"kassa-collector user create: {exc}", file=sys.stderr)
        return 1

    def work(conn: sa.Connection) -> int:
        now = datetime.now(UTC)
        actor = Actor.cli()
        company = find_company(conn, args.tenant)
        user_id = create_user(
            conn,
            Passwords(),
            actor,
            company.tenant_id,
            email=args.email,
            password=password,
            at=now,
            full_name=args.name,
            confirmed=True,
        )
        group_id = ensure_role_group(conn, actor, company.tenant_id, role, company.root_node_id, at=now)
        add_member(conn, actor, company.tenant_id, group_id, user_id, at=now)
        print(f"user {user_id} created: {args.email.strip().lower()}, {role.value} of the whole company")
        return 0

    return run_in_transaction(args, "kassa-collector user create", work)
