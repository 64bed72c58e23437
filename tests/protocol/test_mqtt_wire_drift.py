"""The msgspec mirrors (protocol.mqtt.wire) stay the contract the pydantic models define.

Three checks, each failing on drift: the JSON Schemas agree field by field (names, types,
required, constraints); a payload encodes to the same bytes both ways; and a bad payload is
refused by both with the same reason.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel

from protocol.kkt import state as pydantic_state
from protocol.mqtt import models, wire
from protocol.mqtt.errors import ContractError
from tests.protocol.test_mqtt_models import REJECTIONS, ROUND_TRIPS, TOPICS, raw_dict

# Standard JSON only: Infinity and NaN are not JSON numbers. msgspec refuses them anywhere as invalid
# JSON; pydantic's parser takes them, and only a field that reads one refuses it — so a payload with
# Infinity in a field nobody reads is the one designed difference (test below).
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=12,
)

PAIRS: list[tuple[type[BaseModel], type[msgspec.Struct]]] = [
    (models.StatusPayload, wire.StatusPayload),
    (models.BirthPayload, wire.BirthPayload),
    (models.StatePayload, wire.StatePayload),
    (models.EventPayload, wire.EventPayload),
    (models.HistBatch, wire.HistBatch),
    (models.CommandPayload, wire.CommandPayload),
    (models.AckPayload, wire.AckPayload),
    (models.RefusalPayload, wire.RefusalPayload),
    (models.CollectorStatusPayload, wire.CollectorStatusPayload),
    (models.ActionResult, wire.ActionResult),
    (pydantic_state.RegisterState, wire.RegisterState),
]

# Documentation, and the definitions once every reference is resolved.
_DOCUMENTATION = {"title", "description", "default", "discriminator", "examples", "$defs"}


def normalized(node: Any, defs: dict[str, Any]) -> Any:
    """A schema with references resolved and documentation dropped, in one canonical form."""
    if isinstance(node, list):
        return [normalized(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        return normalized(defs[node["$ref"].rsplit("/", 1)[1]], defs)
    out = {key: normalized(value, defs) for key, value in node.items() if key not in _DOCUMENTATION}
    if "oneOf" in out:  # a discriminated union: exactly one branch can match either way
        out["anyOf"] = out.pop("oneOf")
    if "const" in out:  # pydantic states a one-value Literal as const, msgspec as a one-item enum
        out["enum"] = [out.pop("const")]
    if "enum" in out:
        out.pop("type", None)
        out["enum"] = sorted(out["enum"])
    if out.get("additionalProperties") is True:  # any extra keys: both libraries' default
        del out["additionalProperties"]
    if out.get("items") is False and out.get("maxItems") == len(out.get("prefixItems", [])):
        del out["items"]  # a tuple: msgspec also says «nothing after the prefix», maxItems says it too
    if "anyOf" in out:
        out["anyOf"] = sorted(out["anyOf"], key=lambda item: json.dumps(item, sort_keys=True))
    if "required" in out:
        out["required"] = sorted(out["required"])
    return out


def _designed_differences(schema: Any) -> Any:
    """Apply, to the pydantic side, the differences protocol.mqtt.wire's docstring lists."""
    if isinstance(schema, list):
        return [_designed_differences(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: _designed_differences(value) for key, value in schema.items() if key != "properties"}
    if "properties" in schema:
        properties = {name: _designed_differences(value) for name, value in schema["properties"].items()}
        required = set(out.get("required", []))
        if "v" in properties:  # defaulted by the models, whose decode then refuses its absence
            required.add("v")
        if "enum" in properties.get("type", {}):  # a hist record's tag: the models' discriminated
            required.add("type")  # union needs it just as much
        out["properties"] = properties
        out["required"] = sorted(required)
    return out


def schemas(model: type[BaseModel], struct: type[msgspec.Struct]) -> tuple[Any, Any]:
    theirs = model.model_json_schema(mode="validation")
    ours = msgspec.json.schema(struct)
    expected = _designed_differences(normalized(theirs, theirs.get("$defs", {})))
    return expected, normalized(ours, ours.get("$defs", {}))


@pytest.mark.parametrize(("model", "struct"), PAIRS, ids=[model.__name__ for model, _ in PAIRS])
def test_json_schemas_agree(model: type[BaseModel], struct: type[msgspec.Struct]) -> None:
    expected, actual = schemas(model, struct)
    assert actual == expected


def test_the_drift_check_sees_a_changed_field() -> None:
    class Narrower(msgspec.Struct, kw_only=True):
        v: int
        session: int
        seq: int

    expected, actual = schemas(models.AckPayload, Narrower)
    assert actual != expected


@pytest.mark.parametrize(("topic", "payload"), ROUND_TRIPS, ids=[type(p).__name__ for _, p in ROUND_TRIPS])
def test_both_encode_the_same_bytes(topic: str, payload: BaseModel) -> None:
    raw = models.encode(payload)
    mirrored = wire.decode(topic, raw)
    assert wire.encode(mirrored) == raw
    assert models.decode(topic, wire.encode(mirrored)) == payload


def test_an_epoch_is_written_only_when_known() -> None:
    with_epoch = models.AckPayload(session=3, seq=9, epoch="0123456789abcdef")
    for payload in (with_epoch, models.AckPayload(session=3, seq=9)):
        assert wire.encode(wire.decode("kassa/v1/a1/ack", models.encode(payload))) == models.encode(payload)


def test_action_results_encode_the_same_bytes() -> None:
    result = models.ActionResult(id="c-1", action="close_shift", status="failed", code=0x16, meaning="смена > 24 ч")
    raw = result.model_dump_json().encode()
    assert wire.encode(wire.decode_as(wire.ActionResult, raw)) == raw


def test_hist_headers_are_the_models_bytes() -> None:
    ts = datetime(2026, 12, 7, 3, 4, 5, 678000, tzinfo=UTC)
    (batch,) = wire.pack_hist_batches("a1", ts, [("state", models.encode(ROUND_TRIPS[3][1]))])
    assert models.decode("kassa/v1/a1/hist", batch) == models.HistBatch(
        agent="a1", ts=ts, records=[models.HistStateRecord(payload=ROUND_TRIPS[3][1])]
    )


@pytest.mark.parametrize(("topic", "raw", "error", "reason"), REJECTIONS)
def test_both_refuse_for_the_same_reason(topic: str, raw: bytes, error: type[ContractError], reason: str) -> None:
    with pytest.raises(error) as info:
        wire.decode(topic, raw)
    assert info.value.reason == reason


def test_encode_refuses_what_a_reader_would_refuse() -> None:
    payload = wire.AckPayload(v=1, session=0, seq=1)  # sessions start at 1
    with pytest.raises(ContractError, match="session"):
        wire.encode(payload)


def _verdict(decode: Any, topic: str, raw: bytes) -> str:
    try:
        decode(topic, raw)
    except ContractError as exc:
        return exc.reason
    return "accepted"


@given(
    base=st.sampled_from([raw_dict(p) for _, p in ROUND_TRIPS]),
    key=st.sampled_from(["v", "agent", "session", "seq", "ts", "register", "state", "records", "status", "cmd", "epoch"]),
    value=json_values,
    topic=st.sampled_from(TOPICS),
)
def test_mutated_payloads_get_the_same_verdict(base: dict[str, Any], key: str, value: Any, topic: str) -> None:
    raw = json.dumps({**base, key: value}).encode()
    assert _verdict(wire.decode, topic, raw) == _verdict(models.decode, topic, raw)


def test_infinity_in_an_unread_field_is_refused_by_the_mirrors_only() -> None:
    raw = b'{"v":1,"agent":"a1","session":1,"seq":0,"ts":"2026-11-28T09:00:00Z","status":"online","x":Infinity}'
    assert _verdict(wire.decode, "kassa/v1/a1/status", raw) != "accepted"
    assert _verdict(models.decode, "kassa/v1/a1/status", raw) == "accepted"
