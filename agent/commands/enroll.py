"""``kassa-agent enroll``: bind this agent to a store with a one-time token from the operator."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from agent.config import CONFIG_PATH_ENV, DEFAULT_CONFIG_PATH
from agent.enroll import (
    BadToken,
    CollectorUnreachable,
    EnrollError,
    TlsProblem,
    exchange_token,
    updated_config,
    write_config,
)

EXIT_BAD_TOKEN = 2
EXIT_UNREACHABLE = 3
EXIT_TLS = 4


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "enroll",
        help="exchange a one-time enrollment token for this agent's identity and broker credentials",
        description="Exchange a token (from the collector's web UI) for an agent id and broker "
        "credentials, and write them into the config file (mode 0600).",
    )
    parser.add_argument(
        "--collector",
        required=True,
        metavar="URL",
        help="collector base URL, e.g. https://monitor.example.ru",
    )
    parser.add_argument("--token", required=True, help="the one-time enrollment token")
    parser.add_argument(
        "--config",
        type=Path,
        help=f"config file to create or update (default: ${CONFIG_PATH_ENV} or {DEFAULT_CONFIG_PATH})",
    )
    parser.add_argument(
        "--hostname", help="name shown to operators and used in the agent id (default: this host's name)"
    )
    parser.add_argument(
        "--ca-file", type=Path, help="CA certificate for a collector/broker with a private CA"
    )
    parser.add_argument("--owner", help="make this user own the config (e.g. kassa-agent; needs root)")
    parser.add_argument("--timeout", type=float, default=15.0, help="seconds to wait for the collector")
    parser.set_defaults(func=enroll_command)
    return parser


def enroll_command(args: argparse.Namespace) -> int:
    path: Path = args.config or Path(os.environ.get(CONFIG_PATH_ENV) or DEFAULT_CONFIG_PATH)
    try:
        existing = path.read_text(encoding="utf-8") if path.exists() else None
        enrollment = exchange_token(
            args.collector, args.token, hostname=args.hostname, ca_file=args.ca_file, timeout=args.timeout
        )
        write_config(path, updated_config(existing, enrollment, ca_file=args.ca_file), owner=args.owner)
    except PermissionError:
        print(
            f"enroll: {path}: permission denied\n  hint: run as root (sudo) or pass --config", file=sys.stderr
        )
        return 1
    except EnrollError as exc:
        print(f"enroll: {exc}", file=sys.stderr)
        if exc.hint:
            print(f"  hint: {exc.hint}", file=sys.stderr)
        return _exit_code(exc)
    print(f"enrolled as agent {enrollment.agent_id}")
    print(f"  broker:  {enrollment.broker_url} (user {enrollment.username})")
    print(f"  config:  {path} (mode 0600)")
    print("next steps:")
    print(
        f"  kassa-agent config check --config {path}   # add [[devices]] first if it has none (kassa-agent detect)"
    )
    print("  sudo systemctl restart kassa-agent")
    return 0


def _exit_code(exc: EnrollError) -> int:
    if isinstance(exc, BadToken):
        return EXIT_BAD_TOKEN
    if isinstance(exc, CollectorUnreachable):
        return EXIT_UNREACHABLE
    if isinstance(exc, TlsProblem):
        return EXIT_TLS
    return 1
