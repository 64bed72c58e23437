"""``kassa-collector run``: ingest MQTT into the database, evaluate alerts, serve the web app."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Any

from collector.config import CollectorConfigError, load_config
from collector.gc_tuning import tune_for_ingest
from collector.service import CollectorService


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("run", help="run the collector (ingest, alerts, web)")
    parser.add_argument("--config", type=Path, help="TOML file (default: $KASSA_COLLECTOR_CONFIG)")
    parser.add_argument("--broker", help="mqtt://host:1883, mqtts://host:8883 or nats://host:4222 (a NATS cluster)")
    parser.add_argument("--db", help="sqlite:///collector.db or postgresql://user@host/db")
    parser.add_argument("--listen", metavar="HOST:PORT", help="where the web app listens")
    parser.add_argument("--client-id", help="MQTT client id (fixed: it names the persistent session)")
    parser.add_argument(
        "--shared", action="store_true", default=None, help="subscribe under $share/<group>/ to scale out"
    )
    parser.add_argument("--batch-rows", type=int, help="messages per transaction at most")
    parser.add_argument("--batch-delay", type=float, metavar="SECONDS", help="longest wait for a batch")
    parser.add_argument("--evaluator-period", type=float, metavar="SECONDS", help="full re-evaluation period")
    parser.add_argument(
        "--company", metavar="NAME_OR_INN",
        help="single-company install: agents nobody enrolled appear under «Новые кассы» of this company",
    )
    parser.add_argument(
        "--enforce-enrollment", action=argparse.BooleanOptionalAction, default=None,
        help="refuse agents nobody enrolled (default: on unless --company is given)",
    )
    parser.add_argument("--smtp-host", help="SMTP server for alert and account e-mail ([notify] smtp_host)")
    parser.add_argument("--smtp-port", type=int, help="SMTP port (default 587, STARTTLS)")
    parser.add_argument("--public-url", help="base URL of the web UI, used in e-mail links")
    parser.add_argument(
        "--web-auth", choices=("accounts", "token", "open"), help="who may use the web app (default accounts)"
    )
    parser.add_argument("--no-web", action="store_true", help="ingest only, even if collector.web exists")
    parser.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    parser.set_defaults(func=run)


def overrides_from_args(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "broker_url": args.broker,
        "db_url": args.db,
        "listen": args.listen,
        "client_id": args.client_id,
        "shared": args.shared,
        "batch_max_rows": args.batch_rows,
        "batch_max_delay": args.batch_delay,
        "evaluator_period": args.evaluator_period,
        "enforce_enrollment": args.enforce_enrollment,
        "company": args.company,
        "notify_smtp_host": args.smtp_host,
        "notify_smtp_port": args.smtp_port,
        "notify_public_url": args.public_url,
        "web_auth": args.web_auth,
    }


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = load_config(args.config, env=os.environ, overrides=overrides_from_args(args))
    except CollectorConfigError as exc:
        print(f"kassa-collector run: {exc}", file=sys.stderr)
        return 2
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    tune_for_ingest()
    service = CollectorService(config, serve_web=not args.no_web)
    try:
        service.run(stop)
    except CollectorConfigError as exc:
        print(f"kassa-collector run: {exc}", file=sys.stderr)
        return 2
    return 0
