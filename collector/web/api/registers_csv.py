"""The register list as CSV: one row per ``RegisterSummary``, the same items the JSON list returns,
written by the one CSV writer of every export (``csv_writer``: formula-safe cells, ``;``, BOM).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from collector.web.api.csv_writer import CSV_MEDIA_TYPE, csv_document
from collector.web.shared.fleet_models import RegisterSummary

__all__ = ["COLUMNS", "CSV_MEDIA_TYPE", "registers_csv"]

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
    ("sell_status", lambda r: r.sell_status),
    ("sell_text", lambda r: r.sell_text),
    ("fix", lambda r: r.fix),
    ("ofd_note", lambda r: r.ofd_note),
    ("last_seen", lambda r: r.last_seen),
)


def registers_csv(items: Iterable[RegisterSummary]) -> bytes:
    return csv_document((name for name, _ in COLUMNS), ([get(item) for _, get in COLUMNS] for item in items))
