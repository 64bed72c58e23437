"""Fuzz: the CSV imports (``collector/accounts``: csvrows, tree_import, contracts) on SQLite and
PostgreSQL, with any text and with CSV made of the columns the importers know and hostile cells.

Property: an import always gives a report — never an exception — whose errors name a line; a
report with errors, or a dry run, changes nothing; an applied import, run again as a dry run,
plans nothing new (the tree import creates nothing twice).
"""

from __future__ import annotations

import csv
import io
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from hypothesis import example, given
from hypothesis import strategies as st

from collector.accounts.audit import Actor
from collector.accounts.contracts import import_contracts_csv
from collector.accounts.csvrows import ImportReport, read_rows
from collector.accounts.tree_import import REGISTER_COLUMNS, import_tree_csv
from collector.storage.schema import nodes, ofd_contracts, registers

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[1] / "collector"))
import accounts_testkit as accounts
from accounts_testkit import *  # noqa: F403  (the shared fixtures: conn, engine, mailer, service, world)
from fuzzkit import FUZZ, FUZZ_DB

CLI = Actor.cli()
Importer = Callable[..., ImportReport]
IMPORTERS: dict[str, tuple[Importer, list[str]]] = {
    "tree": (import_tree_csv, ["brand", "city", "store", *sorted(REGISTER_COLUMNS)]),
    "contracts": (import_contracts_csv, ["register_id", "activated", "paid_until", "tariff"]),
}
CELLS = st.sampled_from(
    ["Ромашка Маркет", "Москва", "Арбат 5", "Казань", "Тверская 1", "kkt-arbat", "kkt-nevsky", "kkt-b_store",
     "kkt-new", "atol", "shtrih", "да", "нет", "yes", "2027-03-31", "31.02.2027", "0001-01-01", "", " ", "\x00",
     '"', ";", ",", "\n", "\r", "a" * 300, "=1+1", "\ufeff"]
) | st.text(max_size=12)


@st.composite
def csv_texts(draw: st.DrawFn, columns: list[str]) -> str:
    header = draw(st.lists(st.sampled_from([*columns, "x"]), min_size=1, max_size=len(columns) + 1))
    rows = draw(st.lists(st.lists(CELLS, min_size=0, max_size=len(header) + 1), max_size=5))
    delimiter = draw(st.sampled_from([";", ","]))
    if draw(st.booleans()):  # well quoted, as a spreadsheet writes it
        out = io.StringIO()
        csv.writer(out, delimiter=delimiter).writerows([header, *rows])
        return out.getvalue()
    return "\n".join(delimiter.join(row) for row in [header, *rows])  # raw: quotes and breaks as they come


def _footprint(conn: sa.Connection, tenant_id: int) -> tuple[Any, ...]:
    """Everything an import may change in the tenant."""
    def rows(query: sa.Select[Any]) -> list[Any]:
        return sorted(tuple(r) for r in conn.execute(query))

    return (
        rows(sa.select(nodes.c.id, nodes.c.parent_id, nodes.c.name).where(nodes.c.tenant_id == tenant_id)),
        rows(sa.select(registers.c.register_id, registers.c.node_id).where(registers.c.tenant_id == tenant_id)),
        rows(sa.select(ofd_contracts)),
    )


@FUZZ
@given(st.text(), st.sampled_from(sorted(IMPORTERS)))
def test_read_rows_takes_any_text(text: str, which: str) -> None:
    report = ImportReport()
    columns = IMPORTERS[which][1]
    for row in read_rows(text, report, required={columns[0]}, optional=set(columns[1:])):
        assert row.line >= 2 and set(row.values) <= set(columns)
    assert all(error.line >= 1 and error.message for error in report.errors)


imports = st.sampled_from(sorted(IMPORTERS)).flatmap(lambda w: st.tuples(st.just(w), csv_texts(IMPORTERS[w][1])))


@FUZZ_DB
@given(imports, st.booleans())
@example(("tree", "store\nА\x00Б\n"), False)  # PostgreSQL text cannot hold NUL
@example(("contracts", "register_id,activated,tariff\nkkt-arbat,да,\x00\n"), False)
def test_import_reports_by_line_and_applies_all_or_nothing(
    conn: sa.Connection, world: accounts.World, which_and_text: tuple[str, str], dry_run: bool
) -> None:
    which, text = which_and_text
    importer, _columns = IMPORTERS[which]
    tenant = world.a.tenant_id
    before = _footprint(conn, tenant)
    report = importer(conn, CLI, tenant, text, at=accounts.T0, dry_run=dry_run)
    assert all(error.line >= 1 and error.message for error in report.errors)
    assert report.applied == (report.ok and not dry_run)
    if not report.applied:
        assert _footprint(conn, tenant) == before
        return
    again = importer(conn, CLI, tenant, text, at=accounts.T0, dry_run=True)
    assert again.ok, again.errors
    assert not [change for change in again.changes if " create " in change or ": add register" in change]
