"""The tree page shows one view at a time: the caller's top levels while they fit, and a node with
more below opens its own view (/tree?node=ID) — never a node outside the caller's grants."""

from __future__ import annotations

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
from collector.storage import begin_write
from collector.storage.rollups import VIEW_SIZE

engine = accounts_kit.engine
client = pytest.fixture(kit.fresh_site, name="client")


def test_a_city_too_big_for_the_view_opens_as_its_own_view(client: kit.Client, engine: sa.Engine) -> None:
    w = client.world
    moscow = w.nodes["moscow"]
    assert f'href="/tree?node={moscow}"' not in client.call("GET", "/tree", who="owner_a").text  # all of it fits
    with begin_write(engine) as conn:
        for number in range(VIEW_SIZE):
            tree.create_node(conn, Actor.cli(), w.tenant_a, parent_id=moscow, kind="store", name=f"Магазин №{number}", at=kit.T0)
    top = client.call("GET", "/tree", who="owner_a").text
    assert f'href="/tree?node={moscow}"' in top and "Магазин №7<" not in top and "Петербург" in top
    city = client.call("GET", f"/tree?node={moscow}", who="owner_a").text
    assert "Магазин №7<" in city and "Тверская 1" in city and "Петербург" not in city
    assert 'href="/tree">← Вся структура' in city


def test_a_view_outside_the_grant_or_of_no_node_is_refused(client: kit.Client) -> None:
    w = client.world
    assert "Невский 10" not in client.call("GET", "/tree", who="moscow_op").text
    assert client.call("GET", f"/tree?node={w.nodes['spb']}", who="moscow_op").status == 404
    assert client.call("GET", f"/tree?node={w.nodes['moscow']}", who="moscow_op").status == 200
    assert client.call("GET", "/tree?node=Москва", who="moscow_op").status == 400
