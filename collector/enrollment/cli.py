"""``kassa-collector enrollment …``: operator commands (the lead registers ``add_parser`` in
``collector/commands/``).

* ``token --node N``          — a one-time token for store node N, printed once;
* ``revoke AGENT``            — remove the agent's broker account and mark it revoked;
* ``broker-setup``            — create/update the collector's own broker account and role.

Secrets come from the environment, never from flags (they would show in ``ps`` and shell history):
``KASSA_DYNSEC_ADMIN_PASSWORD`` and ``KASSA_COLLECTOR_BROKER_PASSWORD``.
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

from collector.enrollment.errors import EnrollmentError
from collector.enrollment.settings import EnrollmentSettings
from collector.storage import UnsupportedDatabaseUrl, create_engine_from_url

DB_ENV = "KASSA_COLLECTOR_DB_URL"
ADMIN_PASSWORD_ENV = "KASSA_DYNSEC_ADMIN_PASSWORD"
COLLECTOR_PASSWORD_ENV = "KASSA_COLLECTOR_BROKER_PASSWORD"
PROG = "kassa-collector enrollment"


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "enrollment", help="agent enrollment tokens and revocation"
    )
    parser.add_argument("--db", default=os.environ.get(DB_ENV), help=f"database URL (default: ${DB_ENV})")
    parser.add_argument(
        "--broker", default="mqtt://127.0.0.1:1883", help="the broker's admin/collector listener"
    )
    parser.add_argument(
        "--agent-broker", help="URL given to agents (default: --broker), e.g. mqtts://mqtt.example.ru:8883"
    )
    parser.add_argument("--backend", choices=("dynsec", "files", "nats"), default="dynsec")
    parser.add_argument(
        "--admin-user", default="kassa-admin", help=f"dynsec admin (password: ${ADMIN_PASSWORD_ENV})"
    )
    parser.add_argument("--password-file", type=Path, help="files backend: Mosquitto password file")
    parser.add_argument("--acl-file", type=Path, help="files backend: Mosquitto ACL file")
    parser.add_argument("--pid-file", type=Path, help="files/nats backend: SIGHUP this broker after a change")
    parser.add_argument("--nats-users-file", type=Path, help="nats backend: the users list the nodes include")
    actions = parser.add_subparsers(dest="enrollment_command", metavar="ACTION", required=True)
    token = actions.add_parser("token", help="create a one-time enrollment token for a store node")
    token.add_argument("--node", type=int, required=True, help="the store node the agent will belong to")
    token.add_argument("--ttl-hours", type=float, default=24.0, help="validity (default 24, at most 720)")
    token.add_argument("--created-by", default="cli", help="operator name for the audit column")
    token.set_defaults(func=run_token)
    revoke = actions.add_parser("revoke", help="remove an agent's broker account and mark it revoked")
    revoke.add_argument("agent_id")
    revoke.set_defaults(func=run_revoke)
    setup = actions.add_parser("broker-setup", help="create or update the collector's broker account")
    setup.add_argument("--collector-user", default="kassa-collector")
    setup.set_defaults(func=run_broker_setup)
    return parser


def settings_from_args(args: argparse.Namespace) -> EnrollmentSettings:
    return EnrollmentSettings(
        broker_url=args.broker,
        enroll_broker_url=args.agent_broker,
        enroll_backend=args.backend,
        dynsec_admin_username=args.admin_user,
        dynsec_admin_password=os.environ.get(ADMIN_PASSWORD_ENV),
        broker_password_file=args.password_file,
        broker_acl_file=args.acl_file,
        broker_pid_file=args.pid_file,
        nats_users_file=args.nats_users_file,
    )


def _with_service(args: argparse.Namespace, work: Any) -> int:
    if not args.db:
        print(f"{PROG}: --db URL is required (or set {DB_ENV})", file=sys.stderr)
        return 2
    try:
        engine = create_engine_from_url(args.db)
    except UnsupportedDatabaseUrl as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    try:
        return int(work(settings_from_args(args).service(engine)))
    except (EnrollmentError, ValueError) as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 1
    finally:
        engine.dispose()


def run_token(args: argparse.Namespace) -> int:
    def work(service: Any) -> int:
        issued = service.create_token(
            args.node, created_by=args.created_by, ttl=timedelta(hours=args.ttl_hours)
        )
        print(
            f"enrollment token for node {issued.node_id}, valid until {issued.expires_at:%Y-%m-%d %H:%M} UTC"
        )
        print("on the POS computer: kassa-agent enroll --collector https://<collector> --token <token>")
        print(issued.token)  # last line, alone: easy to copy, shown only now
        return 0

    return _with_service(args, work)


def run_revoke(args: argparse.Namespace) -> int:
    def work(service: Any) -> int:
        service.revoke_agent(args.agent_id)
        print(f"agent {args.agent_id} revoked: its broker account is gone")
        return 0

    return _with_service(args, work)


def run_broker_setup(args: argparse.Namespace) -> int:
    password = os.environ.get(COLLECTOR_PASSWORD_ENV)
    if not password:
        print(f"{PROG}: set {COLLECTOR_PASSWORD_ENV} to the collector's broker password", file=sys.stderr)
        return 2
    try:
        settings_from_args(args).backend().ensure_collector(args.collector_user, password)
    except (EnrollmentError, ValueError) as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 1
    print(f"broker account {args.collector_user!r} ready (reads kassa/v1/#, sends cmd/ack/_collector/status)")
    return 0
