"""MQTT topic names: render/parse round-trip, every malformed shape rejected with TopicError."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.mqtt.errors import ContractError, TopicError
from protocol.mqtt.topics import (
    COLLECTOR_STATUS_TOPIC,
    UPLINK_FILTERS,
    AgentTopic,
    TopicKind,
    ack_topic,
    agent_filters,
    birth_topic,
    cmd_topic,
    event_topic,
    hist_topic,
    shared,
    state_topic,
    status_topic,
)

ids = st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")


def test_builders_render_the_documented_names() -> None:
    assert status_topic("a1") == "kassa/v1/a1/status"
    assert birth_topic("a1") == "kassa/v1/a1/birth"
    assert state_topic("a1", "shtrih-0012") == "kassa/v1/a1/state/shtrih-0012"
    assert event_topic("a1", "atol-77") == "kassa/v1/a1/event/atol-77"
    assert event_topic("a1", None) == "kassa/v1/a1/event/_agent"
    assert hist_topic("a1") == "kassa/v1/a1/hist"
    assert cmd_topic("a1") == "kassa/v1/a1/cmd"
    assert ack_topic("a1") == "kassa/v1/a1/ack"
    assert COLLECTOR_STATUS_TOPIC == "kassa/v1/_collector/status"


@given(agent=ids, register=ids, kind=st.sampled_from(list(TopicKind)))
def test_render_parse_round_trip(agent: str, register: str, kind: TopicKind) -> None:
    topic = AgentTopic(agent, kind, register if kind in (TopicKind.STATE, TopicKind.EVENT) else None)
    assert AgentTopic.parse(topic.render()) == topic


def test_agent_level_event_parses_to_no_register() -> None:
    parsed = AgentTopic.parse("kassa/v1/a1/event/_agent")
    assert parsed == AgentTopic("a1", TopicKind.EVENT, None)


@pytest.mark.parametrize(
    "topic",
    [
        "",
        "kassa/v2/a1/status",
        "other/v1/a1/status",
        "kassa/v1/a1",
        "kassa/v1/a1/nonsense",
        "kassa/v1/a1/state",  # register missing
        "kassa/v1/a1/event",
        "kassa/v1/a1/status/r1",  # register where none belongs
        "kassa/v1/a1/hist/r1",
        "kassa/v1/a1/state/r1/extra",
        "kassa/v1/_collector/status",  # reserved, not an agent
        "kassa/v1/_x/status",
        "kassa/v1/a+b/status",
        "kassa/v1/a1/state/r#",
        "kassa/v1/a1/state/",
        "kassa/v1//status",
        "kassa/v1/" + "a" * 65 + "/status",
        "kassa/v1/агент/status",
    ],
)
def test_malformed_topics_raise_topic_error(topic: str) -> None:
    with pytest.raises(TopicError) as info:
        AgentTopic.parse(topic)
    assert isinstance(info.value, ContractError) and info.value.reason == "bad_topic"


def test_constructor_validates_too() -> None:
    with pytest.raises(TopicError):
        AgentTopic("a1", TopicKind.STATE)
    with pytest.raises(TopicError):
        AgentTopic("a1", TopicKind.ACK, "r1")
    with pytest.raises(TopicError):
        AgentTopic("bad/id", TopicKind.STATUS)
    with pytest.raises(TopicError):
        AgentTopic("a1", "bogus")  # type: ignore[arg-type]
    assert AgentTopic("a1", "birth").kind is TopicKind.BIRTH  # type: ignore[arg-type]


def _matches(topic_filter: str, topic: str) -> bool:
    f_parts, t_parts = topic_filter.split("/"), topic.split("/")
    return len(f_parts) == len(t_parts) and all(f in ("+", t) for f, t in zip(f_parts, t_parts, strict=True))


def test_uplink_filters_cover_every_agent_published_kind_and_nothing_downlink() -> None:
    uplink = [status_topic("a"), birth_topic("a"), state_topic("a", "r"), event_topic("a", "r"), event_topic("a", None), hist_topic("a")]
    for topic in uplink:
        assert sum(_matches(f, topic) for f in UPLINK_FILTERS) == 1, topic
    for topic in (cmd_topic("a"), ack_topic("a")):
        assert not any(_matches(f, topic) for f in UPLINK_FILTERS)


def test_shared_subscription_and_agent_filters() -> None:
    assert shared("kassa/v1/+/state/+") == "$share/collectors/kassa/v1/+/state/+"
    assert shared(UPLINK_FILTERS[0], group="g2") == "$share/g2/kassa/v1/+/status"
    with pytest.raises(TopicError):
        shared("kassa/v1/+/status", group="a/b")
    assert agent_filters("a1") == ("kassa/v1/a1/cmd", "kassa/v1/a1/ack", COLLECTOR_STATUS_TOPIC)
