"""Pages offer only what the user may do: an accountant or a viewer reads alerts but gets no
«Подтвердить», comment or notification form; an operator gets them only inside their grant; a
refusal is Russian. A failed form keeps «Управление» and «Выйти» in the header."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[2]))
sys.path.insert(0, str(Path(__file__).parents[2] / "security"))
sys.path.insert(0, str(Path(__file__).parent))
import accounts_testkit as accounts_kit
import security_testkit as kit
import test_pages_accounts as pages

engine = accounts_kit.engine
client = pytest.fixture(kit.fresh_site, name="client")


def _alerts_page(client: kit.Client, who: str) -> str:
    reply = client.call("GET", "/alerts", who=who)
    assert reply.status == 200, reply.text[:500]
    return reply.text


def _ack_forms(page: str) -> set[int]:
    return {int(found) for found in re.findall(r'action="/alerts/(\d+)/ack"', page)}


def test_read_only_roles_see_alerts_without_any_action(client: kit.Client) -> None:
    w = client.world
    for who in ("accountant", "viewer"):
        page = _alerts_page(client, who)
        assert str(w.alerts["tverskaya"]) in page  # they do see the alerts
        assert _ack_forms(page) == set(), who
        assert "Подтвердить" not in page and 'action="/alerts/ack"' not in page, who
        assert "/comment" not in page and "/silence" not in page and "только просмотр" in page, who


def test_an_operator_gets_actions_only_inside_the_grant(client: kit.Client) -> None:
    w = client.world
    operator = _alerts_page(client, "moscow_op")
    assert _ack_forms(operator) == {w.alerts["tverskaya"], w.alerts["arbat"]}
    assert 'id="bulk-ack"' in operator and "Отключить уведомления до" in operator
    owner = _alerts_page(client, "owner_a")
    assert _ack_forms(owner) == {w.alerts["tverskaya"], w.alerts["arbat"], w.alerts["nevsky"]}


def test_the_register_page_links_to_alert_actions_only_for_those_who_may_act(client: kit.Client) -> None:
    register = f"/registers/{client.world.registers['tverskaya']}"
    link = "Подтвердить, прокомментировать или отключить уведомления"
    assert link in client.call("GET", register, who="owner_a").text
    assert link not in client.call("GET", register, who="accountant").text


def test_a_refused_alert_action_is_explained_in_russian(client: kit.Client) -> None:
    token, cookies = client.page_csrf("accountant")
    alert_id = client.world.alerts["tverskaya"]
    refused = client.call(
        "POST", f"/alerts/{alert_id}/ack", who="accountant", cookies=cookies, data={"csrf_token": token}
    )
    assert refused.status == 403
    assert "ваша роль не позволяет подтверждать" in refused.text and "may see" not in refused.text


def test_a_failed_admin_form_keeps_the_header(client: kit.Client) -> None:
    cookies = pages.session_of(pages.log_in(client, client.world.emails["owner_a"]))
    page = client.call("GET", "/admin/tree", cookies=cookies)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token is not None
    data = {"parent_id": str(client.world.nodes["moscow"]), "kind": "store", "name": "", "csrf_token": token.group(1)}
    failed = client.call("POST", "/admin/tree/nodes", data=data, cookies=cookies)
    assert failed.status == 200 and "form-error" in failed.text
    assert 'href="/admin"' in failed.text and "Выйти" in failed.text
    csrf = token.group(1)
    imported = client.call("POST", "/admin/tree/import", cookies=cookies,
                           data={"csrf_token": csrf, "csv_text": "brand;city;store\nА;Б;В\n", "dry_run": "1"})
    made = client.call("POST", "/admin/agents/tokens", cookies=cookies,
                       data={"csrf_token": csrf, "node_id": str(client.world.nodes["tverskaya"])})
    for answer in (imported, made):  # a CSV report and a new token are pages of a POST too
        assert answer.status == 200 and 'href="/admin"' in answer.text and "Выйти" in answer.text


def test_admin_refusals_are_russian(client: kit.Client) -> None:
    assert client.call("POST", "/admin/groups", who="owner_a", data={"name": "Дубль"}).status == 303
    again = client.call("POST", "/admin/groups", who="owner_a", data={"name": "Дубль"})
    assert again.status == 200 and "Группа «Дубль» уже есть" in again.text and "already exists" not in again.text
    refused = client.call("POST", "/admin/groups", who="viewer", data={"name": "Чужая"})
    assert refused.status == 403 and "Недостаточно прав" in refused.text


def test_the_register_page_links_to_the_kep_page_only_for_those_who_may_open_it(client: kit.Client) -> None:
    register = f"/registers/{client.world.registers['tverskaya']}"
    operator = client.call("GET", register, who="moscow_op").text  # may apply to the ФНС, not order a КЭП
    assert 'id="kep-ordered"' in operator and 'href="/admin/kep"' not in operator
    assert 'href="/admin/kep"' in client.call("GET", register, who="owner_a").text


def test_a_malformed_address_is_refused_in_russian(client: kit.Client) -> None:
    bad = client.call("POST", "/admin/kep/abc/transition", who="owner_a", data={"to": "documents_received"})
    assert bad.status == 400 and "Неверный адрес страницы: order_id" in bad.text and "must be a positive integer" not in bad.text
