"""``python -m demo`` end to end: it starts (embedded amqtt broker, collector, web, 12 simulated
registers with their agents), prints the URL and logins, every planned problem shows up through
the JSON API with the right user's rights, and Ctrl-C (SIGINT) stops it cleanly.
"""

from __future__ import annotations

import http.cookiejar
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # `demo` is a top-level directory of the repo, not an installed package
    sys.path.insert(0, str(REPO))

from demo.broker import free_port  # noqa: E402  (needs the path above)
from demo.fleet import build_fleet  # noqa: E402

pytestmark = pytest.mark.slow

REGISTERS = 12
START_TIMEOUT = 40.0
ALERTS_TIMEOUT = 50.0  # the killed agent needs 30 s of silence, then an evaluation sweep
STOP_TIMEOUT = 10.0
DAY = 86400


class Output:
    """Collects the demo's stdout lines on a thread so waiting never blocks on a full pipe."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        assert process.stdout is not None
        self._thread = threading.Thread(target=self._pump, args=(process.stdout,), daemon=True)
        self._thread.start()

    def _pump(self, stream: Any) -> None:
        for line in stream:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def wait_for(self, text: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self._queue.get(timeout=0.2)
            except queue.Empty:
                continue
            if line is None:
                return False
            self.lines.append(line)
            if text in line:
                return True
        return False

    def rest(self, timeout: float = 2.0) -> str:
        self._thread.join(timeout)
        while not self._queue.empty():
            line = self._queue.get()
            if line is not None:
                self.lines.append(line)
        return "\n".join(self.lines)


def get(url: str, token: str | None) -> tuple[int, Any]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as exc:
        return exc.code, None


def registers_of(api: str, token: str) -> dict[str, dict[str, Any]]:
    status, body = get(f"{api}/registers?limit=200", token)
    assert status == 200, status
    return {item["register_id"]: item for item in body["items"]}


def browser_login(base: str, email: str, password: str) -> urllib.request.OpenerDirector:
    """Log in with the form like a browser; the opener keeps the session cookie."""
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
    with opener.open(f"{base}login", timeout=5) as response:  # the form carries a CSRF token
        page = response.read().decode()
    hidden = re.search(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', page)
    assert hidden, "the login form has no CSRF field"
    form = urllib.parse.urlencode({hidden[1]: hidden[2], "email": email, "password": password}).encode()
    with opener.open(f"{base}login", data=form, timeout=5) as response:  # 303 → the dashboard
        assert response.status == 200 and response.url == base, (response.status, response.url)
    return opener


def missing_alerts(items: dict[str, dict[str, Any]], expected: dict[str, set[str]]) -> dict[str, set[str]]:
    missing = {}
    for register_id, rules in expected.items():
        seen = {alert["rule"] for alert in items.get(register_id, {}).get("active_alerts", [])}
        if rules - seen:
            missing[register_id] = rules - seen
    return missing


@pytest.fixture
def demo(tmp_path: Path) -> Any:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "KASSA_MQTT_URL"}  # always the embedded broker
    env["DEMO_PORT"] = str(port)  # as `DEMO_PORT=N make demo` gives it
    process = subprocess.Popen(
        [sys.executable, "-m", "demo", "--registers", str(REGISTERS), "--data-dir", str(tmp_path)],
        cwd=REPO,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output = Output(process)
    try:
        yield process, output, port, tmp_path
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(5)


def test_demo_starts_shows_the_planned_problems_and_stops_cleanly(demo: Any) -> None:
    process, output, port, data_dir = demo
    started = time.monotonic()
    assert output.wait_for("Press Ctrl-C to stop", START_TIMEOUT), output.rest()
    banner = "\n".join(output.lines)
    base = f"http://127.0.0.1:{port}/"
    assert f"Web:  {base}" in banner
    credentials = json.loads((data_dir / "credentials.json").read_text(encoding="utf-8"))
    users = {u["email"]: u for u in credentials["users"]}
    for user in users.values():  # the banner names every login with its password and token
        assert user["email"] in banner and user["password"] in banner and user["token"] in banner
    owner, kazan, accountant = (users[e]["token"] for e in ("owner@demo.kassa", "kazan@demo.kassa", "accountant@demo.kassa"))
    api = credentials["api"]
    assert get(f"{api}/registers", None)[0] == 401

    fleet = build_fleet(REGISTERS)
    expected = {r.register_id: set(r.profile.expect) for r in fleet.registers if r.profile.expect}
    assert {rule for rules in expected.values() for rule in rules} >= {
        "ofd_backlog", "shift_too_long", "fn_validity", "ofd_contract", "agent_offline",
    }
    deadline = time.monotonic() + ALERTS_TIMEOUT
    while True:
        items = registers_of(api, owner)
        missing = missing_alerts(items, expected)
        if not missing or time.monotonic() > deadline:
            break
        time.sleep(1.0)
    assert not missing, f"alerts still missing after {time.monotonic() - started:.0f} s: {missing}"

    assert set(items) == {r.register_id for r in fleet.registers}
    assert {item["protocol"] for item in items.values()} == {"shtrih", "atol"}
    by_profile = {r.profile.name: items[r.register_id] for r in fleet.registers}
    # 20 days of the ФН's 30 are gone; at 60x the register clock has moved on by about an hour.
    assert 9 * DAY < by_profile["ofd-backlog-20d"]["time_to_block_seconds"] <= 10 * DAY
    # valid for 2 more days: the ФН lasts through the end of that date, so 2-3 days are left
    assert 1 * DAY < by_profile["fn-expiring-2d"]["time_to_block_seconds"] <= 3 * DAY
    # Paid-until 12 days ago: it still sells, documents stop reaching the ФНС, the 30 days run.
    unpaid = by_profile["ofd-unpaid"]
    assert unpaid["sell_status"] == "will_stop" and unpaid["ofd_note"].startswith("оплата ОФД закончилась 12 дней назад")
    assert unpaid["fix"].startswith("Оплатите услуги ОФД")
    assert by_profile["long-shift"]["sell_status"] in ("will_stop", "cannot_sell")  # 23 h 40 min at start
    assert by_profile["not-fiscal"]["sell_status"] == "cannot_sell"
    assert by_profile["healthy"]["active_alerts"] == []
    assert by_profile["healthy"]["sell_status"] == "no_threat" and by_profile["healthy"]["sell_text"] == "Не грозит"
    assert by_profile["agent-offline"]["online"] is False
    assert all(item["online"] for name, item in by_profile.items() if name != "agent-offline")

    # The head's КЭП runs out in 20 days: a company-level warning for those who handle КЭП.
    deadline = time.monotonic() + 30  # the evaluator's periodic sweep raises it
    while (found := get(f"{api}/company/alerts", accountant))[1] == {"items": []} and time.monotonic() < deadline:
        time.sleep(0.5)
    status, company_alerts = found
    assert status == 200 and [(a["rule"], a["severity"]) for a in company_alerts["items"]] == [
        ("kep_validity", "warning")
    ], company_alerts
    assert get(f"{api}/company/alerts", kazan)[0] == 403

    # The city manager sees only the registers of their brand in Kazan; the accountant sees all.
    kazan_ids = {r.register_id for r in fleet.registers if (r.store.brand, r.store.city) == fleet.users[1].scope}
    assert kazan_ids and set(registers_of(api, kazan)) == kazan_ids
    assert set(registers_of(api, accountant)) == set(items)
    # ... and the same over a password login in a browser session.
    session = browser_login(base, "kazan@demo.kassa", users["kazan@demo.kassa"]["password"])
    with session.open(f"{api}/registers?limit=200", timeout=5) as response:
        assert {item["register_id"] for item in json.load(response)["items"]} == kazan_ids

    # Mail is not sent: the banner says where it goes, and its links use the demo's real port.
    assert f"Mail: nothing is sent — invitations, password resets and sign-up links are at {base}demo/mail" in banner
    assert str(data_dir / "demo.log") in banner
    reset = urllib.request.Request(f"{api}/auth/password-reset", data=json.dumps({"email": "owner@demo.kassa"}).encode(),
                                   headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(reset, timeout=5) as response:
        assert response.status == 202
    with urllib.request.urlopen(f"{base}demo/mail", timeout=5) as response:
        mailbox = response.read().decode()
    assert "owner@demo.kassa" in mailbox and f"{base}reset?token=" in mailbox, mailbox
    assert f"{base}reset?token=" in (data_dir / "demo.log").read_text(encoding="utf-8")

    stop_started = time.monotonic()
    process.send_signal(signal.SIGINT)
    try:
        code = process.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the demo did not stop within {STOP_TIMEOUT} s of SIGINT:\n{output.rest()}")
    text = output.rest()
    assert code == 0, text
    assert "demo stopped" in text and "Traceback" not in text, text
    print(f"demo: up in {stop_started - started:.1f} s incl. alerts, stopped in {time.monotonic() - stop_started:.1f} s")
