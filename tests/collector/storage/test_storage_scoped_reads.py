"""Scoped reads: what each scope sees, list filters and sorting, history windows and rollups."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from collector.storage import InvalidValue, Scope, UnknownNode
from collector.storage import repository as repo
from collector.storage.rows import EventRow, HistoryRow

T0 = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)


def ids(rows: list[Any]) -> list[str]:
    return [r.register_id for r in rows]


def visible(conn: sa.Connection, scope: Scope, **filters: Any) -> set[str]:
    rows, total = repo.list_registers(conn, scope, **filters)
    assert total == len(rows)
    return set(ids(rows))


def test_admin_sees_every_tenant(conn: sa.Connection, fleet: Any) -> None:
    assert visible(conn, Scope.admin()) == set(fleet.registers.values())


def test_a_city_subtree_sees_only_its_registers(conn: sa.Connection, fleet: Any) -> None:
    moscow = Scope.subtrees(fleet.tenant_a, [fleet.nodes["moscow"]])
    expected = {fleet.registers["tverskaya"], fleet.registers["arbat"]}
    assert visible(conn, moscow) == expected
    assert repo.get_register(conn, moscow, fleet.registers["nevsky"]) is None
    assert repo.get_register(conn, moscow, fleet.registers["tverskaya"]) is not None


def test_grants_add_up_and_an_empty_grant_sees_nothing(conn: sa.Connection, fleet: Any) -> None:
    two_stores = Scope.subtrees(fleet.tenant_a, [fleet.nodes["arbat"], fleet.nodes["nevsky"]])
    assert visible(conn, two_stores) == {fleet.registers["arbat"], fleet.registers["nevsky"]}
    assert visible(conn, Scope.subtrees(fleet.tenant_a, [])) == set()


def test_another_tenant_sees_nothing_of_this_one(conn: sa.Connection, fleet: Any) -> None:
    tenant_b = Scope.tenant(fleet.tenant_b)
    assert visible(conn, tenant_b) == {fleet.registers["b_store"]}
    # Naming a node of tenant A inside tenant B's scope must not open tenant A's subtree.
    smuggled = Scope.subtrees(fleet.tenant_b, [fleet.nodes["legal"]])
    assert visible(conn, smuggled) == set()
    assert repo.get_register(conn, tenant_b, fleet.registers["tverskaya"]) is None
    alerts, total = repo.list_alerts(conn, tenant_b)
    assert total == 1 and ids(alerts) == [fleet.registers["b_store"]]
    assert repo.node_rollups(conn, smuggled) == []
    assert {r.node_id for r in repo.node_rollups(conn, tenant_b)} == {
        fleet.nodes["b_legal"],
        fleet.nodes["b_store"],
    }


def test_scope_naming_nodes_needs_a_tenant() -> None:
    with pytest.raises(ValueError, match="tenant"):
        Scope(tenant_id=None, node_ids=frozenset({1}))


def test_list_sorts_by_time_to_block_with_unknown_last_and_pages(conn: sa.Connection, fleet: Any) -> None:
    tenant_a = Scope.tenant(fleet.tenant_a)
    rows, total = repo.list_registers(conn, tenant_a)
    assert total == 3
    assert ids(rows) == [fleet.registers[k] for k in ("tverskaya", "nevsky", "arbat")]
    page, total = repo.list_registers(conn, tenant_a, limit=1, offset=1)
    assert total == 3 and ids(page) == [fleet.registers["nevsky"]]
    by_severity, _ = repo.list_registers(conn, Scope.admin(), sort="severity")
    assert ids(by_severity)[:2] == [fleet.registers["b_store"], fleet.registers["tverskaya"]]


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({"status": "problem"}, {"tverskaya", "nevsky"}),
        ({"status": "ok"}, {"arbat"}),  # its only alert is cleared
        ({"status": "offline"}, {"arbat"}),
        ({"severities": ["major", "critical"]}, {"tverskaya", "nevsky"}),
        ({"rule": "fn_validity"}, {"nevsky"}),
        ({"rule": "paper_out"}, set()),
        ({"tag": "24/7"}, {"tverskaya", "nevsky"}),
        ({"search": "арбат"}, {"arbat"}),  # store name, any case, Cyrillic
        ({"search": "НЕВСКИЙ"}, {"nevsky"}),
        ({"search": "0001001"}, {"tverskaya"}),  # RNM
        ({"search": "999907891003"}, {"nevsky"}),  # ФН serial
        ({"search": "%"}, set()),  # LIKE wildcards are matched literally
        ({"search": "SHTRIH-1002"}, {"arbat"}),  # the register id, any case
        ({"search": "-100"}, {"tverskaya", "arbat", "nevsky"}),  # no letters: matched without folding
        ({"status": "problem", "tag": "24/7", "search": "1003"}, {"nevsky"}),
    ],
)
def test_list_filters(conn: sa.Connection, fleet: Any, filters: dict[str, Any], expected: set[str]) -> None:
    assert visible(conn, Scope.tenant(fleet.tenant_a), **filters) == {fleet.registers[k] for k in expected}


def test_node_filter_covers_the_subtree_and_stays_inside_the_scope(conn: sa.Connection, fleet: Any) -> None:
    brand = fleet.nodes["brand"]
    assert len(visible(conn, Scope.tenant(fleet.tenant_a), node_id=brand)) == 3
    spb_only = Scope.subtrees(fleet.tenant_a, [fleet.nodes["spb"]])
    assert visible(conn, spb_only, node_id=brand) == {fleet.registers["nevsky"]}


@pytest.mark.parametrize(
    "bad",
    [{"status": "burning"}, {"severities": ["fatal"]}, {"sort": "random"}, {"limit": 0}, {"offset": -1}],
)
def test_bad_list_arguments_raise_a_typed_error(conn: sa.Connection, fleet: Any, bad: dict[str, Any]) -> None:
    with pytest.raises(InvalidValue):
        repo.list_registers(conn, Scope.admin(), **bad)


def test_get_register_has_state_tags_and_store(conn: sa.Connection, fleet: Any) -> None:
    row = repo.get_register(conn, Scope.tenant(fleet.tenant_a), fleet.registers["tverskaya"])
    assert row is not None
    assert row.tags == ("24/7",) and row.node_name == "Тверская 1" and row.agent_online is True
    assert row.state is not None and row.state["serial"] == "1001"
    assert (row.worst_severity, row.blocks_at) == ("critical", T0 + timedelta(days=2))


def test_alert_list_filters_and_orders_by_severity(conn: sa.Connection, fleet: Any) -> None:
    everything, total = repo.list_alerts(conn, Scope.admin(), status=None)
    assert total == 4
    assert [a.severity for a in everything] == ["blocked", "critical", "major", "warning"]
    moscow = Scope.subtrees(fleet.tenant_a, [fleet.nodes["moscow"]])
    active, _ = repo.list_alerts(conn, moscow)
    assert [a.rule for a in active] == ["ofd_backlog"]
    _, total = repo.list_alerts(
        conn, Scope.tenant(fleet.tenant_a), node_id=fleet.nodes["spb"], acknowledged=False
    )
    assert total == 1
    assert repo.get_alert(conn, moscow, fleet.alerts["nevsky:fn_validity"]) is None
    assert repo.get_alert(conn, moscow, fleet.alerts["tverskaya:ofd_backlog"]) is not None


def test_events_and_history_are_scoped_and_windowed(conn: sa.Connection, fleet: Any) -> None:
    register = fleet.registers["nevsky"]
    repo.insert_history(
        conn,
        [
            HistoryRow("agent-nevsky", 1, 10 + h, register, T0 + timedelta(hours=h), T0, {"hour": h})
            for h in range(6)
        ],
    )
    repo.insert_events(
        conn,
        [
            EventRow("agent-nevsky", 1, 100 + h, register, f"kind{h % 2}", T0 + timedelta(hours=h), T0)
            for h in range(4)
        ],
    )
    spb = Scope.subtrees(fleet.tenant_a, [fleet.nodes["spb"]])
    states = repo.state_history(conn, spb, register, T0 + timedelta(hours=1), T0 + timedelta(hours=4))
    assert [s.state["hour"] for s in states] == [1, 2, 3]
    newest_first = repo.list_events(conn, spb, register, kinds=["kind1"])
    assert [e.seq for e in newest_first] == [103, 101]
    moscow = Scope.subtrees(fleet.tenant_a, [fleet.nodes["moscow"]])
    assert repo.state_history(conn, moscow, register) == []
    assert repo.list_events(conn, moscow, register) == []


def test_rollups_include_every_descendant_level(conn: sa.Connection, fleet: Any) -> None:
    rollups = {r.node_id: r for r in repo.node_rollups(conn, Scope.tenant(fleet.tenant_a))}
    n = fleet.nodes
    assert set(rollups) == {n[k] for k in ("legal", "brand", "moscow", "tverskaya", "arbat", "spb", "nevsky")}
    legal = rollups[n["legal"]]
    assert legal.registers == 3
    assert legal.by_severity == {"info": 0, "warning": 0, "major": 1, "critical": 1, "blocked": 0}
    assert legal.earliest_blocks_at == T0 + timedelta(days=2)  # three levels below, in Moscow
    assert rollups[n["spb"]].earliest_blocks_at == T0 + timedelta(days=10)
    assert rollups[n["moscow"]].registers == 2 and rollups[n["arbat"]].earliest_blocks_at is None
    only_spb = repo.node_rollups(conn, Scope.subtrees(fleet.tenant_a, [n["spb"]]))
    assert [r.node_id for r in only_spb] == [n["spb"], n["nevsky"]]


def test_moving_a_city_moves_its_registers_in_scopes_and_rollups(conn: sa.Connection, fleet: Any) -> None:
    n = fleet.nodes
    repo.move_node(conn, fleet.tenant_a, n["spb"], n["legal"])  # SPb leaves the brand
    brand = Scope.subtrees(fleet.tenant_a, [n["brand"]])
    assert visible(conn, brand) == {fleet.registers["tverskaya"], fleet.registers["arbat"]}
    [legal] = repo.node_rollups(conn, Scope.tenant(fleet.tenant_a), node_ids=[n["legal"]])
    assert legal.registers == 3
    with pytest.raises(InvalidValue):
        repo.move_node(conn, fleet.tenant_a, n["legal"], n["nevsky"])


def test_the_tree_refuses_links_across_tenants(conn: sa.Connection, fleet: Any) -> None:
    foreign_node = fleet.nodes["moscow"]
    with pytest.raises(UnknownNode):
        repo.create_node(conn, fleet.tenant_b, parent_id=foreign_node, kind="store", name="X")
    with pytest.raises(UnknownNode):
        repo.enroll_agent(conn, "agent-new", tenant_id=fleet.tenant_b, node_id=foreign_node, enrolled_at=T0)
    with pytest.raises(UnknownNode):
        repo.move_node(conn, fleet.tenant_b, fleet.nodes["b_store"], foreign_node)
    foreign_tag = repo.create_tag(conn, fleet.tenant_b, "24/7")
    with pytest.raises(InvalidValue):
        repo.tag_register(conn, fleet.registers["arbat"], foreign_tag)


def test_new_nodes_get_materialised_paths(conn: sa.Connection, fleet: Any) -> None:
    n = fleet.nodes
    rollups = {r.node_id: r.path for r in repo.node_rollups(conn, Scope.tenant(fleet.tenant_a))}
    assert rollups[n["tverskaya"]] == f"/{n['legal']}/{n['brand']}/{n['moscow']}/{n['tverskaya']}/"
