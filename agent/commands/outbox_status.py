"""``kassa-agent outbox status``: what the local outbox holds, for installers and support."""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from agent.config import ConfigError, load_outbox_config


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    outbox_parser: argparse.ArgumentParser = subparsers.add_parser("outbox", help="local outbox tools")
    inner = outbox_parser.add_subparsers(dest="outbox_command", required=True)
    parser: argparse.ArgumentParser = inner.add_parser(
        "status", help="records waiting to be sent or acknowledged, drops, oldest record"
    )
    parser.add_argument("--config", type=Path, help="agent config (for the outbox path)")
    parser.add_argument("--outbox", type=Path, help="outbox file (overrides the config)")
    parser.add_argument("--json", action="store_true")
    parser.set_defaults(func=outbox_status_command)
    return parser


def outbox_path(args: argparse.Namespace) -> Path:
    if args.outbox is not None:
        return Path(args.outbox)
    try:
        return load_outbox_config(args.config, env=os.environ).path
    except ConfigError as exc:
        raise SystemExit(f"{exc}\n(give the file with --outbox)") from None


def outbox_status_command(args: argparse.Namespace) -> int:
    from agent.outbox import Outbox, OutboxError

    path = outbox_path(args)
    if not path.exists():
        print(f"no outbox at {path} (the agent has not run yet, or another path is configured)", file=sys.stderr)
        return 1
    try:
        outbox = Outbox(path)
    except OutboxError as exc:
        print(exc, file=sys.stderr)
        return 1
    try:
        stats = outbox.stats()
        oldest = outbox.oldest()
        refusal = outbox.refusal()
        epoch, _ = outbox.epoch()
    finally:
        outbox.close()
    age = (datetime.now(UTC) - stats.oldest_at).total_seconds() if stats.oldest_at else None
    report: dict[str, Any] = {
        "path": str(path),
        "depth": stats.depth,
        "states": stats.states,
        "events": stats.events,
        "bytes": stats.bytes,
        "awaiting_ack": stats.awaiting_ack,
        "oldest_at": stats.oldest_at.isoformat() if stats.oldest_at else None,
        "oldest_age_seconds": round(age, 1) if age is not None else None,
        "oldest_record": f"{oldest.kind} session {oldest.session} seq {oldest.seq}" if oldest else None,
        "dropped_states_total": stats.dropped_states_total,
        "dropped_events_total": stats.dropped_events_total,
        "unreported_gap": stats.pending_gap.as_data() if stats.pending_gap else None,
        "ack_mode": stats.ack_mode,
        "epoch": epoch,
        "refused": refusal,
    }
    if args.json:
        print(json.dumps(report, ensure_ascii=False, indent=2))
        return 0
    print(f"outbox {path}")
    if refusal is not None:
        print(f"  REFUSED by the collector since {refusal['since']}: {refusal['reason']} ({refusal['detail']});")
        print("            nothing sent is stored: enroll this agent (kassa-agent enroll) or ask the operator")
    print(f"  waiting:  {stats.depth} record(s) ({stats.states} states, {stats.events} events), {stats.bytes} bytes")
    print(f"  published, awaiting the collector's ack: {stats.awaiting_ack}")
    if oldest is not None and age is not None:
        print(f"  oldest:   {report['oldest_record']}, {age / 60:.1f} min old")
    print(f"  dropped since install: {stats.dropped_states_total} states, {stats.dropped_events_total} events")
    print(f"  installation: epoch {epoch} (a new outbox file starts a new one; the collector keeps both apart)")
    if stats.pending_gap is not None:
        print(f"  not yet reported: {stats.pending_gap.describe()}")
    return 0
