"""Login throttling (issue 13, item 10) through the running app: wrong passwords from other
addresses never lock the owner out; a guessing (e-mail, address) pair waits exponentially
longer; known and unknown e-mails get the same answers; the owner is told once per window.

Clients connect from distinct loopback addresses (127.0.0.x), which the app sees as the callers'
addresses, as it would see different machines."""

from __future__ import annotations

import random
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
import security_testkit as kit
from netkit import wait_for

from collector.accounts.rights import Role
from collector.storage.engine import begin_write

LOGIN = "/api/v1/auth/login"
NOTICE = "Неудачные попытки входа"


def _email(prefix: str) -> str:
    return f"{prefix}-{random.randrange(10**9)}@example.test"


def _user(engine: Any, world: kit.World, email: str) -> None:
    with begin_write(engine) as conn:
        kit.accounts_kit.user_with_role(conn, world.tenant_a, email, Role.VIEWER, world.nodes["root_a"])


def _login_from(client: kit.Client, address: str, email: str, password: str) -> kit.Reply:
    """A login as sent from ``address`` (a loopback alias), checked against the OpenAPI document."""

    async def go() -> kit.Reply:
        connector = aiohttp.TCPConnector(local_addr=(address, 0))
        async with aiohttp.ClientSession(connector=connector) as session, session.post(
            client.client.make_url(LOGIN), json={"email": email, "password": password}
        ) as response:
            return kit.Reply(response.status, response.headers, await response.read())

    reply = client.loop.run_until_complete(go())
    kit.check_reply(client.document, "POST", LOGIN, reply)
    return reply


def _notices(client: kit.Client, email: str) -> list[Any]:
    return [mail for mail in client.mailer.sent if mail.to == email and mail.subject == NOTICE]


def test_wrong_passwords_from_five_addresses_do_not_lock_the_owner_out(
    make_client: Any, engine: Any, world: kit.World
) -> None:
    email = _email("owner")
    _user(engine, world, email)
    client = make_client(clock_offset=timedelta(days=10))
    attackers = [f"127.0.0.{n}" for n in range(2, 7)]
    for address in attackers:
        statuses = [_login_from(client, address, email, "not the password").status for _ in range(5)]
        assert statuses == [401, 401, 401, 429, 429], address  # the 3rd failure starts the wait
    # The app's clock stands still: every attacking pair is still waiting, the owner's is not.
    assert _login_from(client, "127.0.0.7", email, kit.PASSWORD).status == 200
    still = _login_from(client, attackers[0], email, kit.PASSWORD)
    assert still.status == 429 and int(still.headers["Retry-After"]) >= 1


def test_known_and_unknown_e_mails_get_the_same_answers(make_client: Any, engine: Any, world: kit.World) -> None:
    known = _email("known")
    _user(engine, world, known)
    client = make_client(clock_offset=timedelta(days=11))

    def answers(address: str, email: str) -> list[tuple[int, str, str | None]]:
        replies = [_login_from(client, address, email, "not the password") for _ in range(4)]
        return [(r.status, r.json["detail"], r.headers.get("Retry-After")) for r in replies]

    assert answers("127.0.0.8", known) == answers("127.0.0.9", _email("unknown"))


def test_the_owner_is_told_once_per_window(make_client: Any, engine: Any, world: kit.World) -> None:
    email, unknown = _email("told"), _email("nobody")
    _user(engine, world, email)
    client = make_client(clock_offset=timedelta(days=12))
    for n in range(10, 16):  # six failures from six addresses: the fifth crosses the threshold
        assert _login_from(client, f"127.0.0.{n}", email, "not the password").status == 401
        _login_from(client, f"127.0.0.{n}", unknown, "not the password")
    wait_for(lambda: _notices(client, email), 10, "the notice of failed logins")
    notice = _notices(client, email)[0]
    assert "5 раз" in notice.text and "127.0.0.14" in notice.text and "/password-reset" in notice.text
    assert not [mail for mail in client.mailer.sent if mail.to == unknown]

    later = make_client(clock_offset=timedelta(days=12, hours=1, minutes=1))  # the next window
    assert _login_from(later, "127.0.0.16", email, "not the password").status == 401
    wait_for(lambda: _notices(later, email), 10, "the notice of the next window")
    assert len(_notices(client, email)) == 1  # nothing more in the first window

    audit = client.call("GET", "/api/v1/audit", who="owner_a", params={"target_type": "user"}).json["items"]
    assert sum(entry["action"] == "user.login_failures" for entry in audit) >= 2


def test_a_right_password_clears_the_pair(make_client: Any, engine: Any, world: kit.World) -> None:
    email = _email("forgetful")
    _user(engine, world, email)
    client = make_client(clock_offset=timedelta(days=13))
    for _ in range(2):
        assert _login_from(client, "127.0.0.20", email, "not the password").status == 401
    assert _login_from(client, "127.0.0.20", email, kit.PASSWORD).status == 200
    for _ in range(2):  # counted afresh: two more failures cost nothing yet
        assert _login_from(client, "127.0.0.20", email, "not the password").status == 401


def test_a_loopback_alias_is_what_the_app_sees(make_client: Any) -> None:
    """The premise of the tests above: the app throttles by the connecting address."""
    client = make_client(clock_offset=timedelta(days=14))
    statuses = [_login_from(client, "127.0.0.30", _email("x"), "not the password").status for _ in range(11)]
    assert statuses[-1] == 429  # the in-process per-address limiter (10 a minute)
    assert _login_from(client, "127.0.0.31", _email("x"), "not the password").status == 401
