"""Notification receivers on the page: an e-mail receiver added while the collector has no mail
server is accepted with a warning that says so, and every receiver — e-mail or webhook — offers
«Отправить тестовое сообщение», whose outcome is shown in Russian (a real webhook on loopback
receives the test)."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

sys.path.insert(0, str(Path(__file__).parents[2]))
sys.path.insert(0, str(Path(__file__).parents[2] / "security"))
import accounts_testkit as accounts_kit
import security_testkit as kit

engine = accounts_kit.engine
client = pytest.fixture(kit.fresh_site, name="client")


def receiver_ids(page: str) -> list[str]:
    return re.findall(r'action="/admin/notifications/test"[^>]*>.*?name="receiver_id" value="(\d+)"', page)


def test_mail_without_a_mail_server_is_warned_about_and_tested(client: kit.Client) -> None:
    owner = client.world.users["owner_a"]
    made = client.call("POST", "/admin/notifications", who="owner_a",
                       data={"channel": "email", "address": "duty@romashka.test", "principal_user_id": str(owner)})
    assert made.status == 303 and made.headers["Location"] == "/admin/notifications?done=receiver-created-no-mail"
    page = client.call("GET", "/admin/notifications?done=receiver-created-no-mail", who="owner_a").text
    assert "письма ему пока не уйдут" in page and 'id="no-mail-server"' in page
    ids = receiver_ids(page)
    assert ids and page.count("Отправить тестовое сообщение</button>") == len(ids)
    tested = client.call("POST", "/admin/notifications/test", who="owner_a", data={"receiver_id": ids[-1]})
    assert tested.status == 200 and "не настроен почтовый сервер" in tested.text and 'id="test-result"' in tested.text
    assert client.call("POST", "/admin/notifications/test", who="viewer", data={"receiver_id": ids[-1]}).status == 403


def test_a_webhook_receives_the_test_message(client: kit.Client) -> None:
    received: list[Any] = []

    async def hook(request: web.Request) -> web.Response:
        received.append(await request.json())
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/hook", hook)
    server = TestServer(app, host="127.0.0.1")
    client.loop.run_until_complete(server.start_server())
    try:
        url = str(server.make_url("/hook"))
        made = client.call("POST", "/admin/notifications", who="owner_a",
                           data={"channel": "webhook", "address": url,
                                 "principal_user_id": str(client.world.users["owner_a"])})
        assert made.status == 200 and 'id="new-secret"' in made.text
        hook_id = receiver_ids(made.text)[-1]
        tested = client.call("POST", "/admin/notifications/test", who="owner_a", data={"receiver_id": hook_id})
        assert "Тестовое сообщение отправлено" in tested.text, tested.text[-3000:]
        assert len(received) == 1
    finally:
        client.loop.run_until_complete(server.close())
