"""The committed JSON Schema files must match the pydantic models exactly."""

from __future__ import annotations

import json

from protocol.mqtt.schema import SCHEMA_DIR, json_schemas, rendered_schemas

FIX = "run `.venv/bin/python scripts/export_mqtt_schema.py` and commit protocol/mqtt/schema/"


def test_committed_schema_files_match_the_models() -> None:
    expected = rendered_schemas()
    committed = {path.name: path.read_text(encoding="utf-8") for path in SCHEMA_DIR.glob("*.json")}
    missing = sorted(set(expected) - set(committed))
    extra = sorted(set(committed) - set(expected))
    differ = sorted(name for name in set(expected) & set(committed) if expected[name] != committed[name])
    assert not (missing or extra or differ), f"MQTT JSON Schema drift (missing {missing}, extra {extra}, changed {differ}): {FIX}"


def test_schemas_describe_the_contract() -> None:
    schemas = json_schemas()
    assert set(schemas) == {"status", "birth", "state", "event", "hist", "cmd", "ack", "refusal", "collector_status"}
    state = schemas["state"]
    assert {"agent", "session", "seq", "ts", "register", "reason", "state"} <= set(state["required"])
    assert state["x-topic"] == "kassa/v1/{agent}/state/{register}"
    assert state["properties"]["seq"]["maximum"] == 2**64 - 1
    # Every schema is plain JSON (what the export script writes).
    for schema in schemas.values():
        assert json.loads(json.dumps(schema)) == schema
