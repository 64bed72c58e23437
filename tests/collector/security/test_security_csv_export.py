"""CSV formula injection (issue 13, item 7): what agents report lands in the register export; a
cell a spreadsheet would run as a formula is exported as text (a leading ``'``), through the
running app on both backends."""

from __future__ import annotations

import csv
import io
import re
import sys
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import security_testkit as kit

from collector.storage.engine import begin_write
from collector.storage.ingest import ensure_register
from collector.storage.rows import RegisterIdentity
from collector.web.api.csv_writer import FORMULA_STARTS, cell_text, csv_document

PAYLOAD = "@SUM(1+1)*cmd|'/C calc'!A0"  # the ФН serial of the report
HOSTILE = {
    "fn_serial": PAYLOAD,
    "serial": "=HYPERLINK(\"http://e.test\";\"x\")",
    "rnm": "+cmd|' /C notepad'!A0",
    "model": "-2+3+cmd|' /C calc'!A0",
}


def _export(client: kit.Client, **params: str) -> list[dict[str, str]]:
    reply = client.call("GET", "/api/v1/registers.csv", who="owner_a", params=params)
    assert reply.status == 200 and reply.media_type == "text/csv"
    return list(csv.DictReader(io.StringIO(reply.body.decode("utf-8-sig")), delimiter=";"))


def test_agent_reported_formulas_are_exported_as_text(make_client: Any, fresh_world: kit.World, engine: Any) -> None:
    register, agent = fresh_world.registers["tverskaya"], fresh_world.a["{agent_id}"]
    with begin_write(engine) as conn:  # what the ingest stores from the agent's state message
        ensure_register(conn, RegisterIdentity(register, "shtrih", **HOSTILE), agent_id=agent, seen_at=kit.T0)
    client = make_client(on=fresh_world)
    listed = client.call("GET", f"/api/v1/registers/{register}", who="owner_a").json
    assert listed["fn"]["serial"] == PAYLOAD  # stored and shown as reported: only the export escapes

    rows = {row["register_id"]: row for row in _export(client)}
    exported = rows[register]
    for column, value in HOSTILE.items():
        assert exported[column] == "'" + value, column
    assert not [
        (row["register_id"], column, cell)
        for row in rows.values() for column, cell in row.items() if cell.startswith(FORMULA_STARTS)
    ]
    assert len(_export(client, q=PAYLOAD)) == 1  # the search still finds it by the real value


@pytest.mark.parametrize("start", FORMULA_STARTS)
def test_every_formula_start_is_neutralised(start: str) -> None:
    text = csv_document(["a", "b"], [[start + "cmd", "ok" + start]]).decode("utf-8-sig")
    assert list(csv.reader(io.StringIO(text, newline=""), delimiter=";"))[1] == ["'" + start + "cmd", "ok" + start]


def test_values_of_our_own_stay_as_they_are() -> None:
    assert cell_text(-3600) == "-3600"  # a register blocked an hour ago: a number, not a formula
    assert cell_text(-0.5) == "-0.5"
    assert cell_text(False) == "false"
    assert cell_text(datetime(2026, 12, 1, 9, 0)) == "2026-12-01T09:00:00"
    assert cell_text(date(2026, 12, 1)) == "2026-12-01"
    assert cell_text(None) == ""
    assert cell_text("-3600") == "'-3600"  # the same digits from outside are text


def test_every_csv_the_collector_writes_goes_through_the_one_writer() -> None:
    """A new export (contracts, audit…) must use ``csv_document``, never its own ``csv.writer``."""
    collector = Path(__file__).resolve().parents[3] / "collector"
    writers = sorted(
        str(path.relative_to(collector))
        for path in collector.rglob("*.py")
        if re.search(r"csv\.(writer|DictWriter)\(", path.read_text(encoding="utf-8"))
    )
    assert writers == ["web/api/csv_writer.py"]
