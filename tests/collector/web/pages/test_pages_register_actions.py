"""Remote actions on the pages, on SQLite and PostgreSQL: the register page offers only the actions
the user may take and the shift allows, the confirmation page names the register, its store and
the consequence, a confirmed action shows its status and history, a second one is refused in
Russian, and the tree's bulk page previews the long shifts and lists a result per register."""

from __future__ import annotations

import re
import sys
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from collector.accounts.audit import list_entries
from collector.storage.engine import begin_write
from collector.storage.schema import alerts
from collector.web.routing import ENGINE_KEY

sys.path.insert(0, str(Path(__file__).parents[2]))
sys.path.insert(0, str(Path(__file__).parents[2] / "security"))
import accounts_testkit as accounts_kit
import security_testkit as kit
from actions_testkit import serve_register

engine = accounts_kit.engine
client = pytest.fixture(kit.fresh_site, name="client")


def serve(client: kit.Client, *keys: str, open_for: timedelta = timedelta(hours=2)) -> None:
    w = client.world
    with begin_write(client.app[ENGINE_KEY]) as conn:
        for key in keys:
            serve_register(conn, w.tenant_a, w.registers[key], f"agent-served-{w.registers[key]}", kit.T0,
                           open_for=open_for)


def offered(page: str) -> set[str]:
    return set(re.findall(r'data-action="([a-z_]+)"', page))


def test_the_register_page_offers_only_what_the_role_and_the_shift_allow(client: kit.Client) -> None:
    serve(client, "tverskaya")
    register = f"/registers/{client.world.registers['tverskaya']}"
    owner = client.call("GET", register, who="owner_a").text
    assert "Действия с кассой" in owner
    assert offered(owner) == {"check_now", "x_report", "close_shift"}  # shift open, Shtrih: no reboot, no clock
    assert offered(client.call("GET", register, who="moscow_op").text) == {"check_now", "x_report", "close_shift"}
    for who in ("accountant", "viewer"):
        page = client.call("GET", register, who=who).text
        assert offered(page) == set() and 'id="action-links"' not in page, who
        assert 'id="action-history"' in page, who  # what was done on the register stays readable


def test_a_long_shift_alert_links_to_closing_it_for_those_who_may(client: kit.Client) -> None:
    serve(client, "tverskaya", open_for=timedelta(hours=30))
    w = client.world
    with begin_write(client.app[ENGINE_KEY]) as conn:
        conn.execute(sa.update(alerts).where(alerts.c.id == w.alerts["tverskaya"]).values(rule="shift_too_long"))
    register = f"/registers/{w.registers['tverskaya']}"
    link = f'href="{register}/actions/close_shift" class="close-shift-link"'
    assert link in client.call("GET", register, who="moscow_op").text
    assert link not in client.call("GET", register, who="viewer").text


def test_confirm_then_status_history_and_a_refused_second_action(client: kit.Client) -> None:
    serve(client, "tverskaya")
    w = client.world
    register_id = w.registers["tverskaya"]
    confirm = client.call("GET", f"/registers/{register_id}/actions/close_shift", who="moscow_op")
    assert confirm.status == 200
    text = confirm.text
    assert "Будет снят Z-отчёт: смена № 7 закроется, касса напечатает отчёт" in text
    assert "Тверская 1" in text and register_id[-6:] in text and 'id="action-submit"' in text
    done = client.call("POST", f"/registers/{register_id}/actions", who="moscow_op", data={"action": "close_shift"})
    assert done.status == 303 and done.headers["Location"].endswith("?done=action-requested#register-actions")
    page = client.call("GET", f"/registers/{register_id}?done=action-requested", who="owner_a").text
    assert 'id="action-current" data-status="requested"' in page
    assert "Закрыть смену (Z-отчёт)" in page and w.emails["moscow_op"] in page
    assert offered(page) == set()  # nothing else while one is unfinished
    again = client.call("POST", f"/registers/{register_id}/actions", who="owner_a", data={"action": "x_report"})
    assert again.status == 409 and "уже выполняется действие «Закрыть смену (Z-отчёт)»" in again.text
    assert "already" not in again.text
    busy = client.call("GET", f"/registers/{register_id}/actions/x_report", who="owner_a").text
    assert 'id="action-busy"' in busy and 'id="action-submit"' not in busy
    with client.app[ENGINE_KEY].connect() as conn:
        entries = list_entries(conn, w.tenant_a, target_type="register", target_id=register_id)
    assert [(e.action, e.actor, e.details["action"]) for e in entries] == [
        ("register_action.request", w.emails["moscow_op"], "close_shift")
    ]


def test_a_state_that_forbids_the_action_is_said_before_confirming(client: kit.Client) -> None:
    serve(client, "tverskaya")
    page = client.call("GET", f"/registers/{client.world.registers['tverskaya']}/actions/set_datetime", who="owner_a")
    assert page.status == 200 and "только при закрытой смене: сначала закройте смену" in page.text.replace("\n", " ")
    assert 'id="action-submit"' not in page.text
    assert client.call("GET", f"/registers/{client.world.registers['tverskaya']}/actions/format", who="owner_a").status == 404


def test_bulk_close_from_the_tree(client: kit.Client) -> None:
    w = client.world
    serve(client, "tverskaya", "nevsky", open_for=timedelta(hours=30))
    serve(client, "arbat", open_for=timedelta(hours=3))
    assert "Закрыть долгие смены" in client.call("GET", "/tree", who="owner_a").text
    assert "Закрыть долгие смены" not in client.call("GET", "/tree", who="viewer").text
    preview = client.call("GET", f"/tree/{w.nodes['moscow']}/close-shifts?hours=24", who="moscow_op")
    assert preview.status == 200
    assert w.registers["tverskaya"] in preview.text and w.registers["arbat"] not in preview.text
    assert w.registers["nevsky"] not in preview.text and "Закрыть смены на 1 кассе" in preview.text
    run = client.call("POST", f"/tree/{w.nodes['moscow']}/close-shifts", who="moscow_op", data={"hours": "24"})
    assert run.status == 303
    results = client.call("GET", run.headers["Location"], who="moscow_op")
    assert results.status == 200 and 'data-live="bulk-results"' in results.text
    assert f'data-register-id="{w.registers["tverskaya"]}" data-status="requested"' in results.text
    assert client.call("GET", f"/tree/{w.nodes['spb']}/close-shifts", who="moscow_op").status == 404
