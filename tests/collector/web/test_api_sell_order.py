"""A register that never reported is unknown and sorts with the problems, never as "no threat"."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from collector.alerts import UNKNOWN_RANK
from collector.storage import repository as repo
from collector.storage.reads import UNKNOWN_SELL_RANK
from collector.storage.rows import RegisterIdentity


def test_storage_sorts_a_register_without_a_verdict_as_the_model_ranks_unknown() -> None:
    assert UNKNOWN_SELL_RANK == UNKNOWN_RANK


@pytest.mark.usefixtures("mutable_fleet")
def test_a_never_reported_register_is_unknown_and_sorts_after_cannot_sell(api, fleet, db_engine: sa.Engine, t0) -> None:
    with db_engine.begin() as conn:
        repo.enroll_agent(conn, "agent-new", tenant_id=fleet.tenant_a, node_id=fleet.nodes["arbat"], enrolled_at=t0)
        repo.ensure_register(conn, RegisterIdentity("atol-new-1", "atol", serial="28109999"), agent_id="agent-new", seen_at=t0 - timedelta(minutes=1))
    items = api.get("/api/v1/registers").json["items"]
    order = [item["register_id"] for item in items]
    assert order[:2] == [fleet.registers["b_store"], "atol-new-1"]
    new = items[1]
    assert new["sell_status"] == "unknown" and new["block_cause"] == "no_data"
    assert new["sell_text"] == "Нет данных: касса ещё ни разу не передавала состояние"
    assert new["fix"].startswith("Проверьте в магазине компьютер с агентом")
    unknown = api.get("/api/v1/registers?sell=unknown").json["items"]
    assert [item["register_id"] for item in unknown] == ["atol-new-1"]
