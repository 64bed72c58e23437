"""The company tree: levels, moves (no cycles, no cross-tenant), deletion only when empty,
registers in stores, tags, and the CSV import with its dry run and all-or-nothing apply."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collector.accounts.audit import Actor, list_entries
from collector.accounts.contracts import import_contracts_csv
from collector.accounts.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from collector.accounts.rights import Role
from collector.accounts.tree import (
    attach_register,
    create_node,
    create_tag,
    delete_node,
    get_node,
    levels,
    move_node,
    rename_node,
    set_levels,
    set_register_tag,
)
from collector.accounts.tree_import import import_tree_csv
from collector.storage import repository as repo
from collector.storage.schema import nodes, registers
from collector.storage.scope import Scope

sys.path.insert(0, str(Path(__file__).parent))
import accounts_testkit as kit
from accounts_testkit import *  # noqa: F403  (the shared fixtures: conn, engine, mailer, service, world)

T0 = kit.T0
CLI = Actor.cli()


def _count(conn: sa.Connection, table: sa.Table, tenant_id: int) -> int:
    return int(
        conn.execute(
            sa.select(sa.func.count()).select_from(table).where(table.c.tenant_id == tenant_id)
        ).scalar_one()
    )


def test_sign_up_gives_default_levels_root_first_store_last(conn, world) -> None:
    names = [lv.name for lv in levels(conn, world.a.tenant_id)]
    assert names[0] == "company" and names[-1] == "store"
    assert [lv.holds_registers for lv in levels(conn, world.a.tenant_id)] == [False] * (len(names) - 1) + [
        True
    ]


def test_levels_are_per_tenant_and_order_is_enforced(conn, world) -> None:
    set_levels(conn, CLI, world.b.tenant_id, ["company", "store", "region", "магазин"], at=T0)
    with pytest.raises(Conflict, match="still used"):
        set_levels(conn, CLI, world.a.tenant_id, ["company", "store"], at=T0)
    with pytest.raises(Conflict, match="a city sits under a brand"):
        set_levels(
            conn,
            CLI,
            world.a.tenant_id,
            ["company", "city", "brand", "region", "legal_entity", "store"],
            at=T0,
        )
    assert [lv.name for lv in levels(conn, world.b.tenant_id)][-1] == "магазин"
    with pytest.raises(InvalidInput, match="cannot be placed under"):
        create_node(
            conn, CLI, world.a.tenant_id, parent_id=world.nodes["moscow"], kind="brand", name="X", at=T0
        )
    with pytest.raises(InvalidInput, match="unknown level"):
        create_node(
            conn, CLI, world.a.tenant_id, parent_id=world.nodes["moscow"], kind="planet", name="X", at=T0
        )
    with pytest.raises(InvalidInput):  # a store is a leaf
        create_node(
            conn, CLI, world.a.tenant_id, parent_id=world.nodes["arbat"], kind="store", name="X", at=T0
        )


def test_sibling_names_are_unique(conn, world) -> None:
    with pytest.raises(Conflict, match="already has"):
        create_node(
            conn,
            CLI,
            world.a.tenant_id,
            parent_id=world.nodes["moscow"],
            kind="store",
            name=" Арбат  5 ",
            at=T0,
        )
    with pytest.raises(Conflict):
        rename_node(conn, CLI, world.a.tenant_id, world.nodes["arbat"], "Тверская 1", at=T0)
    rename_node(conn, CLI, world.a.tenant_id, world.nodes["arbat"], "Арбат 7", at=T0)
    assert get_node(conn, world.a.tenant_id, world.nodes["arbat"]).name == "Арбат 7"


def test_moving_a_subtree_updates_paths_and_scopes(conn, world) -> None:
    n = world.nodes
    region = create_node(
        conn, CLI, world.a.tenant_id, parent_id=n["brand"], kind="region", name="Центр", at=T0
    )
    move_node(conn, CLI, world.a.tenant_id, n["moscow"], region, at=T0)
    assert get_node(conn, world.a.tenant_id, n["arbat"]).path.startswith(
        get_node(conn, world.a.tenant_id, region).path
    )
    rows, _ = repo.list_registers(conn, Scope.subtrees(world.a.tenant_id, [region]))
    assert {r.register_id for r in rows} == {world.registers["tverskaya"], world.registers["arbat"]}
    assert "node.move" in {e.action for e in list_entries(conn, world.a.tenant_id, target_type="node")}


def test_cycles_are_rejected(conn, world) -> None:
    n = world.nodes
    with pytest.raises(InvalidInput, match="below itself"):
        move_node(conn, CLI, world.a.tenant_id, n["brand"], n["moscow"], at=T0)
    with pytest.raises(InvalidInput, match="below itself"):
        move_node(conn, CLI, world.a.tenant_id, n["moscow"], n["moscow"], at=T0)
    with pytest.raises(InvalidInput, match="root"):
        move_node(conn, CLI, world.a.tenant_id, world.a.root_node_id, n["brand"], at=T0)


def test_cross_tenant_moves_are_rejected(conn, world) -> None:
    with pytest.raises(NotFound):
        move_node(conn, CLI, world.a.tenant_id, world.nodes["moscow"], world.b.root_node_id, at=T0)
    with pytest.raises(NotFound):
        move_node(conn, CLI, world.b.tenant_id, world.nodes["moscow"], world.b.root_node_id, at=T0)
    with pytest.raises(NotFound):
        attach_register(conn, CLI, world.a.tenant_id, world.registers["arbat"], world.nodes["b_store"], at=T0)


def test_delete_only_when_empty(conn, world) -> None:
    n = world.nodes
    with pytest.raises(Conflict, match="child nodes"):
        delete_node(conn, CLI, world.a.tenant_id, n["spb"], at=T0)
    with pytest.raises(Conflict, match="registers"):
        delete_node(conn, CLI, world.a.tenant_id, n["nevsky"], at=T0)
    attach_register(conn, CLI, world.a.tenant_id, world.registers["nevsky"], n["arbat"], at=T0)
    kit.user_with_role(conn, world.a.tenant_id, "g@romashka.test", Role.VIEWER, n["nevsky"])
    with pytest.raises(Conflict, match="grants"):
        delete_node(conn, CLI, world.a.tenant_id, n["nevsky"], at=T0)
    empty = create_node(conn, CLI, world.a.tenant_id, parent_id=n["spb"], kind="store", name="Пусто", at=T0)
    delete_node(conn, CLI, world.a.tenant_id, empty, at=T0)
    with pytest.raises(NotFound):
        get_node(conn, world.a.tenant_id, empty)
    with pytest.raises(InvalidInput, match="root"):
        delete_node(conn, CLI, world.a.tenant_id, world.a.root_node_id, at=T0)


def test_registers_attach_only_to_stores_and_tags_stay_in_tenant(conn, world) -> None:
    with pytest.raises(InvalidInput, match="registers go into a store"):
        attach_register(conn, CLI, world.a.tenant_id, world.registers["arbat"], world.nodes["moscow"], at=T0)
    tag = create_tag(conn, CLI, world.a.tenant_id, "24/7", at=T0)
    set_register_tag(conn, CLI, world.a.tenant_id, world.registers["arbat"], tag, on=True, at=T0)
    rows, _ = repo.list_registers(conn, Scope.tenant(world.a.tenant_id), tag="24/7")
    assert [r.register_id for r in rows] == [world.registers["arbat"]]
    set_register_tag(conn, CLI, world.a.tenant_id, world.registers["arbat"], tag, on=False, at=T0)
    with pytest.raises(NotFound):
        set_register_tag(conn, CLI, world.b.tenant_id, world.registers["b_store"], tag, on=True, at=T0)


def test_tree_changes_need_manage_tree(conn, world) -> None:
    operator = Actor.user(
        conn,
        kit.user_with_role(conn, world.a.tenant_id, "o@romashka.test", Role.OPERATOR, world.a.root_node_id),
    )
    with pytest.raises(PermissionDenied, match="manage_tree"):
        create_node(
            conn, operator, world.a.tenant_id, parent_id=world.nodes["moscow"], kind="store", name="Z", at=T0
        )
    regional = Actor.user(
        conn,
        kit.user_with_role(conn, world.a.tenant_id, "r@romashka.test", Role.ADMIN, world.nodes["moscow"]),
    )
    create_node(
        conn, regional, world.a.tenant_id, parent_id=world.nodes["moscow"], kind="store", name="Z", at=T0
    )
    with pytest.raises(PermissionDenied):
        move_node(conn, regional, world.a.tenant_id, world.nodes["arbat"], world.nodes["spb"], at=T0)


GOOD_CSV = """brand;city;store;register_id;protocol
Ромашка Маркет;Москва;Арбат 5;kkt-arbat;
Ромашка Маркет;Казань;Баумана 3;kkt-new-1;atol
;Казань;Кремлёвская 1;kkt-new-2;shtrih
Ромашка Маркет;Казань;Баумана 3;;
"""


def test_csv_dry_run_reports_changes_and_writes_nothing(conn, world) -> None:
    before = (_count(conn, nodes, world.a.tenant_id), _count(conn, registers, world.a.tenant_id))
    report = import_tree_csv(conn, CLI, world.a.tenant_id, GOOD_CSV, at=T0, dry_run=True)
    assert report.ok and not report.applied
    assert "line 3: create city 'Казань' under 'Ромашка Маркет'" in report.changes
    assert "line 4: create city 'Казань' under 'Ромашка'" in report.changes  # brand skipped: under the root
    assert (_count(conn, nodes, world.a.tenant_id), _count(conn, registers, world.a.tenant_id)) == before


def test_csv_import_applies_everything(conn, world) -> None:
    report = import_tree_csv(conn, CLI, world.a.tenant_id, GOOD_CSV, at=T0, dry_run=False)
    assert report.ok and report.applied, report.errors
    placed = dict(
        conn.execute(
            sa.select(registers.c.register_id, registers.c.node_id).where(
                registers.c.tenant_id == world.a.tenant_id
            )
        ).all()
    )
    assert placed["kkt-arbat"] == world.nodes["arbat"]
    store = get_node(conn, world.a.tenant_id, placed["kkt-new-1"])
    assert store.name == "Баумана 3" and store.kind == "store"
    assert get_node(conn, world.a.tenant_id, store.parent_id).name == "Казань"
    again = import_tree_csv(conn, CLI, world.a.tenant_id, GOOD_CSV, at=T0, dry_run=True)
    assert again.ok and not any("create" in c for c in again.changes)  # idempotent by names


def test_csv_with_broken_lines_reports_each_by_line_and_applies_nothing(conn, world) -> None:
    broken = (
        "brand,city,store,register_id,protocol\n"
        "Ромашка Маркет,Казань,Новая 1,kkt-ok,atol\n"  # fine on its own
        "Ромашка Маркет,Москва,,kkt-x,atol\n"  # 3: no store
        "Ромашка Маркет,Казань,Новая 2,kkt-b_store,\n"  # 4: another tenant's register
        "Ромашка Маркет,Казань,Новая 3,kkt-unknown,\n"  # 5: new register without protocol
        "Ромашка Маркет,Казань,Новая 4,kkt-ok,atol\n"  # 6: listed twice
        ",Ромашка Маркет,Новая 5,,\n"  # 7: under the root "Ромашка Маркет" is a brand, not a city
        "a,b,c,d,e,f\n"  # 8: too many cells
        f"Ромашка Маркет,Казань,Новая 6,{'k' * 101},atol\n"  # 9: id longer than the column
    )
    before = (_count(conn, nodes, world.a.tenant_id), _count(conn, registers, world.a.tenant_id))
    report = import_tree_csv(conn, CLI, world.a.tenant_id, broken, at=T0, dry_run=False)
    assert not report.applied
    by_line = {e.line: e.message for e in report.errors}
    assert sorted(by_line) == [3, 4, 5, 6, 7, 8, 9], report.errors
    assert "store" in by_line[3] and "another account" in by_line[4] and "protocol" in by_line[5]
    assert "line 2" in by_line[6] and "is a brand, not a city" in by_line[7] and "cells" in by_line[8]
    assert (_count(conn, nodes, world.a.tenant_id), _count(conn, registers, world.a.tenant_id)) == before


def test_csv_header_errors(conn, world) -> None:
    report = import_tree_csv(conn, CLI, world.a.tenant_id, "city,shop\nМосква,X\n", at=T0, dry_run=True)
    assert [e.line for e in report.errors] == [1, 1]
    assert "missing column(s): store" in report.errors[0].message and "shop" in report.errors[1].message
    assert import_tree_csv(conn, CLI, world.a.tenant_id, "", at=T0, dry_run=True).errors[0].line == 1


def test_csv_import_needs_rights(conn, world) -> None:
    viewer = Actor.user(
        conn,
        kit.user_with_role(conn, world.a.tenant_id, "v@romashka.test", Role.VIEWER, world.a.root_node_id),
    )
    with pytest.raises(PermissionDenied):
        import_tree_csv(conn, viewer, world.a.tenant_id, GOOD_CSV, at=T0, dry_run=True)


CSV_ALPHABET = st.sampled_from(
    [*'ab;,"\n\r ', "store", "city", "register_id", "protocol", "atol", "Москва", "\ufeff"]
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.lists(CSV_ALPHABET, max_size=40).map("".join))
def test_any_csv_text_gives_a_report_never_an_exception(conn, world, text: str) -> None:
    for importer in (import_tree_csv, import_contracts_csv):
        report = importer(conn, CLI, world.a.tenant_id, text, at=T0, dry_run=True)
        assert not report.applied
        assert all(error.line >= 1 and error.message for error in report.errors)
