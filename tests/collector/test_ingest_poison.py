"""One message never stops ingest, and ``/readyz`` tells when the writer cannot commit — through the
running collector service (real Mosquitto, SQLite and PostgreSQL, the real web app)."""

from __future__ import annotations

import json
import sqlite3
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from collector.service import CollectorService
from collector.storage import create_engine_from_url
from collector.storage import repository as repo
from collector.storage.schema import dead_letters, state_history
from protocol.mqtt.topics import MAX_TOPIC_LENGTH

sys.path.insert(0, str(Path(__file__).parent))  # importlib mode: the helpers next to us
sys.path.insert(0, str(Path(__file__).parents[1]))
import ingest_testkit as kit
from netkit import free_port, wait_for

pytestmark = pytest.mark.mosquitto
TOKEN = "poison-test-token"


@pytest.fixture(params=kit.BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with kit.database_url(request.param, tmp_path) as url:
        yield url


@pytest.fixture
def db(db_url: str) -> Iterator[sa.Engine]:
    engine = create_engine_from_url(db_url)
    try:
        yield engine
    finally:
        engine.dispose()


@pytest.fixture
def collector(mqtt_broker: Any) -> Iterator[Callable[..., CollectorService]]:
    """Factory of running services with the web app on a free port (one client id: restarts resume)."""
    with kit.running_services(mqtt_broker, web=True) as make:
        yield lambda db_url, **settings: make(
            db_url, client_id="collector-poison", listen=f"127.0.0.1:{free_port()}", web_auth="token",
            api_token=TOKEN, history_sample_minutes=0, **settings,  # every state stored: the tests count them
        )


def http_get(service: CollectorService, path: str) -> tuple[int, Any]:
    request = urllib.request.Request(
        f"http://{service.config.listen}{path}", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def ingest_check(service: CollectorService) -> tuple[int, dict[str, Any]]:
    status, body = http_get(service, "/readyz")
    return status, next(check for check in body["checks"] if check["name"] == "ingest")


def count(engine: sa.Engine, table: sa.Table) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())


def test_a_message_on_an_oversize_topic_is_dead_lettered_and_good_agents_keep_being_stored(
    db_url: str, db: sa.Engine, collector: Any, mqtt_recorder: Any
) -> None:
    recorder = mqtt_recorder(["kassa/v1/+/ack"])
    service = collector(db_url)
    poison_topic = "kassa/v1/agent-bad/state/" + "x" * 600  # its own subtree: the ACL allows it
    recorder.publish(*kit.state_msg("agent-good", "kkt-1", 1, 0))
    recorder.publish(poison_topic, kit.state_msg("agent-bad", "kkt-9", 1, 0)[1])
    for seq in range(1, 4):
        recorder.publish(*kit.state_msg("agent-good", "kkt-1", 1, seq))

    wait_for(lambda: count(db, state_history) == 4, 15, "the good agent's four states")
    recorder.wait_for(lambda ms: any(m.topic == "kassa/v1/agent-good/ack" and json.loads(m.payload)["seq"] == 3 for m in ms))
    with db.connect() as conn:
        letters = repo.list_dead_letters(conn)
    assert [letter.reason for letter in letters] == ["bad_topic"]
    letter = letters[0]
    assert letter.topic.startswith("kassa/v1/agent-bad/state/xxx") and letter.topic.endswith("…")
    assert len(letter.topic) <= 500 < len(poison_topic)
    assert f"longer than the contract's {MAX_TOPIC_LENGTH} characters" in letter.detail
    status, check = ingest_check(service)
    assert status == 200 and check["ok"] is True

    # The poison was acked with its dead letter: a restarted collector is not handed it again.
    service.stop()
    service = collector(db_url)
    recorder.publish(*kit.state_msg("agent-good", "kkt-1", 1, 4))
    wait_for(lambda: count(db, state_history) == 5, 15, "the state sent after the restart")
    assert count(db, dead_letters) == 1


@pytest.mark.parametrize("backend", [pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_values_postgresql_cannot_store_are_isolated_per_message(
    backend: str, tmp_path: Path, collector: Any, mqtt_recorder: Any
) -> None:
    """A NUL inside the state JSON (JSONB refuses it) and a serial longer than its column: each is
    dead-lettered on its own; the messages around them are stored and acked."""
    with kit.database_url(backend, tmp_path) as url:
        engine = create_engine_from_url(url)
        try:
            recorder = mqtt_recorder(["kassa/v1/+/ack"])
            collector(url, batch_linger=0.3)  # one batch holds all three
            nul_state = kit.register_state("0002").model_copy(update={"firmware": "A\x00B"})
            long_serial = kit.register_state("7" * 80)
            recorder.publish(*kit.state_msg("agent-n", "kkt-1", 1, 0))
            recorder.publish(*kit.state_msg("agent-n", "kkt-2", 1, 1, nul_state))
            recorder.publish(*kit.state_msg("agent-n", "kkt-3", 1, 2, long_serial))
            recorder.publish(*kit.state_msg("agent-n", "kkt-1", 1, 3))
            recorder.wait_for(lambda ms: any(json.loads(m.payload)["seq"] == 3 for m in ms), timeout=15)
            assert count(engine, state_history) == 2
            with engine.connect() as conn:
                letters = {letter.topic: letter for letter in repo.list_dead_letters(conn)}
            assert set(letters) == {"kassa/v1/agent-n/state/kkt-2", "kassa/v1/agent-n/state/kkt-3"}
            assert letters["kassa/v1/agent-n/state/kkt-2"].reason == "data_error"
            long_letter = letters["kassa/v1/agent-n/state/kkt-3"]
            assert long_letter.reason == "invalid_value" and "registers.serial is 80 characters" in long_letter.detail
        finally:
            engine.dispose()


def test_readyz_is_503_while_sqlite_refuses_writes_and_200_once_it_commits_again(
    tmp_path: Path, collector: Any, mqtt_recorder: Any
) -> None:
    path = tmp_path / "locked.db"
    url = f"sqlite:///{path}"
    service = collector(url)
    recorder = mqtt_recorder([])
    assert ingest_check(service)[0] == 200

    holder = sqlite3.connect(path, isolation_level=None)  # another process's long write transaction
    holder.execute("BEGIN IMMEDIATE")
    try:
        recorder.publish(*kit.state_msg("agent-l", "kkt-1", 1, 0))
        _, check = wait_for(lambda: (r := ingest_check(service))[0] == 503 and r, 30, "readyz to turn 503")
        assert check["ok"] is False and "database is locked" in check["detail"]
        assert http_get(service, "/readyz")[1]["checks"][0] == {"name": "database", "ok": True, "detail": "reachable"}
    finally:
        holder.rollback()
        holder.close()
    engine = create_engine_from_url(url)
    try:
        wait_for(lambda: count(engine, state_history) == 1, 30, "the state once the lock is gone")
    finally:
        engine.dispose()
    wait_for(lambda: ingest_check(service)[0] == 200, 10, "readyz back to 200")


@pytest.mark.postgres
def test_readyz_is_503_while_postgresql_is_read_only_and_200_once_it_commits_again(
    tmp_path: Path, collector: Any, mqtt_recorder: Any
) -> None:
    """A failover onto a read-only standby: ``SELECT 1`` answers, every write fails."""
    with kit.database_url("postgresql", tmp_path) as url:
        admin = create_engine_from_url(kit.dbkit.pg_admin_url(), isolation_level="AUTOCOMMIT")
        engine = create_engine_from_url(url)
        name = sa.make_url(url).database

        def read_only(on: bool) -> None:
            with admin.connect() as conn:
                setting = "SET default_transaction_read_only = on" if on else "RESET default_transaction_read_only"
                conn.exec_driver_sql(f'ALTER DATABASE "{name}" {setting}')
                conn.execute(  # the collector's pooled connections reconnect and get the new default
                    sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :db"), {"db": name}
                )

        try:
            service = collector(url)
            recorder = mqtt_recorder([])
            recorder.publish(*kit.state_msg("agent-r", "kkt-1", 1, 0))
            wait_for(lambda: count(engine, state_history) == 1, 15, "the first state")
            read_only(True)
            recorder.publish(*kit.state_msg("agent-r", "kkt-1", 1, 1))
            _, check = wait_for(lambda: (r := ingest_check(service))[0] == 503 and r, 30, "readyz to turn 503")
            assert check["ok"] is False and "read-only" in check["detail"]
            read_only(False)
            wait_for(lambda: count(engine, state_history) == 2, 30, "the state once writes work again")
            wait_for(lambda: ingest_check(service)[0] == 200, 10, "readyz back to 200")
            assert count(engine, dead_letters) == 0  # nothing was dead-lettered while the database refused
        finally:
            engine.dispose()
            admin.dispose()
