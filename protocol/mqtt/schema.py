"""JSON Schema of every MQTT payload, for non-Python consumers and for drift checks.

``json_schemas()`` is pure; ``scripts/export_mqtt_schema.py`` writes the result to
``protocol/mqtt/schema/<name>.json`` and a test fails when the committed files drift.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Final

from pydantic import BaseModel

from protocol.mqtt.models import (
    SCHEMA_VERSION,
    AckPayload,
    BirthPayload,
    CollectorStatusPayload,
    CommandPayload,
    EventPayload,
    HistBatch,
    RefusalPayload,
    StatePayload,
    StatusPayload,
)
from protocol.mqtt.topics import COLLECTOR_STATUS_TOPIC, TOPIC_ROOT

# Where the committed schema files live (a path constant; this module never touches the disk).
SCHEMA_DIR: Final = Path(__file__).with_name("schema")

_MODELS: Final[dict[str, tuple[type[BaseModel], str]]] = {
    "status": (StatusPayload, f"{TOPIC_ROOT}/{{agent}}/status"),
    "birth": (BirthPayload, f"{TOPIC_ROOT}/{{agent}}/birth"),
    "state": (StatePayload, f"{TOPIC_ROOT}/{{agent}}/state/{{register}}"),
    "event": (EventPayload, f"{TOPIC_ROOT}/{{agent}}/event/{{register}}"),
    "hist": (HistBatch, f"{TOPIC_ROOT}/{{agent}}/hist"),
    "cmd": (CommandPayload, f"{TOPIC_ROOT}/{{agent}}/cmd"),
    "ack": (AckPayload, f"{TOPIC_ROOT}/{{agent}}/ack"),
    "refusal": (RefusalPayload, f"{TOPIC_ROOT}/{{agent}}/ack"),
    "collector_status": (CollectorStatusPayload, COLLECTOR_STATUS_TOPIC),
}


def json_schemas() -> dict[str, dict[str, Any]]:
    """Schema per payload name (the file stem), describing what a reader accepts."""
    schemas: dict[str, dict[str, Any]] = {}
    for name, (model, topic) in _MODELS.items():
        schema = model.model_json_schema(mode="validation")
        schemas[name] = {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": f"kassa-monitor/mqtt/v{SCHEMA_VERSION}/{name}.json",
            "x-topic": topic,
            **schema,
        }
    return schemas


def render_schema(schema: dict[str, Any]) -> str:
    """Stable text form of one schema, as committed (sorted keys, 2-space indent, final newline)."""
    return json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def rendered_schemas() -> dict[str, str]:
    """File name → committed text, e.g. ``{"state.json": "{...}"}``."""
    return {f"{name}.json": render_schema(schema) for name, schema in json_schemas().items()}
