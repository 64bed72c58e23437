"""The register list as CSV: one row per ``RegisterSummary``, the same items the JSON list returns.

Written for spreadsheets used in Russia: ``;`` as the separator (Excel's list separator under a
Russian locale) and a UTF-8 byte-order mark so Cyrillic store names open correctly.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable
from datetime import date, datetime

from collector.web.shared.fleet_models import RegisterSummary

CSV_MEDIA_TYPE = "text/csv"
DELIMITER = ";"


def _text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)


COLUMNS: tuple[tuple[str, Callable[[RegisterSummary], object]], ...] = (
    ("register_id", lambda r: r.register_id),
    ("serial", lambda r: r.serial),
    ("rnm", lambda r: r.rnm),
    ("protocol", lambda r: r.protocol),
    ("model", lambda r: r.model),
    ("node_id", lambda r: r.node.id if r.node else None),
    ("node_path", lambda r: " / ".join(r.node.path) if r.node else None),
    ("agent_id", lambda r: r.agent_id),
    ("online", lambda r: r.online),
    ("link_up", lambda r: r.link_up),
    ("shift_status", lambda r: r.shift.status),
    ("shift_opened_at", lambda r: r.shift.opened_at),
    ("fn_serial", lambda r: r.fn.serial),
    ("fn_valid_until", lambda r: r.fn.valid_until),
    ("fn_warnings", lambda r: ",".join(r.fn.warnings)),
    ("ofd_unsent_count", lambda r: r.ofd.unsent_count),
    ("ofd_first_unsent_at", lambda r: r.ofd.first_unsent_at),
    ("worst_severity", lambda r: r.worst_severity),
    ("active_alerts", lambda r: ",".join(f"{a.rule}:{a.severity}" for a in r.active_alerts)),
    ("time_to_block_seconds", lambda r: r.time_to_block_seconds),
    ("blocks_at", lambda r: r.blocks_at),
    ("block_cause", lambda r: r.block_cause),
    ("last_seen", lambda r: r.last_seen),
)


def registers_csv(items: Iterable[RegisterSummary]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=DELIMITER, lineterminator="\r\n")
    writer.writerow(name for name, _ in COLUMNS)
    for item in items:
        writer.writerow(_text(get(item)) for _, get in COLUMNS)
    return buffer.getvalue().encode("utf-8-sig")
