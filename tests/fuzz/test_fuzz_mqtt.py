"""Fuzz: the MQTT contract's decoders (``protocol/mqtt``): topic parser and payload decoder.

Property: a topic parses to an :class:`AgentTopic` that renders back to the same string, or fails
with :class:`TopicError`; a payload decodes, or fails with a :class:`ContractError` carrying its
dead-letter reason, and what decodes re-encodes to an equal payload.
"""

from __future__ import annotations

import sys
from pathlib import Path

from hypothesis import example, given
from hypothesis import strategies as st

from protocol.mqtt.errors import ContractError, TopicError
from protocol.mqtt.models import decode, encode
from protocol.mqtt.topics import AGENT_LEVEL_REGISTER, TOPIC_ROOT, AgentTopic

sys.path.insert(0, str(Path(__file__).parent))
from fuzzkit import AGENT, FUZZ, SEEDS, mutated_messages

TOPIC_PARTS = [TOPIC_ROOT, "kassa", "v1", AGENT, "_collector", AGENT_LEVEL_REGISTER, "state", "event", "hist",
               "status", "birth", "cmd", "ack", "", "+", "#", "kkt-1", "$share"]  # fmt: skip
topics = st.lists(st.sampled_from(TOPIC_PARTS) | st.text(max_size=10), min_size=1, max_size=6).map("/".join)
STATUS_TOPIC = SEEDS[0][0]


@FUZZ
@given(topics)
def test_topic_parses_and_renders_back_or_is_a_topic_error(topic: str) -> None:
    try:
        parsed = AgentTopic.parse(topic)
    except TopicError as exc:
        assert exc.reason == "bad_topic"
        return
    assert parsed.render() == topic


@FUZZ
@given(st.sampled_from([t for t, _ in SEEDS]), st.binary(max_size=300))
def test_any_bytes_decode_or_give_a_typed_error(topic: str, raw: bytes) -> None:
    try:
        decode(topic, raw)
    except ContractError as exc:
        assert exc.reason and exc.message


@FUZZ
@given(mutated_messages())
# Offsets that push a timestamp past datetime's range when made UTC raised OverflowError.
@example((STATUS_TOPIC, b'{"v":1,"agent":"agent-1","session":1,"seq":0,"ts":"0001-01-01T00:00:00+05:00","status":"online"}'))
@example((STATUS_TOPIC, b'{"v":1,"agent":"agent-1","session":1,"seq":0,"ts":"9999-12-31T23:59:59-05:00","status":"online"}'))
# NaN/Infinity are accepted by the JSON parser but are not JSON: they came back as null.
@example((SEEDS[3][0], SEEDS[3][1].replace(b'"data":{}', b'"data":{"x":[Infinity]}')))
def test_mutated_payloads_decode_or_give_a_typed_error(message: tuple[str, bytes]) -> None:
    topic, raw = message
    try:
        payload = decode(topic, raw)
    except ContractError as exc:
        assert exc.reason and exc.message
        return
    assert decode(topic, encode(payload)) == payload
