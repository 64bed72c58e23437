"""Bulk import of stores and registers from CSV, with a dry run that reports errors by line.

Columns: one per level of the tenant's tree below the root (named like the levels, e.g.
``brand;city;store``; the store column is required, an empty cell skips that level), then
optional ``register_id``, ``protocol`` (needed for a register the collector has not seen yet)
and ``serial``. Existing nodes are matched by name under the same parent, missing ones are
created. Every row is checked first; the changes are applied in one savepoint only when no
line has an error, so a broken file changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from collector.accounts.audit import Actor
from collector.accounts.csvrows import CsvRow, ImportReport, read_rows
from collector.accounts.errors import InvalidInput
from collector.accounts.names import clean_name
from collector.accounts.rights import Permission, authorize
from collector.accounts.tree import (
    MAX_REGISTER_ID_LENGTH,
    PROTOCOLS,
    find_root,
    insert_node,
    place_register,
)
from collector.accounts.tree_levels import Level, levels
from collector.storage.schema import nodes, registers

REGISTER_COLUMNS = {"register_id", "protocol", "serial"}


@dataclass(frozen=True, slots=True)
class _NewNode:
    temp_id: int  # negative until created
    parent_id: int  # real id, or the temp id of a node planned earlier in the file
    kind: str
    name: str
    line: int


@dataclass(frozen=True, slots=True)
class _Placement:
    register_id: str
    store_id: int
    protocol: str | None  # set when the register is new
    serial: str | None
    line: int


@dataclass
class _Plan:
    children: dict[tuple[int, str], tuple[int, str]]  # (parent, name) -> (node id, kind)
    names: dict[int, str]
    new_nodes: list[_NewNode]
    placements: list[_Placement]


def _load_plan(conn: sa.Connection, tenant_id: int) -> _Plan:
    rows = conn.execute(
        sa.select(nodes.c.id, nodes.c.parent_id, nodes.c.kind, nodes.c.name).where(
            nodes.c.tenant_id == tenant_id
        )
    )
    children: dict[tuple[int, str], tuple[int, str]] = {}
    names: dict[int, str] = {}
    for r in rows:
        names[r.id] = r.name
        if r.parent_id is not None:
            children[(r.parent_id, r.name)] = (r.id, r.kind)
    return _Plan(children, names, [], [])


def _place_row(
    plan: _Plan, row: CsvRow, root_id: int, below_root: list[Level], report: ImportReport
) -> int | None:
    """Walk/plan the row's path from the root; the store's (possibly temporary) id, or None on error."""
    store_level = below_root[-1].name
    if not row.values.get(store_level):
        report.error(row.line, f"the {store_level!r} column is empty")
        return None
    parent = root_id
    for level in below_root:
        raw = row.values.get(level.name, "")
        if not raw:
            continue
        try:
            name = clean_name(raw)
        except InvalidInput as exc:
            report.error(row.line, f"{level.name}: {exc}")
            return None
        found = plan.children.get((parent, name))
        if found is None:
            temp = -(len(plan.new_nodes) + 1)
            plan.new_nodes.append(_NewNode(temp, parent, level.name, name, row.line))
            plan.children[(parent, name)] = (temp, level.name)
            plan.names[temp] = name
            report.changes.append(
                f"line {row.line}: create {level.name} {name!r} under {plan.names[parent]!r}"
            )
            parent = temp
        elif found[1] != level.name:
            report.error(
                row.line, f"{name!r} under {plan.names[parent]!r} is a {found[1]}, not a {level.name}"
            )
            return None
        else:
            parent = found[0]
    return parent


def _plan_register(
    conn: sa.Connection,
    tenant_id: int,
    plan: _Plan,
    row: CsvRow,
    store_id: int,
    seen: dict[str, int],
    report: ImportReport,
) -> None:
    register_id = row.values.get("register_id", "")
    if not register_id:
        return
    if len(register_id) > MAX_REGISTER_ID_LENGTH or len(row.values.get("serial", "")) > 40:
        report.error(
            row.line, f"register_id must be at most {MAX_REGISTER_ID_LENGTH} characters, serial at most 40"
        )
        return
    if register_id in seen:
        report.error(row.line, f"register {register_id!r} is already listed on line {seen[register_id]}")
        return
    seen[register_id] = row.line
    owner = conn.execute(
        sa.select(registers.c.tenant_id).where(registers.c.register_id == register_id)
    ).first()
    protocol = row.values.get("protocol", "").lower() or None
    if owner is not None and owner.tenant_id != tenant_id:
        report.error(row.line, f"register {register_id!r} belongs to another account and cannot be imported")
        return
    if owner is None and protocol not in PROTOCOLS:
        report.error(
            row.line, f"register {register_id!r} is new: give its protocol ({' or '.join(PROTOCOLS)})"
        )
        return
    plan.placements.append(
        _Placement(
            register_id,
            store_id,
            protocol if owner is None else None,
            row.values.get("serial") or None,
            row.line,
        )
    )
    report.changes.append(
        f"line {row.line}: {'add' if owner is None else 'place'} register {register_id!r} in {plan.names[store_id]!r}"
    )


def import_tree_csv(
    conn: sa.Connection, actor: Actor, tenant_id: int, text: str, *, at: datetime, dry_run: bool
) -> ImportReport:
    authorize(conn, actor, tenant_id, Permission.MANAGE_TREE, None)
    authorize(conn, actor, tenant_id, Permission.MANAGE_REGISTERS, None)
    report = ImportReport()
    below_root = levels(conn, tenant_id)[1:]
    plan = _load_plan(conn, tenant_id)
    root_id = find_root(conn, tenant_id)
    seen: dict[str, int] = {}
    for row in read_rows(
        text,
        report,
        required={below_root[-1].name},
        optional={lv.name for lv in below_root} | REGISTER_COLUMNS,
    ):
        store_id = _place_row(plan, row, root_id, below_root, report)
        if store_id is not None:
            _plan_register(conn, tenant_id, plan, row, store_id, seen, report)
    if report.errors or dry_run:
        return report
    with conn.begin_nested():
        _apply(conn, actor, tenant_id, plan, at)
    report.applied = True
    return report


def _apply(conn: sa.Connection, actor: Actor, tenant_id: int, plan: _Plan, at: datetime) -> None:
    real: dict[int, int] = {}
    for new in plan.new_nodes:
        parent = real.get(new.parent_id, new.parent_id)
        real[new.temp_id] = insert_node(
            conn, actor, tenant_id, parent, new.kind, new.name, at=at, import_line=new.line
        )
    for placement in plan.placements:
        store_id = real.get(placement.store_id, placement.store_id)
        if placement.protocol is not None:
            # Known before its agent reports: first/last seen are the import time.
            conn.execute(
                sa.insert(registers).values(
                    register_id=placement.register_id,
                    tenant_id=tenant_id,
                    protocol=placement.protocol,
                    serial=placement.serial,
                    first_seen=at,
                    last_seen=at,
                )
            )
        place_register(
            conn, actor, tenant_id, placement.register_id, store_id, at=at, import_line=placement.line
        )
