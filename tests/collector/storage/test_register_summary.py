"""``register_summary`` stays equal to what its source tables say after every kind of change the
repository makes (alerts, verdicts, links, agent status, placement, tree moves, deletion), the list
and counters read it with the scope applied, and cursor paging visits every register exactly once
while registers are being added. SQLite and PostgreSQL."""

from __future__ import annotations

import importlib
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from collector.accounts.audit import Actor
from collector.accounts.tree import place_register
from collector.storage import create_engine_from_url, migrate, register_list, register_summary
from collector.storage import repository as repo
from collector.storage.errors import InvalidValue
from collector.storage.register_list import RegisterQuery
from collector.storage.rows import AlertRow, LatestState, RegisterEvaluation, RegisterIdentity
from collector.storage.schema import agents, alerts, nodes, register_state, registers
from collector.storage.schema import register_summary as summary
from collector.storage.scope import Scope

T0 = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)
Fleet = Any  # tests/collector/storage/conftest.py's Fleet


def stored(conn: sa.Connection) -> dict[str, dict[str, Any]]:
    rows = {row.register_id: dict(row._mapping) for row in conn.execute(sa.select(summary))}
    for row in rows.values():
        if row["node_id"] is None:  # a deleted store's path may stay behind; only a placed register's counts
            row["node_path"] = None
    return rows


def recomputed(conn: sa.Connection) -> dict[str, dict[str, Any]]:
    """What the summary would hold if rebuilt from the source tables now."""
    computed = register_summary._computed(conn.dialect.name, None).subquery()
    return {row.register_id: dict(row._mapping) for row in conn.execute(sa.select(computed))}


def assert_in_step(conn: sa.Connection) -> None:
    assert stored(conn) == recomputed(conn)


def test_the_summary_holds_the_keys_the_list_sorts_and_filters_on(conn, fleet: Fleet) -> None:
    assert_in_step(conn)
    rows = stored(conn)
    tverskaya = rows[fleet.registers["tverskaya"]]
    assert tverskaya["tenant_id"] == fleet.tenant_a and tverskaya["node_id"] == fleet.nodes["tverskaya"]
    assert tverskaya["block_order"] == T0 + timedelta(days=2)
    assert tverskaya["severity_order"] == 1  # critical: one step below blocked
    assert tverskaya["problem"] is True and tverskaya["agent_online"] is True
    assert "1001" in tverskaya["search_text"] and "0001001" in tverskaya["search_text"]
    arbat = rows[fleet.registers["arbat"]]
    # No stop ahead sorts last; no active alert (its only alert is cleared); its agent went offline.
    assert arbat["block_order"] == register_summary.NO_BLOCK
    assert arbat["severity_order"] == register_summary.NO_SEVERITY_ORDER
    assert (arbat["problem"], arbat["agent_online"]) == (False, False)


def test_alert_verdict_link_and_agent_changes_keep_the_summary_in_step(conn, fleet: Fleet) -> None:
    arbat = fleet.registers["arbat"]
    repo.upsert_alert(
        conn,
        AlertRow(register_id=arbat, rule="fn_memory", severity="major", status="active", started_at=T0, updated_at=T0),
    )
    assert stored(conn)[arbat]["problem"] is True
    repo.upsert_alert(
        conn,
        AlertRow(
            register_id=arbat, rule="fn_memory", severity="major", status="cleared", started_at=T0, updated_at=T0,
            cleared_at=T0,
        ),
    )
    assert stored(conn)[arbat]["problem"] is False
    repo.set_register_evaluation(
        conn,
        arbat,
        RegisterEvaluation(
            worst_severity="blocked", time_to_block_seconds=0, blocks_at=T0, evaluated_at=T0, sell_status="cannot_sell",
            sell_rank=0,
        ),
    )
    assert (stored(conn)[arbat]["sell_rank"], stored(conn)[arbat]["severity_order"]) == (0, 0)
    repo.set_link_up(conn, arbat, False)
    repo.upsert_agent_status(conn, "agent-arbat", online=True, session=2, at=T0)
    assert (stored(conn)[arbat]["link_up"], stored(conn)[arbat]["agent_online"]) == (False, True)
    repo.revoke_agent(conn, "agent-arbat")
    assert stored(conn)[arbat]["agent_online"] is False
    assert_in_step(conn)
    page = register_list.list_page(conn, Scope.tenant(fleet.tenant_a), RegisterQuery(), limit=1)
    assert [row.register_id for row in page.rows] == [arbat]  # cannot sell now: first


def test_a_new_register_gets_its_row_and_a_deleted_one_loses_it(conn, fleet: Fleet) -> None:
    repo.ensure_register(conn, RegisterIdentity("kkt-new", "atol", serial="777"), agent_id="agent-nevsky", seen_at=T0)
    row = stored(conn)["kkt-new"]
    assert (row["sell_rank"], row["node_id"], row["search_text"]) == (1, fleet.nodes["nevsky"], "kkt-new\n777\n\n")
    conn.execute(sa.delete(registers).where(registers.c.register_id == "kkt-new"))
    assert "kkt-new" not in stored(conn)
    assert_in_step(conn)


def test_moves_in_the_tree_are_followed(conn, fleet: Fleet) -> None:
    a = Scope.tenant(fleet.tenant_a)
    in_moscow = RegisterQuery(node_id=fleet.nodes["moscow"])
    assert register_list.count_registers(conn, a, in_moscow) == 2
    # A store moved to another city takes its registers along (the summary keeps node ids, the
    # subtree comes from the nodes' paths).
    repo.move_node(conn, fleet.tenant_a, fleet.nodes["arbat"], fleet.nodes["spb"])
    assert register_list.count_registers(conn, a, in_moscow) == 1
    spb_grant = Scope.subtrees(fleet.tenant_a, [fleet.nodes["spb"]])
    assert {row.register_id for row in register_list.list_page(conn, spb_grant, RegisterQuery()).rows} == {
        fleet.registers["arbat"], fleet.registers["nevsky"]
    }
    # A register placed in another store (accounts' place_register refreshes its row).
    place_register(conn, Actor.cli(), fleet.tenant_a, fleet.registers["nevsky"], fleet.nodes["tverskaya"], at=T0)
    assert register_list.count_registers(conn, a, in_moscow) == 2
    # A deleted store leaves its registers unplaced, visible to the whole tenant only.
    conn.execute(sa.delete(nodes).where(nodes.c.id == fleet.nodes["arbat"]))
    assert stored(conn)[fleet.registers["arbat"]]["node_id"] is None
    assert register_list.count_registers(conn, spb_grant, RegisterQuery()) == 0
    assert register_list.count_registers(conn, a, RegisterQuery()) == 3
    assert_in_step(conn)


def test_refresh_all_repairs_rows_changed_behind_its_back(conn, fleet: Fleet) -> None:
    conn.execute(sa.update(summary).values(sell_rank=9, problem=False))
    register_summary.refresh_all(conn)
    assert_in_step(conn)


@pytest.mark.parametrize(
    "query",
    [
        RegisterQuery(),
        RegisterQuery(status="problem"),
        RegisterQuery(status="ok"),
        RegisterQuery(status="offline"),
        RegisterQuery(connectivity="offline"),
        RegisterQuery(severities=["critical", "blocked"]),
        RegisterQuery(rule="ofd_backlog"),  # one rule alone: counted from the active alerts
        RegisterQuery(rule="paper_out"),  # its only alert is cleared
        RegisterQuery(rule="ofd_backlog", tag="24/7"),  # a rule and more: counted in the pass
        RegisterQuery(tag="24/7"),
        RegisterQuery(search="арбат"),
        RegisterQuery(search="0001003"),
        RegisterQuery(sell="unknown"),
    ],
)
def test_counters_in_one_pass_equal_the_lists_totals(conn, fleet: Fleet, query: RegisterQuery) -> None:
    for scope in (Scope.admin(), Scope.tenant(fleet.tenant_a), Scope.subtrees(fleet.tenant_a, [fleet.nodes["moscow"]])):
        page = register_list.list_page(conn, scope, query, limit=50)
        assert register_list.count_each(conn, scope, [query, RegisterQuery()])[0] == page.total == len(page.rows)
        assert page.next_cursor is None


def _add_registers(conn: sa.Connection, make_state: Callable[..., Any], prefix: str, count: int) -> None:
    for i in range(count):
        register_id = f"{prefix}-{i:03d}"
        repo.ensure_register(conn, RegisterIdentity(register_id, "atol"), agent_id="agent-nevsky", seen_at=T0)
        if i % 3:  # ties on every key but the id, and registers with no state at all
            latest = LatestState.from_register_state(
                register_id, make_state(f"9{i:03d}"), agent_id="agent-nevsky", session=1, seq=1, agent_ts=T0,
                received_at=T0, link_up=True,
                evaluation=RegisterEvaluation(
                    worst_severity=("major", None, "critical")[i % 3], time_to_block_seconds=None,
                    blocks_at=T0 + timedelta(days=i % 4) if i % 4 else None, evaluated_at=T0,
                    sell_status="will_stop", sell_rank=2,
                ),
            )
            repo.upsert_latest_state(conn, latest)


@pytest.mark.parametrize("sort", ["time_to_block", "severity", "register"])
def test_cursor_paging_visits_every_register_once_while_others_are_added(conn, fleet: Fleet, make_state, sort: str) -> None:
    scope = Scope.tenant(fleet.tenant_a)
    _add_registers(conn, make_state, "kkt-old", 40)
    before = {row.register_id for row in register_list.list_page(conn, scope, RegisterQuery(), limit=1000).rows}
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        page = register_list.list_page(conn, scope, RegisterQuery(), sort=sort, limit=7, cursor=cursor)
        seen += [row.register_id for row in page.rows]
        pages += 1
        _add_registers(conn, make_state, f"kkt-new{pages}", 2)  # arrive while the list is being walked
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    counts = Counter(seen)
    assert max(counts.values()) == 1  # nothing twice
    assert before <= set(seen)  # nothing that was there from the start is skipped
    # Where they fit, the pages are in the list's own order.
    whole = [row.register_id for row in register_list.list_page(conn, scope, RegisterQuery(), sort=sort, limit=1000).rows]
    assert [rid for rid in whole if rid in before] == [rid for rid in seen if rid in before]


def test_a_cursor_resumes_where_an_offset_page_ends(conn, fleet: Fleet, make_state) -> None:
    scope = Scope.tenant(fleet.tenant_a)
    _add_registers(conn, make_state, "kkt", 20)
    first = register_list.list_page(conn, scope, RegisterQuery(), limit=5, offset=5)
    resumed = register_list.list_page(conn, scope, RegisterQuery(), limit=5, cursor=first.next_cursor)
    by_offset = register_list.list_page(conn, scope, RegisterQuery(), limit=5, offset=10)
    assert [r.register_id for r in resumed.rows] == [r.register_id for r in by_offset.rows]
    assert resumed.total == by_offset.total == 23


def test_bad_cursors_are_refused_clearly(conn, fleet: Fleet) -> None:
    scope = Scope.tenant(fleet.tenant_a)
    cursor = register_list.list_page(conn, scope, RegisterQuery(), limit=1).next_cursor
    assert cursor is not None
    for bad, sort, words in (
        ("not-a-cursor", "time_to_block", "not one this list issued"),
        (cursor, "severity", "issued for sort 'time_to_block'"),
        (cursor, "store", "pages by offset"),
        (register_list.encode_cursor("time_to_block", [1, "yesterday", 0, "x"]), "time_to_block", "not an instant"),
        (register_list.encode_cursor("time_to_block", ["1", T0, 0, "x"]), "time_to_block", "sell_rank is not a int"),
    ):
        with pytest.raises(InvalidValue, match=words):
            register_list.list_page(conn, scope, RegisterQuery(), sort=sort, limit=1, cursor=bad)


def test_the_migration_fills_the_summary_from_the_rows_already_there(empty_database_url: str) -> None:
    revision = importlib.import_module("collector.storage.migrations.versions.0018_register_summary")
    migrate(empty_database_url, revision.down_revision)
    engine = create_engine_from_url(empty_database_url)
    try:
        with engine.begin() as conn:
            tenant = repo.create_tenant(conn, "Ромашка", created_at=T0)
            store = repo.create_node(conn, tenant, parent_id=None, kind="store", name="Тверская 1")
            conn.execute(sa.insert(agents).values(agent_id="agent-1", tenant_id=tenant, node_id=store, enrolled_at=T0, online=True))
            conn.execute(sa.insert(registers), [
                {"register_id": f"kkt-{i}", "tenant_id": tenant, "node_id": store, "agent_id": "agent-1", "protocol": "atol",
                 "serial": f"100{i}", "first_seen": T0, "last_seen": T0}
                for i in range(3)
            ])
            conn.execute(sa.insert(register_state).values(
                register_id="kkt-0", agent_id="agent-1", session=1, seq=1, agent_ts=T0, received_at=T0, state={},
                blocks_at=T0 + timedelta(days=3), worst_severity="critical", sell_status="will_stop", sell_rank=2, link_up=False,
            ))
            conn.execute(sa.insert(alerts).values(
                register_id="kkt-0", rule="ofd_backlog", severity="critical", status="active", started_at=T0, updated_at=T0,
                details={},
            ))
        migrate(engine)
        with engine.connect() as conn:
            assert_in_step(conn)
            rows = stored(conn)
        assert set(rows) == {"kkt-0", "kkt-1", "kkt-2"}
        assert (rows["kkt-0"]["problem"], rows["kkt-0"]["severity_order"], rows["kkt-0"]["link_up"]) == (True, 1, False)
        assert rows["kkt-1"]["sell_rank"] == 1 and rows["kkt-1"]["node_path"] == f"/{store}/"
    finally:
        engine.dispose()
