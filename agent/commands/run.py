"""``kassa-agent run``: poll the configured registers and publish them until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import Any

from msgspec.structs import replace

from agent.config import AgentConfig, ConfigError, load_config, parse_device_spec
from agent.logging_setup import configure_logging

log = logging.getLogger(__name__)
EXIT_THREAD_FAILED = 1


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags shared by ``run`` and ``config check``; each overrides the file and the environment."""
    parser.add_argument("--config", type=Path, help="TOML file (default: $KASSA_AGENT_CONFIG or /etc/kassa-agent/agent.toml)")
    parser.add_argument("--broker", help="mqtt://host:1883 or mqtts://host:8883")
    parser.add_argument("--agent-id", help="agent id: MQTT client id and username")
    parser.add_argument(
        "--device", action="append", default=[], metavar="PROTOCOL,URL[,BAUD]",
        help="a register to poll (repeatable); replaces the devices of the file",
    )
    parser.add_argument("--outbox", type=Path, help="outbox SQLite file")
    parser.add_argument("--poll", type=float, metavar="SECONDS", help="poll interval for every device")
    parser.add_argument("--heartbeat", type=float, metavar="SECONDS", help="publish unchanged state this often")
    parser.add_argument("--ack-mode", choices=("collector", "puback"))
    parser.add_argument("--health-file", type=Path)
    parser.add_argument("--log-format", choices=("json", "text"))
    parser.add_argument("--log-level", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    parser.add_argument(
        "--allow-actions", metavar="LIST",
        help="remote actions this PC allows, comma-separated (default: check_now,x_report)",
    )
    parser.add_argument("--no-remote-actions", action="store_true", help="refuse every remote action")


def overrides_from_args(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if args.broker:
        out["broker"] = {"url": args.broker}
    if args.agent_id:
        out["agent_id"] = args.agent_id
    if args.outbox:
        out.setdefault("outbox", {})["path"] = str(args.outbox)
    for key in ("heartbeat", "ack_mode", "health_file", "log_format", "log_level"):
        value = getattr(args, key)
        if value is not None:
            out[key] = str(value) if isinstance(value, Path) else value
    if args.allow_actions is not None:
        out.setdefault("actions", {})["allow"] = args.allow_actions
    if args.no_remote_actions:
        out.setdefault("actions", {})["enabled"] = False
    if args.device:
        out["devices"] = [parse_device_spec(spec, args.poll) for spec in args.device]
    return out


def config_from_args(args: argparse.Namespace) -> AgentConfig:
    config = load_config(args.config, env=os.environ, overrides=overrides_from_args(args))
    if args.poll is not None and not args.device:
        # --poll with devices from the file applies to each of them.
        devices = [replace(d, poll_interval=args.poll) for d in config.devices]
        config = replace(config, devices=devices)
    return config


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "run", help="poll the registers and publish to MQTT (the service entry point)"
    )
    add_config_arguments(parser)
    parser.set_defaults(func=run_command)
    return parser


def run_command(args: argparse.Namespace) -> int:
    try:
        config = config_from_args(args)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    configure_logging(config.log_format, config.log_level)
    import sqlite3

    from agent.outbox import OutboxError
    from agent.runtime import AgentRuntime  # paho and sqlite only when actually running

    try:
        runtime = AgentRuntime(config)
    except (OSError, sqlite3.Error, OutboxError) as exc:  # sqlite3.Error: e.g. no space for a new session
        log.critical("cannot open the outbox %s: %s", config.outbox.path, exc)  # JSON too with --log-format json
        return 1

    def request_stop(signum: int, frame: FrameType | None) -> None:
        log.info("signal %s: stopping", signal.Signals(signum).name)
        runtime.stopping.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    runtime.run_forever()
    if runtime.failure is not None:
        # Non-zero so systemd (Restart=on-failure) starts a fresh process.
        log.critical(
            "agent stopped: thread %s cannot recover: %s", runtime.failure.thread, runtime.failure.error,
            extra={"agent_thread": runtime.failure.thread},
        )
        return EXIT_THREAD_FAILED
    return 0
