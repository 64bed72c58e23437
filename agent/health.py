"""A tiny JSON health file for installers and monitoring scripts, replaced atomically."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any


@dataclass
class DeviceHealth:
    register_id: str
    protocol: str
    url: str
    link_up: bool = False
    last_poll: datetime | None = None
    last_ok: datetime | None = None
    error: str | None = None


@dataclass
class ThreadHealth:
    name: str
    alive: bool
    restarts: int = 0  # restarts after errors since the agent started
    last_error: str | None = None


@dataclass(frozen=True)
class ThreadFailure:
    """The thread that could not recover, which made the agent exit non-zero."""

    thread: str
    error: str
    at: datetime


@dataclass
class HealthReport:
    agent_id: str
    written_at: datetime
    broker_connected: bool
    session: int | None
    outbox_depth: int | None  # None: the outbox could not be read
    devices: list[DeviceHealth] = field(default_factory=list)
    threads: list[ThreadHealth] = field(default_factory=list)
    failure: ThreadFailure | None = None
    refused: dict[str, Any] | None = None  # the collector refuses this agent: reason, detail, since

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(json.dumps(asdict(self), default=_iso))
        return data


def _iso(value: object) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def write_health(path: Path, report: HealthReport) -> None:
    """Write to a temp file in the same directory, then rename: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".health-", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(report.to_json(), fh, ensure_ascii=False)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_health(path: Path) -> dict[str, Any]:
    with path.open(encoding="utf-8") as fh:
        data: dict[str, Any] = json.load(fh)
    return data
