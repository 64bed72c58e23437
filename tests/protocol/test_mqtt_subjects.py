"""MQTT topics ↔ NATS subjects as the NATS MQTT gateway maps them (protocol/mqtt/subjects.py)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.mqtt.subjects import subject_to_topic, topic_to_subject
from protocol.mqtt.topics import ID_PATTERN, UPLINK_FILTERS, ack_topic, state_topic


def test_contract_topics_and_filters_map_as_the_gateway_does() -> None:
    assert topic_to_subject(state_topic("pos-1-3f9a2c1b", "0001")) == "kassa.v1.pos-1-3f9a2c1b.state.0001"
    assert topic_to_subject(ack_topic("a.b")) == "kassa.v1.a//b.ack"  # a literal '.' becomes '//'
    assert [topic_to_subject(f) for f in UPLINK_FILTERS][:3] == [
        "kassa.v1.*.status", "kassa.v1.*.birth", "kassa.v1.*.state.*",
    ]
    assert topic_to_subject("kassa/v1/#") == "kassa.v1.>"


def test_a_topic_with_nul_is_refused() -> None:
    with pytest.raises(ValueError, match="NUL"):
        topic_to_subject("kassa/v1/a\x00b/ack")


@given(st.from_regex(ID_PATTERN, fullmatch=True), st.from_regex(ID_PATTERN, fullmatch=True))
def test_subject_back_to_topic_is_the_inverse(agent: str, register: str) -> None:
    topic = state_topic(agent, register)
    assert subject_to_topic(topic_to_subject(topic)) == topic
