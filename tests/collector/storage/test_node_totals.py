"""``node_totals`` stays equal to a count from scratch after every kind of change (verdicts, alerts,
a store moved to another city, a register placed elsewhere, added or deleted), and the tree's
rollups equal a count from the source tables for the whole tenant and for a one-city grant, which
sees nothing of the rest of the company. Views of the tree show what they promise. SQLite and
PostgreSQL."""

from __future__ import annotations

import importlib
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collector.accounts.audit import Actor
from collector.accounts.tree import place_register
from collector.storage import create_engine_from_url, migrate, node_totals, register_summary
from collector.storage import repository as repo
from collector.storage.rollups import VIEW_SIZE
from collector.storage.rows import SEVERITY_LEVELS, RegisterEvaluation, RegisterIdentity
from collector.storage.schema import agents, nodes, register_state, registers
from collector.storage.schema import node_totals as totals_table
from collector.storage.scope import Scope

T0 = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)
Fleet = Any  # tests/collector/storage/conftest.py's Fleet
STORES = ("tverskaya", "arbat", "nevsky")
CITIES = ("moscow", "spb")


def stored_totals(conn: sa.Connection) -> dict[int, dict[str, Any]]:
    return {row.node_id: dict(row._mapping) for row in conn.execute(sa.select(totals_table))}


def recomputed_totals(conn: sa.Connection) -> dict[int, dict[str, Any]]:
    computed = node_totals._computed(None).subquery()
    names = [column.name for column in totals_table.columns]
    return {row[0]: dict(zip(names, row, strict=True)) for row in conn.execute(sa.select(computed))}


def assert_totals_in_step(conn: sa.Connection) -> None:
    assert stored_totals(conn) == recomputed_totals(conn)


def from_scratch(conn: sa.Connection, scope: Scope) -> dict[int, tuple[int, int, dict[str, int], datetime | None]]:
    """Per visible node: registers, cannot sell, by severity, earliest stop, from the source tables."""
    shown = {rollup.node_id: rollup.path for rollup in repo.node_rollups(conn, scope)}
    placed = conn.execute(
        sa.select(nodes.c.path, register_state.c.worst_severity, register_state.c.sell_status, register_state.c.blocks_at)
        .select_from(
            registers.join(nodes, nodes.c.id == registers.c.node_id).outerjoin(
                register_state, register_state.c.register_id == registers.c.register_id
            )
        )
    ).all()
    counted = {}
    for node_id, path in shown.items():
        below = [row for row in placed if row.path.startswith(path)]
        stops = [row.blocks_at for row in below if row.sell_status != "cannot_sell" and row.blocks_at is not None]
        counted[node_id] = (
            len(below),
            sum(row.sell_status == "cannot_sell" for row in below),
            {label: sum(row.worst_severity == label for row in below) for label in SEVERITY_LEVELS},
            min(stops, default=None),
        )
    return counted


def rolled_up(conn: sa.Connection, scope: Scope) -> dict[int, tuple[int, int, dict[str, int], datetime | None]]:
    return {
        r.node_id: (r.registers, r.cannot_sell, dict(r.by_severity), r.earliest_blocks_at)
        for r in repo.node_rollups(conn, scope)
    }


def assert_rollups_exact(conn: sa.Connection, fleet: Fleet) -> None:
    assert_totals_in_step(conn)
    for scope in (Scope.tenant(fleet.tenant_a), Scope.subtrees(fleet.tenant_a, [fleet.nodes["spb"]])):
        assert rolled_up(conn, scope) == from_scratch(conn, scope)


def evaluate(conn: sa.Connection, register_id: str, severity: str | None, sell: str, blocks_in: int | None) -> None:
    blocks_at = None if blocks_in is None else T0 + timedelta(days=blocks_in)
    rank = {"cannot_sell": 0, "will_stop": 2, "no_threat": 3}[sell]
    repo.set_register_evaluation(
        conn,
        register_id,
        RegisterEvaluation(
            worst_severity=severity, time_to_block_seconds=None, blocks_at=blocks_at, evaluated_at=T0,
            sell_status=sell, sell_rank=rank,
        ),
    )


def test_the_migration_fills_the_totals_and_the_tree_reads_them(conn, fleet: Fleet) -> None:
    assert_rollups_exact(conn, fleet)
    legal = rolled_up(conn, Scope.tenant(fleet.tenant_a))[fleet.nodes["legal"]]
    assert legal[0] == 3 and legal[2]["critical"] == 1 and legal[2]["major"] == 1
    assert set(stored_totals(conn)) == {fleet.nodes[key] for key in ("tverskaya", "arbat", "nevsky", "b_store")}


def test_verdicts_moves_placements_and_deletions_keep_the_totals_exact(conn, fleet: Fleet) -> None:
    evaluate(conn, fleet.registers["arbat"], "blocked", "cannot_sell", 0)
    evaluate(conn, fleet.registers["nevsky"], None, "will_stop", 1)
    assert_rollups_exact(conn, fleet)
    spb = rolled_up(conn, Scope.tenant(fleet.tenant_a))[fleet.nodes["spb"]]
    assert spb[3] == T0 + timedelta(days=1)
    # A store moved to another city: its registers count there, and no longer in Moscow.
    repo.move_node(conn, fleet.tenant_a, fleet.nodes["arbat"], fleet.nodes["spb"])
    assert_rollups_exact(conn, fleet)
    after = rolled_up(conn, Scope.tenant(fleet.tenant_a))
    assert (after[fleet.nodes["spb"]][0], after[fleet.nodes["moscow"]][0]) == (2, 1)
    assert after[fleet.nodes["spb"]][1] == 1
    # A register placed in another store, then deleted by hand (its summary row goes by cascade).
    place_register(conn, Actor.cli(), fleet.tenant_a, fleet.registers["nevsky"], fleet.nodes["tverskaya"], at=T0)
    assert_rollups_exact(conn, fleet)
    conn.execute(sa.delete(registers).where(registers.c.register_id == fleet.registers["tverskaya"]))
    assert_rollups_exact(conn, fleet)
    assert fleet.nodes["nevsky"] not in stored_totals(conn)  # no register left there: no row
    assert rolled_up(conn, Scope.tenant(fleet.tenant_a))[fleet.nodes["legal"]][0] == 2


def test_a_one_city_grant_sees_only_that_citys_totals(conn, fleet: Fleet) -> None:
    spb_only = Scope.subtrees(fleet.tenant_a, [fleet.nodes["spb"]])
    seen = rolled_up(conn, spb_only)
    assert set(seen) == {fleet.nodes["spb"], fleet.nodes["nevsky"]}
    assert seen[fleet.nodes["spb"]][0] == 1 and seen[fleet.nodes["spb"]][2]["critical"] == 0
    assert repo.view_node_ids(conn, spb_only) == [fleet.nodes["spb"], fleet.nodes["nevsky"]]
    assert repo.view_node_ids(conn, spb_only, top=fleet.nodes["moscow"]) == []  # not its to see
    assert repo.node_rollups(conn, spb_only, node_ids=[fleet.nodes["legal"], fleet.nodes["moscow"]]) == []


def test_a_view_opens_levels_while_they_fit_and_sums_whole_subtrees(conn, fleet: Fleet) -> None:
    company = Scope.tenant(fleet.tenant_a)
    n = fleet.nodes
    everything = [n[key] for key in ("legal", "brand", "moscow", "tverskaya", "arbat", "spb", "nevsky")]
    assert sorted(repo.view_node_ids(conn, company)) == sorted(everything)
    # A city of more stores than a view holds: the company's view stops above the stores.
    many = [repo.create_node(conn, fleet.tenant_a, parent_id=n["moscow"], kind="store", name=f"№{i}") for i in range(VIEW_SIZE)]
    shown = repo.view_node_ids(conn, company)
    assert sorted(shown) == sorted([n["legal"], n["brand"], n["moscow"], n["spb"]])
    assert repo.with_children(conn, shown) == {n["legal"], n["brand"], n["moscow"], n["spb"]}
    # The city's own view shows all its stores (one level is always shown), each summed alone.
    assert len(repo.view_node_ids(conn, company, top=n["moscow"])) == 1 + 2 + len(many)
    part = {r.node_id: r.registers for r in repo.node_rollups(conn, company, node_ids=shown)}
    assert part == {n["legal"]: 3, n["brand"]: 3, n["moscow"]: 2, n["spb"]: 1}


_SEVERITIES = st.sampled_from([None, *SEVERITY_LEVELS])
_CHANGES = st.lists(
    st.one_of(
        st.tuples(st.just("evaluate"), st.integers(0, 9), _SEVERITIES, st.sampled_from(["cannot_sell", "will_stop", "no_threat"]),
                  st.one_of(st.none(), st.integers(0, 30))),
        st.tuples(st.just("move"), st.sampled_from(STORES), st.sampled_from(CITIES)),
        st.tuples(st.just("place"), st.integers(0, 9), st.sampled_from(STORES)),
        st.tuples(st.just("add"), st.sampled_from(STORES)),
        st.tuples(st.just("delete"), st.integers(0, 9)),
    ),
    max_size=12,
)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(changes=_CHANGES)
def test_random_changes_keep_incremental_totals_equal_to_recomputed(conn, fleet: Fleet, changes: list[tuple[Any, ...]]) -> None:
    each = conn.begin_nested()  # every example starts from the same fleet
    try:
        for number, (kind, *args) in enumerate(changes):
            present = sorted(conn.execute(sa.select(registers.c.register_id).where(registers.c.tenant_id == fleet.tenant_a)).scalars())
            if kind == "evaluate" and present:
                evaluate(conn, present[args[0] % len(present)], *args[1:])
            elif kind == "move":
                repo.move_node(conn, fleet.tenant_a, fleet.nodes[args[0]], fleet.nodes[args[1]])
            elif kind == "place" and present:
                place_register(conn, Actor.cli(), fleet.tenant_a, present[args[0] % len(present)], fleet.nodes[args[1]], at=T0)
            elif kind == "add":
                agent = conn.execute(sa.select(agents.c.agent_id).where(agents.c.node_id == fleet.nodes[args[0]])).scalar_one()
                repo.ensure_register(conn, RegisterIdentity(f"kkt-new-{number}", "atol", serial=f"9{number}"), agent_id=agent, seen_at=T0)
            elif kind == "delete" and present:
                conn.execute(sa.delete(registers).where(registers.c.register_id == present[args[0] % len(present)]))
        assert_rollups_exact(conn, fleet)
    finally:
        each.rollback()


def test_the_migration_backfills_totals_for_an_existing_database(empty_database_url: str) -> None:
    revision = importlib.import_module("collector.storage.migrations.versions.0019_node_totals")
    migrate(empty_database_url, revision.down_revision)
    engine = create_engine_from_url(empty_database_url)
    try:
        with engine.begin() as conn:
            tenant = repo.create_tenant(conn, "Ромашка", created_at=T0)
            city = repo.create_node(conn, tenant, parent_id=None, kind="city", name="Москва")
            store = repo.create_node(conn, tenant, parent_id=city, kind="store", name="Тверская 1")
            conn.execute(sa.insert(agents).values(agent_id="agent-1", tenant_id=tenant, node_id=store, enrolled_at=T0, online=True))
            conn.execute(sa.insert(registers), [
                {"register_id": f"kkt-{i}", "tenant_id": tenant, "node_id": store, "agent_id": "agent-1", "protocol": "atol",
                 "first_seen": T0, "last_seen": T0}
                for i in range(3)
            ])
            register_summary.refresh_all(conn, with_node_totals=False)  # the summary as revision 0018 keeps it
        migrate(engine)
        with engine.begin() as conn:
            assert_totals_in_step(conn)
            assert stored_totals(conn)[store]["registers"] == 3
            [city_rollup] = repo.node_rollups(conn, Scope.tenant(tenant), node_ids=[city])
            assert city_rollup.registers == 3
            conn.execute(sa.delete(registers).where(registers.c.register_id == "kkt-0"))  # the trigger came with it
            assert stored_totals(conn)[store]["registers"] == 2
        migrate(engine, revision.down_revision)  # and goes with it
        with engine.begin() as conn:
            conn.execute(sa.delete(registers).where(registers.c.register_id == "kkt-1"))
    finally:
        engine.dispose()
