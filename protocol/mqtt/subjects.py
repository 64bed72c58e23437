"""MQTT topics ↔ NATS subjects, the way the NATS server's MQTT gateway maps them.

The gateway turns ``/`` into ``.`` and a literal ``.`` of the topic into ``//``; the filter
wildcards ``+`` and ``#`` become ``*`` and ``>``. A collector reading the agents' traffic over NATS
(JetStream) turns subjects back into the topics the rest of the ingest parses, and publishes its
acks and commands on the subject an agent's MQTT subscription matches.
"""

from __future__ import annotations

_DOT = "\x00"  # stands in for a topic's literal '.' while separators are swapped (never in a topic)


def topic_to_subject(topic: str) -> str:
    """``kassa/v1/a.1/ack`` → ``kassa.v1.a//1.ack``; filters' ``+``/``#`` → ``*``/``>``."""
    if _DOT in topic:
        raise ValueError("a topic cannot contain NUL")
    levels = [level.replace(".", "//") for level in topic.split("/")]
    return ".".join("*" if level == "+" else ">" if level == "#" else level for level in levels)


def subject_to_topic(subject: str) -> str:
    """The inverse of :func:`topic_to_subject` for concrete (wildcard-free) subjects."""
    return subject.replace("//", _DOT).replace(".", "/").replace(_DOT, ".")
