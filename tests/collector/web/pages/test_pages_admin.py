"""The administration pages over HTTP, each within the caller's rights: tree editor and CSV
import with a dry run, users/groups/grants with "why can X see Y", OFD contracts, КЭП orders,
agents with one-time enrollment tokens, notification receivers; CSRF on the forms, refusals
beside their form, nothing half-applied. (Who may open which route is the security table's job.)
"""

from __future__ import annotations

import re
import shlex
import sys
from pathlib import Path

import aiohttp
import pytest
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).parents[2]))
sys.path.insert(0, str(Path(__file__).parents[2] / "security"))
sys.path.insert(0, str(Path(__file__).parent))  # test_pages_accounts, next to us
import accounts_testkit as accounts_kit
import security_testkit as kit
import test_pages_accounts as pages

from agent import cli as agent_cli
from collector.accounts.new_registers import landing_node
from collector.accounts.schema import (
    grants,
    group_members,
    tenant_profiles,
    user_groups,
)
from collector.storage import repository as repo
from collector.storage.contracts import load_contracts
from collector.storage.schema import agents, nodes, registers

engine = accounts_kit.engine


client = pytest.fixture(kit.fresh_site, name="client")


def post(client: kit.Client, who: str, path: str, data: dict[str, str] | None = None) -> kit.Reply:
    return client.call("POST", path, who=who, data=data or {})


def get(client: kit.Client, who: str, path: str, status: int = 200) -> str:
    reply = client.call("GET", path, who=who)
    assert reply.status == status, f"{path}: {reply.status}\n{reply.text[:1500]}"
    return reply.text


def node_named(engine: sa.Engine, tenant: int, name: str) -> sa.Row | None:
    with engine.connect() as conn:
        return conn.execute(sa.select(nodes).where(nodes.c.tenant_id == tenant, nodes.c.name == name)).first()


# --- sections and CSRF ---------------------------------------------------------------------------


def test_each_user_sees_only_the_sections_of_their_rights(client: kit.Client) -> None:
    owner = get(client, "owner_a", "/admin")
    assert all(href in owner for href in ("/admin/tree", "/admin/users", "/admin/contracts", "/admin/kep",
                                          "/admin/agents", "/admin/notifications"))
    accountant = get(client, "accountant", "/admin")
    assert "/admin/contracts" in accountant and "/admin/kep" in accountant and "/admin/tree" not in accountant
    assert "нет прав на управление" in get(client, "viewer", "/admin")
    get(client, "viewer", "/admin/tree", status=403)


def test_a_cookie_session_form_needs_its_form_token(client: kit.Client, engine: sa.Engine) -> None:
    cookies = pages.session_of(pages.log_in(client, client.world.emails["owner_a"]))
    data = {"parent_id": str(client.world.nodes["moscow"]), "kind": "store", "name": "Без токена"}
    forged = client.call("POST", "/admin/tree/nodes", data=data, cookies=cookies)
    assert forged.status == 403 and node_named(engine, client.world.tenant_a, "Без токена") is None
    page = client.call("GET", "/admin/tree", cookies=cookies)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token is not None
    made = client.call("POST", "/admin/tree/nodes", data={**data, "csrf_token": token.group(1)}, cookies=cookies)
    assert made.status == 303 and made.headers["Location"] == "/admin/tree?done=node-created"
    assert node_named(engine, client.world.tenant_a, "Без токена") is not None


# --- tree ----------------------------------------------------------------------------------------


def test_tree_editor_creates_renames_moves_and_deletes(client: kit.Client, engine: sa.Engine) -> None:
    w = client.world
    created = post(client, "owner_a", "/admin/tree/nodes",
                   {"parent_id": str(w.nodes["spb"]), "kind": "store", "name": "Садовая 3"})
    assert created.status == 303
    store = node_named(engine, w.tenant_a, "Садовая 3")
    assert store is not None and store.parent_id == w.nodes["spb"]
    moved = post(client, "owner_a", f"/admin/tree/nodes/{store.id}",
                 {"name": "Садовая 5", "parent_id": str(w.nodes["moscow"])})
    assert moved.status == 303
    after = node_named(engine, w.tenant_a, "Садовая 5")
    assert after is not None and after.parent_id == w.nodes["moscow"]
    clash = post(client, "owner_a", "/admin/tree/nodes",
                 {"parent_id": str(w.nodes["moscow"]), "kind": "store", "name": "Садовая 5"})
    assert clash.status == 200 and "В «Москва» уже есть узел «Садовая 5»" in clash.text and "form-error" in clash.text
    assert post(client, "owner_a", f"/admin/tree/nodes/{store.id}/delete").status == 303
    assert node_named(engine, w.tenant_a, "Садовая 5") is None
    full = post(client, "owner_a", f"/admin/tree/nodes/{w.nodes['tverskaya']}/delete")
    assert "В «Тверская 1» ещё есть кассы" in full.text and node_named(engine, w.tenant_a, "Тверская 1") is not None
    assert "<details open>" in full.text  # the refusal is beside its form, not folded away


def test_a_refused_move_leaves_the_rename_undone_too(client: kit.Client, engine: sa.Engine) -> None:
    w = client.world
    # The move to Петербург succeeds on its own; the rename then clashes with Невский 10 there.
    reply = post(client, "owner_a", f"/admin/tree/nodes/{w.nodes['arbat']}",
                 {"name": "Невский 10", "parent_id": str(w.nodes["spb"])})
    assert reply.status == 200 and "form-error" in reply.text
    arbat = node_named(engine, w.tenant_a, "Арбат 5")
    assert arbat is not None and arbat.parent_id == w.nodes["moscow"]
    below_itself = post(client, "owner_a", f"/admin/tree/nodes/{w.nodes['moscow']}",
                        {"name": "Москва-новая", "parent_id": str(w.nodes["tverskaya"])})
    assert "form-error" in below_itself.text and node_named(engine, w.tenant_a, "Москва-новая") is None


def test_tree_csv_dry_run_reports_by_line_and_changes_nothing(client: kit.Client, engine: sa.Engine) -> None:
    w = client.world
    broken = "brand;city;store\nРомашка Маркет;Казань;Кремлёвская 1\n;;\n;Казань;\n"
    report = post(client, "owner_a", "/admin/tree/import", {"csv_text": broken, "dry_run": "1"})
    assert report.status == 200 and "Строка 4" in report.text and "Ничего не изменено" in report.text
    good = "brand;city;store\nРомашка Маркет;Казань;Кремлёвская 1\n"
    checked = post(client, "owner_a", "/admin/tree/import", {"csv_text": good, "dry_run": "1"})
    assert "Ошибок нет" in checked.text and node_named(engine, w.tenant_a, "Казань") is None
    applied = post(client, "owner_a", "/admin/tree/import", {"csv_text": good})
    assert "Импорт выполнен" in applied.text and node_named(engine, w.tenant_a, "Кремлёвская 1") is not None
    nothing = post(client, "owner_a", "/admin/tree/import", {"csv_text": ""})
    assert "Выберите CSV-файл" in nothing.text


def test_tree_csv_as_an_uploaded_file(client: kit.Client, engine: sa.Engine) -> None:
    def upload(content: bytes) -> kit.Reply:
        form = aiohttp.FormData()
        form.add_field("csv_file", content, filename="stores.csv", content_type="text/csv")
        return client.call("POST", "/admin/tree/import", who="owner_a", data=form)

    cp1251 = upload("brand;city;store\nРомашка Маркет;Тула;Ленина 1\n".encode("cp1251"))
    assert cp1251.status == 200 and "CSV UTF-8" in cp1251.text
    applied = upload("\ufeffbrand;city;store\nРомашка Маркет;Тула;Ленина 1\n".encode())
    assert "Импорт выполнен" in applied.text  # no dry_run field: the box was unticked
    assert node_named(engine, client.world.tenant_a, "Ленина 1") is not None


# --- users, groups, grants, why ------------------------------------------------------------------


def test_groups_grants_and_why_a_colleague_sees_a_register(client: kit.Client, engine: sa.Engine) -> None:
    w = client.world
    assert post(client, "owner_a", "/admin/groups", {"name": "Управляющие СПб"}).status == 303
    with engine.connect() as conn:
        group = conn.execute(sa.select(user_groups.c.id).where(user_groups.c.name == "Управляющие СПб",
                                                                 user_groups.c.tenant_id == w.tenant_a)).scalar_one()
    granted = post(client, "owner_a", "/admin/grants",
                   {"group_id": str(group), "role": "operator", "node_id": str(w.nodes["spb"])})
    assert granted.status == 303
    member = w.users["moscow_op"]
    assert post(client, "owner_a", f"/admin/groups/{group}/members", {"user_id": str(member)}).status == 303
    listing = get(client, "owner_a", "/admin/users")
    assert "Управляющие СПб" in listing and "оператор на «Петербург»" in listing
    why = get(client, "owner_a", f"/admin/why?register={w.registers['nevsky']}&user={member}")
    assert "видна" in why and "«Управляющие СПб» — оператор на узле «Петербург»" in why
    with engine.connect() as conn:
        grant_id = conn.execute(sa.select(grants.c.id).where(grants.c.group_id == group)).scalar_one()
    assert post(client, "owner_a", f"/admin/grants/{grant_id}/delete").status == 303
    assert post(client, "owner_a", f"/admin/grants/{grant_id}/delete").status == 303  # already revoked: done
    assert post(client, "owner_a", f"/admin/groups/{group}/members/{member}/delete").status == 303
    with engine.connect() as conn:
        assert conn.execute(sa.select(group_members).where(group_members.c.group_id == group)).first() is None
    not_covered = get(client, "owner_a", f"/admin/why?register={w.registers['nevsky']}&user={member}")
    assert "не видна" in not_covered


def test_why_answers_404_for_what_the_asker_cannot_see(client: kit.Client) -> None:
    w = client.world
    own = get(client, "moscow_op", f"/admin/why?register={w.registers['tverskaya']}")
    assert "видна" in own and "Москва" in own
    get(client, "moscow_op", f"/admin/why?register={w.registers['nevsky']}", status=404)
    get(client, "owner_a", f"/admin/why?register={w.registers['b_store']}", status=404)
    asking_for_another = f"/admin/why?register={w.registers['tverskaya']}&user={w.users['owner_a']}"
    get(client, "viewer", asking_for_another, status=404)  # only grant managers explain a colleague's view
    assert "видна" in get(client, "viewer", f"/admin/why?register={w.registers['tverskaya']}&user={w.users['viewer']}")


def test_an_invitation_from_the_page_is_mailed(client: kit.Client) -> None:
    w = client.world
    listing = get(client, "owner_a", "/admin/users")
    group = re.search(r'<option value="(\d+)">Группа А</option>', listing)
    assert group is not None
    bad = post(client, "owner_a", "/admin/invitations", {"group_id": group.group(1), "email": "nobody"})
    assert bad.status == 200 and "ivanov@example.ru" in bad.text
    sent = post(client, "owner_a", "/admin/invitations", {"group_id": group.group(1), "email": "colleague@romashka.test"})
    assert sent.status == 303 and client.mailer.sent[-1].to == "colleague@romashka.test"
    assert "/invite?token=" in client.mailer.sent[-1].text and w.emails["owner_a"] in client.mailer.sent[-1].text


# --- contracts -----------------------------------------------------------------------------------


def test_contracts_are_edited_within_rights_and_bad_input_changes_nothing(client: kit.Client, engine: sa.Engine) -> None:
    register = client.world.registers["tverskaya"]
    page = get(client, "accountant", "/admin/contracts")
    assert register in page and client.world.registers["nevsky"] in page
    bad = post(client, "accountant", f"/admin/contracts/{register}", {"activated": "yes", "paid_until": "31/02/2027"})
    assert bad.status == 200 and "Дата оплаты" in bad.text
    saved = post(client, "accountant", f"/admin/contracts/{register}",
                 {"activated": "yes", "paid_until": "2027-03-31", "tariff": "год"})
    assert saved.status == 303
    with engine.connect() as conn:
        contract = load_contracts(conn, [register])[register]
    assert (contract.activated, contract.paid_until.isoformat(), contract.tariff) == (True, "2027-03-31", "год")
    assert post(client, "viewer", f"/admin/contracts/{register}", {"activated": "no"}).status == 403


def test_contract_form_keeps_the_contracted_ofd(client: kit.Client, engine: sa.Engine) -> None:
    register = client.world.registers["tverskaya"]
    bad = post(client, "accountant", f"/admin/contracts/{register}", {"activated": "yes", "ofd": "рога-и-копыта"})
    assert bad.status == 200 and "Выберите ОФД из списка" in bad.text
    saved = post(client, "accountant", f"/admin/contracts/{register}", {"activated": "yes", "ofd": "taxcom"})
    assert saved.status == 303
    with engine.connect() as conn:
        assert load_contracts(conn, [register])[register].ofd_operator == "taxcom"
    assert '<option value="taxcom" selected>Такском</option>' in get(client, "accountant", "/admin/contracts")


def test_contract_csv_dry_run_then_import(client: kit.Client, engine: sa.Engine) -> None:
    w = client.world
    text = f"register_id;activated;paid_until\n{w.registers['arbat']};да;31.12.2027\nnope;да;\n"
    report = post(client, "accountant", "/admin/contracts/import", {"csv_text": text})
    assert "Строка 3" in report.text and "Ничего не изменено" in report.text
    with engine.connect() as conn:
        assert load_contracts(conn, [w.registers["arbat"]]) == {}
    good = f"register_id;activated;paid_until\n{w.registers['arbat']};да;31.12.2027\n"
    assert "Импорт выполнен" in post(client, "accountant", "/admin/contracts/import", {"csv_text": good}).text
    with engine.connect() as conn:
        assert load_contracts(conn, [w.registers["arbat"]])[w.registers["arbat"]].activated is True


# --- КЭП -----------------------------------------------------------------------------------------


# --- agents and enrollment tokens ----------------------------------------------------------------


def test_an_enrollment_token_is_shown_once_and_agents_stay_in_scope(client: kit.Client, engine: sa.Engine) -> None:
    w = client.world
    listing = get(client, "moscow_op", "/admin/agents")
    assert "tverskaya" in listing and "nevsky" not in listing and "Невский" not in listing
    made = post(client, "moscow_op", "/admin/agents/tokens", {"node_id": str(w.nodes["tverskaya"]), "ttl_hours": "2"})
    assert made.status == 200 and made.headers["Cache-Control"] == "no-store"
    command = re.search(r'<code id="enroll-command">(kassa-agent enroll [^<]+)</code>', made.text)
    assert command is not None
    # The whole command the installer runs: the agent's own parser accepts it (--collector is required).
    parsed = agent_cli.build_parser().parse_args(shlex.split(command.group(1))[1:])
    assert parsed.collector == "https://kassa.test" and parsed.token not in get(client, "moscow_op", "/admin/agents")
    assert post(client, "moscow_op", "/admin/agents/tokens", {"node_id": str(w.nodes["nevsky"])}).status == 404
    agent = f"agent-{w.registers['tverskaya'].split('-')[1]}-tverskaya"
    assert post(client, "moscow_op", f"/admin/agents/{agent}/revoke").status == 303
    with engine.connect() as conn:
        assert conn.execute(sa.select(agents.c.revoked).where(agents.c.agent_id == agent)).scalar_one() is True


def test_agents_in_new_registers_are_listed_and_moved_to_a_store(client: kit.Client, engine: sa.Engine) -> None:
    w = client.world
    with engine.begin() as conn:
        inn = conn.execute(sa.select(tenant_profiles.c.inn).where(tenant_profiles.c.tenant_id == w.tenant_a)).scalar_one()
        landing = landing_node(conn, inn)
        repo.enroll_agent(conn, "agent-unplaced", tenant_id=w.tenant_a, node_id=landing.node_id, enrolled_at=kit.T0)
        accounts_kit.add_register(conn, w.tenant_a, landing.node_id, "kkt-unplaced")
        conn.execute(sa.update(registers).where(registers.c.register_id == "kkt-unplaced")
                     .values(agent_id="agent-unplaced", serial="0099887766"))
    assert "Новые кассы" in get(client, "owner_a", "/tree")  # a visible place in the company's tree
    listing = get(client, "owner_a", "/admin/agents")
    assert "Новые кассы" in listing and "agent-unplaced" in listing and "0099887766" in listing
    assert "agent-unplaced" not in get(client, "moscow_op", "/admin/agents")  # granted Москва only
    store = str(w.nodes["tverskaya"])
    assert post(client, "accountant", "/admin/agents/agent-unplaced/place", {"node_id": store}).status == 403
    wrong = post(client, "owner_a", "/admin/agents/agent-unplaced/place", {"node_id": str(w.nodes["moscow"])})
    assert wrong.status == 200 and "не магазин" in wrong.text  # beside its form, nothing moved
    moved = post(client, "owner_a", "/admin/agents/agent-unplaced/place", {"node_id": store})
    assert moved.status == 303 and moved.headers["Location"] == "/admin/agents?done=agent-placed"
    with engine.connect() as conn:
        assert conn.execute(sa.select(registers.c.node_id).where(registers.c.register_id == "kkt-unplaced")
                            ).scalar_one() == w.nodes["tverskaya"]
    assert 'id="new-registers"' not in get(client, "owner_a", "/admin/agents")


def test_a_revoked_agent_that_keeps_reporting_is_listed_in_the_page_not_its_title(
    client: kit.Client, engine: sa.Engine
) -> None:
    w = client.world
    with engine.begin() as conn:
        repo.enroll_agent(conn, "agent-gone", tenant_id=w.tenant_a, node_id=w.nodes["tverskaya"], enrolled_at=kit.T0)
        repo.revoke_agent(conn, "agent-gone")
        for _ in range(2):
            repo.dead_letter(conn, "kassa/v1/agent-gone/state/kkt-gone", "agent_revoked", "revoked", b"{}")
    page = get(client, "owner_a", "/admin/agents")
    title = page.split("<title>", 1)[1].split("</title>", 1)[0]
    assert "<" not in title and "Агенты" in title  # a title is text: the section once leaked into it
    body = page.split("</head>", 1)[1]
    assert 'id="refused-agents"' in body and "agent-gone" in body
    assert "agent-gone" not in get(client, "owner_b", "/admin/agents")  # another company's


# --- notifications -------------------------------------------------------------------------------


def test_notification_receivers_with_quiet_hours(client: kit.Client) -> None:
    owner = str(client.world.users["owner_a"])
    bad = post(client, "owner_a", "/admin/notifications",
               {"channel": "email", "address": "ops@romashka.test", "principal_user_id": owner, "quiet_start": "25:00"})
    assert bad.status == 200 and "Тихие часы" in bad.text
    added = post(client, "owner_a", "/admin/notifications",
                 {"channel": "email", "address": "ops@romashka.test", "principal_user_id": owner,
                  "quiet_start": "22:00", "quiet_end": "07:00", "quiet_floor": "critical"})
    assert added.status == 303
    page = get(client, "owner_a", "/admin/notifications")
    assert "ops@romashka.test" in page and "22:00–07:00" in page
    hook = post(client, "owner_a", "/admin/notifications",
                {"channel": "webhook", "address": "https://hooks.romashka.test/kassa", "principal_user_id": owner})
    secret = re.search(r'id="new-secret">.*?<code>([^<]+)</code>', hook.text, re.S)
    assert hook.status == 200 and secret is not None and secret.group(1) not in get(client, "owner_a", "/admin/notifications")
    # The row of this receiver (the company may already have others).
    receiver = re.search(r'name="receiver_id" value="(\d+)"><button[^>]*aria-label="Удалить получателя ops@romashka\.test"', page)
    assert receiver is not None
    gone = post(client, "owner_a", "/admin/notifications/delete", {"receiver_id": receiver.group(1)})
    assert gone.headers["Location"].endswith("receiver-deleted")
    assert "ops@romashka.test" not in get(client, "owner_a", "/admin/notifications")
    get(client, "accountant", "/admin/notifications", status=403)


def test_unplaced_registers_are_listed_for_company_wide_contract_editors(client: kit.Client, engine: sa.Engine) -> None:
    with engine.begin() as conn:
        conn.execute(sa.update(registers).where(registers.c.register_id == client.world.registers["arbat"])
                     .values(node_id=None))
    assert "не размещена" in get(client, "accountant", "/admin/contracts")


def test_why_accepts_the_serial_rnm_or_fn_number(client: kit.Client, engine: sa.Engine) -> None:
    w = client.world
    numbers = {"tverskaya": ("0012345678", "0000000001012345", "9999078900001111"),
               "arbat": ("0012345678", "0000000002054321", "9999078900002222"),  # the same serial (two vendors)
               "nevsky": ("0099999999", "0000000003000003", "9999078900003333")}
    with engine.begin() as conn:
        for key, (serial, rnm, fn) in numbers.items():
            conn.execute(sa.update(registers).where(registers.c.register_id == w.registers[key])
                         .values(serial=serial, rnm=rnm, fn_serial=fn))
    for number in ("0000000001012345", "9999078900001111", w.registers["tverskaya"]):
        page = get(client, "moscow_op", f"/admin/why?register={number}")
        assert "Касса 0012345678 видна" in page and "Москва" in page, number
    both = get(client, "moscow_op", "/admin/why?register=0012345678")
    assert "Этот номер есть у нескольких касс" in both
    assert f"/admin/why?register={w.registers['tverskaya']}" in both and f"/admin/why?register={w.registers['arbat']}" in both
    hidden = get(client, "moscow_op", "/admin/why?register=0099999999", status=404)  # Петербург: not theirs
    assert "нет кассы с номером «0099999999»" in hidden and w.registers["nevsky"] not in hidden
