"""``kassa-agent config check``: validate the effective configuration and show it, secrets hidden."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from agent.commands.run import add_config_arguments, config_from_args
from agent.config import CONFIG_PATH_ENV, ENV_PREFIX, AgentConfig, ConfigError, as_builtins, config_path

SECRET_KEYS = frozenset({"password", "access_password", "action_password"})


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    config_parser: argparse.ArgumentParser = subparsers.add_parser("config", help="configuration tools")
    inner = config_parser.add_subparsers(dest="config_command", required=True)
    parser: argparse.ArgumentParser = inner.add_parser(
        "check", help="validate the config file + KASSA_AGENT_* environment + flags and print the result"
    )
    add_config_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print the effective config as JSON")
    parser.set_defaults(func=config_check_command)
    return parser


def redacted(config: AgentConfig) -> dict[str, Any]:
    def scrub(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: ("***" if k in SECRET_KEYS and v else scrub(v)) for k, v in node.items()}
        if isinstance(node, list):
            return [scrub(item) for item in node]
        return node

    result: dict[str, Any] = scrub(as_builtins(config))
    return result


def config_check_command(args: argparse.Namespace) -> int:
    source = config_path(args.config, os.environ)
    try:
        config = config_from_args(args)
    except ConfigError as exc:
        print(f"config: {source or '(no file)'}", file=sys.stderr)
        print(exc, file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(redacted(config), ensure_ascii=False, indent=2))
        return 0
    env_used = sorted(k for k in os.environ if k.startswith(ENV_PREFIX) and k != CONFIG_PATH_ENV)
    print(f"config OK: {source or '(no file: environment and flags only)'}")
    if env_used:
        print(f"  from environment: {', '.join(env_used)}")
    print(f"  agent id:  {config.agent_id}")
    print(f"  broker:    {config.broker.host}:{config.broker.port} ({'TLS' if config.broker.tls else 'plain'})")
    print(f"  outbox:    {config.outbox.path} (max {config.outbox.max_bytes} bytes, ack mode {config.ack_mode})")
    print(f"  heartbeat: {config.heartbeat:g} s; health file: {config.health_file or '(none)'}")
    actions = ", ".join(config.actions.allow) if config.actions.enabled else "off ([actions] enabled = false)"
    print(f"  remote actions allowed: {actions or '(none)'}")
    for index, device in enumerate(config.devices):
        baud = device.baudrate or "default"
        ident = f" as {device.register_id}" if device.register_id else ""
        print(f"  device[{index}]: {device.protocol} {device.url} @ {baud}, every {device.poll_interval:g} s{ident}")
    return 0
