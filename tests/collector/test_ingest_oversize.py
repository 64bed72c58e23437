"""Oversized payloads against the running system: the broker refuses what is over its
``message_size_limit``, the collector dead-letters what is over its own limit before decoding it
(a bounded prefix, the size and the SHA-256 — never the whole payload), and the dead-letter list
of the JSON API stays small and paged."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from collector.storage import create_engine_from_url
from collector.storage.ingest import DEAD_LETTER_RAW_BYTES
from collector.storage.schema import dead_letters, state_history
from protocol.mqtt.models import MAX_PAYLOAD_BYTES

sys.path.insert(0, str(Path(__file__).parent))  # importlib mode: the helpers next to us
sys.path.insert(0, str(Path(__file__).parents[1]))
import ingest_testkit as kit
from conftest import MOSQUITTO_CONF
from netkit import free_port, wait_for

TOKEN = "oversize-test-token"
REPO = Path(__file__).parents[2]
BROKER_CONFIGS = sorted((REPO / "packaging" / "mosquitto").glob("*.conf"))


def _size_limit(text: str) -> int | None:
    found = re.search(r"^message_size_limit (\d+)$", text, flags=re.MULTILINE)
    return int(found.group(1)) if found else None


@pytest.mark.parametrize("name", [path.name for path in BROKER_CONFIGS] + ["tests/conftest.py"])
def test_every_broker_config_bounds_message_size_above_the_contract(name: str) -> None:
    text = MOSQUITTO_CONF if name == "tests/conftest.py" else (REPO / "packaging" / "mosquitto" / name).read_text()
    limit = _size_limit(text)
    assert limit is not None, f"{name} sets no message_size_limit"
    assert MAX_PAYLOAD_BYTES < limit <= 16 * 1024 * 1024  # a real message passes, a flood does not


@pytest.fixture(params=kit.BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with kit.database_url(request.param, tmp_path) as url:
        yield url


def api_get(listen: str, path: str) -> tuple[bytes, Any]:
    request = urllib.request.Request(f"http://{listen}{path}", headers={"Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(request, timeout=10) as reply:
        body = reply.read()
    return body, json.loads(body)


def count(engine: sa.Engine, table: sa.Table) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())


@pytest.mark.mosquitto
def test_oversize_payloads_cost_a_bounded_prefix_and_the_list_stays_small(
    mqtt_broker: Any, mqtt_recorder: Any, db_url: str
) -> None:
    engine = create_engine_from_url(db_url)
    recorder = mqtt_recorder([])
    listen = f"127.0.0.1:{free_port()}"
    with kit.running_services(mqtt_broker, web=True) as collector:
        collector(db_url, listen=listen, web_auth="token", api_token=TOKEN, max_message_bytes=64 * 1024)
        try:
            flood = b"A" * (2 * 1024 * 1024)  # over the broker's limit: never delivered
            big = [bytes([65 + n]) * (600 * 1024) for n in range(12)]  # under the broker's, over the collector's
            recorder.publish("kassa/v1/agent-o/state/kkt-1", flood)
            for payload in big:
                recorder.publish("kassa/v1/agent-o/state/kkt-1", payload)
            recorder.publish(*kit.state_msg("agent-o", "kkt-1", 1, 0))
            wait_for(lambda: count(engine, state_history) == 1 and count(engine, dead_letters) == len(big), 20,
                     "the good state and one dead letter per big payload")

            with engine.connect() as conn:
                stored = conn.execute(sa.select(sa.func.sum(sa.func.length(dead_letters.c.raw)))).scalar_one()
            assert stored == len(big) * DEAD_LETTER_RAW_BYTES  # 12 × 600 KiB arrived, 48 KiB kept

            body, page = api_get(listen, "/api/v1/dead-letters?limit=5")
            assert len(body) < 100_000 and page["total"] == len(big) and len(page["items"]) == 5
            newest = page["items"][0]
            assert newest["reason"] == "payload_too_large" and "exceeds the collector's limit of 65536" in newest["detail"]
            assert newest["size"] == 600 * 1024 and newest["sha256"] == hashlib.sha256(big[-1]).hexdigest()
            assert base64.b64decode(newest["raw_base64"]) == big[-1][:DEAD_LETTER_RAW_BYTES]

            seen = [item["sha256"] for item in page["items"]]
            while page["next"] is not None:  # the link walks the rest without repeating anything
                _, page = api_get(listen, page["next"])
                seen += [item["sha256"] for item in page["items"]]
            assert seen == [hashlib.sha256(payload).hexdigest() for payload in reversed(big)]
        finally:
            engine.dispose()
