"""What each MQTT identity may do, written once and rendered by both credential backends.

An agent may publish only its own uplink topics (never ``cmd``/``ack``, which only the
collector sends) and may read only its own ``cmd``/``ack`` and the collector's status. The
collector reads everything under ``kassa/v1/`` and publishes the downlink topics and its status.
Topic strings are built here from ``protocol.mqtt.topics`` names, so a renamed kind cannot drift
away from the broker rules.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from protocol.mqtt.topics import COLLECTOR_STATUS_TOPIC, DOWNLINK_KINDS, REGISTER_KINDS, TOPIC_ROOT, TopicKind

# Mosquitto's ACL-file substitution for the authenticated username (= the agent id).
USERNAME_PATTERN = "%u"


class Access(StrEnum):
    PUBLISH = "publish"  # the client may send to the topic
    READ = "read"  # the client may subscribe to the filter and receive matching messages


@dataclass(frozen=True, slots=True)
class AclRule:
    access: Access
    topic: str


def agent_rules(agent: str) -> tuple[AclRule, ...]:
    """Rules of one agent; ``agent`` is its id, or ``%u`` for a pattern in a Mosquitto ACL file."""
    base = f"{TOPIC_ROOT}/{agent}"
    uplink = [kind for kind in TopicKind if kind not in DOWNLINK_KINDS]
    publish = tuple(
        AclRule(
            Access.PUBLISH, f"{base}/{kind.value}/+" if kind in REGISTER_KINDS else f"{base}/{kind.value}"
        )
        for kind in uplink
    )
    read = tuple(AclRule(Access.READ, f"{base}/{kind.value}") for kind in sorted(DOWNLINK_KINDS))
    return (*publish, *read, AclRule(Access.READ, COLLECTOR_STATUS_TOPIC))


def collector_rules() -> tuple[AclRule, ...]:
    downlink = tuple(
        AclRule(Access.PUBLISH, f"{TOPIC_ROOT}/+/{kind.value}") for kind in sorted(DOWNLINK_KINDS)
    )
    return (
        AclRule(Access.READ, f"{TOPIC_ROOT}/#"),
        *downlink,
        AclRule(Access.PUBLISH, COLLECTOR_STATUS_TOPIC),
    )
