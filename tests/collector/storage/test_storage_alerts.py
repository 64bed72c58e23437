"""Alert persistence (write + read back), history, comments, OFD contracts and silences."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import pytest
import sqlalchemy as sa

from collector.storage import InvalidValue, UnknownNode
from collector.storage import repository as repo
from collector.storage.rows import SEVERITY_LEVELS, AlertChangeRow, AlertRow, ContractRow

T0 = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)


def full_alert(register_id: str) -> AlertRow:
    return AlertRow(
        register_id=register_id,
        rule="fn_validity",
        severity="critical",
        status="active",
        started_at=T0,
        updated_at=T0 + timedelta(minutes=5),
        acknowledged=True,
        acked_by="ops@example.ru",
        acked_at=T0 + timedelta(minutes=3),
        assignee="Иванов",
        cleared_at=None,
        silenced_until=datetime(2026, 11, 29, 12, 0, tzinfo=timezone(timedelta(hours=3))),
        message="ФН истекает через 2 дня",
        details={"valid_until": "2026-11-30", "days_left": 2},
    )


def test_alert_round_trips_every_field(conn: sa.Connection, fleet: Any) -> None:
    alert = full_alert(fleet.registers["arbat"])
    alert_id = repo.upsert_alert(conn, alert)
    loaded = repo.load_alert(conn, alert.register_id, alert.rule)
    assert loaded == replace(alert, id=alert_id)
    assert loaded is not None and loaded.silenced_until is not None
    assert loaded.silenced_until.tzinfo == UTC


def test_a_new_occurrence_reuses_the_row_of_register_and_rule(conn: sa.Connection, fleet: Any) -> None:
    first = full_alert(fleet.registers["arbat"])
    alert_id = repo.upsert_alert(conn, first)
    cleared = replace(
        first, status="cleared", cleared_at=T0 + timedelta(hours=1), acknowledged=False, acked_by=None
    )
    assert repo.upsert_alert(conn, cleared) == alert_id
    assert repo.load_alert(conn, first.register_id, first.rule) == replace(cleared, id=alert_id)
    active = repo.load_alerts(conn, status="active")
    assert first.register_id not in {a.register_id for a in active if a.rule == first.rule}
    mine = repo.load_alerts(conn, register_ids=[first.register_id])
    assert {a.rule for a in mine} == {"paper_out", "fn_validity"}


@pytest.mark.parametrize("bad", [{"severity": "fatal"}, {"status": "open"}])
def test_unknown_severity_or_status_is_refused(conn: sa.Connection, fleet: Any, bad: dict[str, str]) -> None:
    with pytest.raises(InvalidValue):
        repo.upsert_alert(conn, replace(full_alert(fleet.registers["arbat"]), **bad))


def test_history_and_comments_come_back_in_order(conn: sa.Connection, fleet: Any) -> None:
    alert_id = fleet.alerts["tverskaya:ofd_backlog"]
    repo.add_alert_history(conn, AlertChangeRow(alert_id, T0 + timedelta(minutes=2), "acknowledged", "ops"))
    repo.add_alert_history(conn, AlertChangeRow(alert_id, T0, "raised", None, {"severity": "major"}))
    repo.add_comment(conn, alert_id, "ops", "звоним в магазин", at=T0 + timedelta(minutes=1))
    repo.add_comment(conn, alert_id, "lead", "ОФД оплачен", at=T0 + timedelta(minutes=9))
    changes = repo.load_alert_history(conn, alert_id)
    assert [(c.action, c.actor, c.details) for c in changes] == [
        ("raised", None, {"severity": "major"}),
        ("acknowledged", "ops", {}),
    ]
    assert [c.text for c in repo.list_comments(conn, alert_id)] == ["звоним в магазин", "ОФД оплачен"]
    with pytest.raises(InvalidValue):
        repo.add_comment(conn, alert_id, "ops", "   ")


def test_storage_severity_labels_are_the_alert_engines() -> None:
    severity = pytest.importorskip("collector.alerts.severity")
    assert tuple(s.label for s in sorted(severity.Severity)) == SEVERITY_LEVELS


def test_contracts_upsert_and_absent_means_no_data(conn: sa.Connection, fleet: Any) -> None:
    register = fleet.registers["nevsky"]
    repo.upsert_contract(conn, ContractRow(register, False, None, None, T0))
    repo.upsert_contract(
        conn, ContractRow(register, True, date(2027, 3, 1), "Базовый", T0 + timedelta(days=1))
    )
    contracts = repo.load_contracts(conn, [register, fleet.registers["arbat"]])
    assert contracts == {
        register: ContractRow(register, True, date(2027, 3, 1), "Базовый", T0 + timedelta(days=1))
    }


def test_silence_on_a_city_covers_its_stores_registers_while_in_force(
    conn: sa.Connection, fleet: Any
) -> None:
    n, r = fleet.nodes, fleet.registers
    city = repo.add_silence(
        conn, fleet.tenant_a, node_id=n["moscow"], starts_at=T0, until=T0 + timedelta(hours=2), author="ops"
    )
    own = repo.add_silence(
        conn,
        fleet.tenant_a,
        register_id=r["arbat"],
        starts_at=T0,
        until=T0 + timedelta(hours=5),
        author="ops",
    )
    inside = T0 + timedelta(hours=1)
    assert [s.id for s in repo.silences_covering(conn, r["arbat"], inside)] == [own, city]
    assert [s.id for s in repo.silences_covering(conn, r["tverskaya"], inside)] == [city]
    assert repo.silences_covering(conn, r["nevsky"], inside) == []
    assert repo.silences_covering(conn, r["tverskaya"], T0 + timedelta(hours=2)) == []
    assert repo.silences_covering(conn, r["tverskaya"], T0 - timedelta(seconds=1)) == []
    assert repo.delete_silence(conn, city) and not repo.delete_silence(conn, city)


def test_silence_arguments_are_checked(conn: sa.Connection, fleet: Any) -> None:
    n, r = fleet.nodes, fleet.registers
    window = {"starts_at": T0, "until": T0 + timedelta(hours=1), "author": "ops"}
    with pytest.raises(InvalidValue):
        repo.add_silence(conn, fleet.tenant_a, node_id=n["moscow"], register_id=r["arbat"], **window)
    with pytest.raises(InvalidValue):
        repo.add_silence(conn, fleet.tenant_a, node_id=n["moscow"], starts_at=T0, until=T0, author="ops")
    with pytest.raises(UnknownNode):
        repo.add_silence(conn, fleet.tenant_b, node_id=n["moscow"], **window)
    with pytest.raises(UnknownNode):
        repo.add_silence(conn, fleet.tenant_b, register_id=r["arbat"], **window)
