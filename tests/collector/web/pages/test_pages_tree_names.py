"""The company's tree in words people use: node pickers show the path («Ромашка Маркет / Москва»),
never «Москва (city)»; the owner names the levels, and every page shows those names; a refused
tree change is explained in Russian beside its form."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).parents[2]))
sys.path.insert(0, str(Path(__file__).parents[2] / "security"))
import accounts_testkit as accounts_kit
import security_testkit as kit

from collector.accounts import tree
from collector.accounts.audit import Actor
from collector.accounts.errors import InvalidInput, PermissionDenied
from collector.storage import begin_write

engine = accounts_kit.engine
client = pytest.fixture(kit.fresh_site, name="client")


def options(page: str, select_id: str) -> list[str]:
    block = page.split(f'id="{select_id}"')[1].split("</select>")[0]
    return re.findall(r"<option[^>]*>([^<]*)</option>", block)


def test_pickers_show_the_path_so_two_cities_of_one_name_differ(client: kit.Client, engine: sa.Engine) -> None:
    w = client.world
    with begin_write(engine) as conn:  # a second brand with its own Москва
        brand = tree.create_node(conn, Actor.cli(), w.tenant_a, parent_id=w.nodes["root_a"], kind="brand",
                                 name="Продукты у дома", at=kit.T0)
        tree.create_node(conn, Actor.cli(), w.tenant_a, parent_id=brand, kind="city", name="Москва", at=kit.T0)
    page = client.call("GET", "/admin/tree", who="owner_a").text
    parents = options(page, "new-parent")
    assert "Ромашка Маркет / Москва (город)" in parents and "Продукты у дома / Москва (город)" in parents
    assert not any("(city)" in option for option in parents)
    assert "Ромашка Маркет / Москва / Тверская 1" in options(client.call("GET", "/admin/agents", who="owner_a").text,
                                                            "token-node")
    grants = options(client.call("GET", "/admin/users", who="owner_a").text, "grant-node")
    assert "Продукты у дома / Москва (город)" in grants


def test_the_owner_names_the_levels_and_pages_show_them(client: kit.Client) -> None:
    assert '<span class="node-kind">Город</span>' in client.call("GET", "/tree", who="owner_a").text
    saved = client.call("POST", "/admin/company/levels", who="owner_a",
                        data={"level_city": "Населённый пункт", "level_store": "Торговая точка"})
    assert saved.status == 303 and saved.headers["Location"] == "/admin/company?done=levels-saved"
    assert '<span class="node-kind">Населённый пункт</span>' in client.call("GET", "/tree", who="owner_a").text
    levels = client.call("GET", "/api/v1/levels", who="viewer").json["items"]
    assert {lv["name"]: lv["title"] for lv in levels}["city"] == "Населённый пункт"  # the API says it too
    editor = client.call("GET", "/admin/tree", who="owner_a").text
    assert "Населённый пункт → Торговая точка" in editor and '<option value="store">Торговая точка</option>' in editor
    clash = client.call("POST", "/admin/company/levels", who="owner_a", data={"level_brand": "Торговая точка"})
    assert clash.status == 200 and "Названия уровней не должны повторяться" in clash.text
    assert client.call("POST", "/admin/company/levels", who="viewer", data={"level_city": "x"}).status == 403
    # an empty title restores the default name
    client.call("POST", "/admin/company/levels", who="owner_a", data={"level_city": ""})
    assert '<span class="node-kind">Город</span>' in client.call("GET", "/tree", who="owner_a").text


def test_level_titles_are_checked_and_kept_when_levels_are_reordered(client: kit.Client, engine: sa.Engine) -> None:
    w = client.world
    with begin_write(engine) as conn:
        owner = Actor.user(conn, w.users["owner_a"])
        with pytest.raises(InvalidInput, match="unknown level"):
            tree.set_level_titles(conn, owner, w.tenant_a, {"galaxy": "Галактика"}, at=kit.T0)
        with pytest.raises(PermissionDenied):
            tree.set_level_titles(conn, Actor.user(conn, w.users["accountant"]), w.tenant_a, {"city": "Г"}, at=kit.T0)
        tree.set_level_titles(conn, owner, w.tenant_a, {"city": "Населённый пункт"}, at=kit.T0)
        names = [level.name for level in tree.levels(conn, w.tenant_a)]
        tree.set_levels(conn, owner, w.tenant_a, names, at=kit.T0)
        assert tree.level_titles(conn, w.tenant_a)["city"] == "Населённый пункт"


def test_a_refused_tree_change_is_explained_in_russian_beside_its_form(client: kit.Client) -> None:
    w = client.world
    wrong = client.call("POST", "/admin/tree/nodes", who="owner_a",
                        data={"parent_id": str(w.nodes["tverskaya"]), "kind": "city", "name": "Город в магазине"})
    assert wrong.status == 200 and "нельзя поставить под «Тверская 1»" in wrong.text
    assert "cannot be placed" not in wrong.text and 'href="/admin"' in wrong.text
    moved = client.call("POST", f"/admin/tree/nodes/{w.nodes['moscow']}", who="owner_a",
                        data={"name": "Москва", "parent_id": str(w.nodes["tverskaya"])})
    assert "нельзя перенести внутрь самого себя" in moved.text
    assert '<details open><summary>Изменить «Москва»' in moved.text


def test_the_register_filter_names_nodes_by_their_path(client: kit.Client, engine: sa.Engine) -> None:
    w = client.world
    with begin_write(engine) as conn:
        brand = tree.create_node(conn, Actor.cli(), w.tenant_a, parent_id=w.nodes["root_a"], kind="brand",
                                 name="Продукты у дома", at=kit.T0)
        tree.create_node(conn, Actor.cli(), w.tenant_a, parent_id=brand, kind="city", name="Москва", at=kit.T0)
    choices = options(client.call("GET", "/registers", who="owner_a").text, "f-node")
    assert "Ромашка Маркет / Москва" in choices and "Продукты у дома / Москва" in choices
    assert "Ромашка Маркет / Москва / Тверская 1" in choices
    # A Moscow operator's tree starts at Москва, so do the paths (only the company itself is left out).
    assert options(client.call("GET", "/registers", who="moscow_op").text, "f-node")[1:] == [
        "Москва", "Москва / Тверская 1", "Москва / Арбат 5"]
