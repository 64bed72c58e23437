"""MQTT topic names of the agent↔collector contract.

Topics name agents and registers, never org structure, so regrouping stores never touches an
agent and broker ACLs stay two patterns (``kassa/v1/%u/#`` to publish, its ``cmd``/``ack`` to read)::

    kassa/v1/{agent}/status               retained online/offline (also the LWT)
    kassa/v1/{agent}/birth                full snapshot after every connect and on rebirth
    kassa/v1/{agent}/state/{register}     RegisterState on change and as heartbeat
    kassa/v1/{agent}/event/{register}     discrete events; register ``_agent`` = agent-level event
    kassa/v1/{agent}/hist                 replayed backlog batches
    kassa/v1/{agent}/cmd                  collector → agent commands
    kassa/v1/{agent}/ack                  collector → agent durable high-water mark
    kassa/v1/_collector/status            retained collector online/offline

Ids start with a letter or digit, so the ``_``-prefixed names (``_collector``, ``_agent``) can
never clash with a real agent or register, and the MQTT wildcards ``+``/``#`` and ``/`` can never
appear inside an id.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import ClassVar

from protocol.mqtt.errors import TopicError

TOPIC_ROOT = "kassa/v1"
MAX_ID_LENGTH = 64  # agent and register ids; the collector's id columns are wider
ID_PATTERN = rf"[A-Za-z0-9][A-Za-z0-9_.-]{{0,{MAX_ID_LENGTH - 1}}}"
_ID_RE = re.compile(rf"\A{ID_PATTERN}\Z")
# The longest topic of the contract: kassa/v1/<agent>/<longest kind>/<register>. Anything longer
# is refused before it is split or matched, and never echoed whole into an error message.
MAX_TOPIC_LENGTH = len(TOPIC_ROOT) + 1 + MAX_ID_LENGTH + 1 + len("status") + 1 + MAX_ID_LENGTH
QUOTED_TOPIC_CHARS = 120  # how much of a refused topic an error message repeats

COLLECTOR_ID = "_collector"
COLLECTOR_STATUS_TOPIC = f"{TOPIC_ROOT}/{COLLECTOR_ID}/status"

# Register segment of an agent-level event (outbox_gap, command_error): the event topic always has
# a register segment so one ``event/+`` filter and one ACL pattern cover every event.
AGENT_LEVEL_REGISTER = "_agent"


class TopicKind(StrEnum):
    STATUS = "status"
    BIRTH = "birth"
    STATE = "state"
    EVENT = "event"
    HIST = "hist"
    CMD = "cmd"
    ACK = "ack"


# Kinds whose topic ends in a register segment.
REGISTER_KINDS = frozenset({TopicKind.STATE, TopicKind.EVENT})
# Kinds the collector sends to the agent; an agent must never publish them (broker ACL).
DOWNLINK_KINDS = frozenset({TopicKind.CMD, TopicKind.ACK})


def is_valid_id(value: str) -> bool:
    return bool(_ID_RE.match(value))


def quoted(text: str, limit: int = QUOTED_TOPIC_CHARS) -> str:
    """``repr`` of at most ``limit`` characters of ``text``, saying how long it really was."""
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}… ({len(text)} characters)"


def _check_id(value: str, what: str) -> None:
    if not is_valid_id(value):
        raise TopicError(f"invalid {what} id {quoted(value)}: must match {ID_PATTERN}")


@dataclass(frozen=True)
class AgentTopic:
    """A parsed topic under ``kassa/v1/{agent}/``; ``register_id`` is set only for state/event.

    An event topic with ``register_id=None`` is an agent-level event (rendered as ``…/event/_agent``).
    """

    agent_id: str
    kind: TopicKind
    register_id: str | None = None

    _ROOT_PARTS: ClassVar[tuple[str, ...]] = tuple(TOPIC_ROOT.split("/"))

    def __post_init__(self) -> None:
        _check_id(self.agent_id, "agent")
        try:
            kind = TopicKind(self.kind)  # accepts the plain string too
        except ValueError:
            raise TopicError(f"unknown topic kind {self.kind!r}") from None
        object.__setattr__(self, "kind", kind)
        if self.register_id is not None:
            if kind not in REGISTER_KINDS:
                raise TopicError(f"topic kind {kind.value!r} takes no register id")
            _check_id(self.register_id, "register")
        elif kind is TopicKind.STATE:
            raise TopicError("a state topic needs a register id")

    def render(self) -> str:
        base = f"{TOPIC_ROOT}/{self.agent_id}/{self.kind.value}"
        if self.kind is TopicKind.EVENT:
            return f"{base}/{self.register_id or AGENT_LEVEL_REGISTER}"
        if self.register_id is not None:
            return f"{base}/{self.register_id}"
        return base

    def __str__(self) -> str:
        return self.render()

    @classmethod
    def parse(cls, topic: str) -> AgentTopic:
        """Parse a topic string; raises :class:`TopicError` for anything outside the contract."""
        if len(topic) > MAX_TOPIC_LENGTH:
            raise TopicError(f"topic {quoted(topic)} is longer than the contract's {MAX_TOPIC_LENGTH} characters")
        parts = topic.split("/")
        root_len = len(cls._ROOT_PARTS)
        if tuple(parts[:root_len]) != cls._ROOT_PARTS:
            raise TopicError(f"topic {topic!r} is not under {TOPIC_ROOT}/")
        rest = parts[root_len:]
        if len(rest) not in (2, 3):
            raise TopicError(f"topic {topic!r} must be {TOPIC_ROOT}/<agent>/<kind>[/<register>]")
        agent_id, kind_text = rest[0], rest[1]
        if agent_id == COLLECTOR_ID:
            raise TopicError(f"topic {topic!r} belongs to the collector, not to an agent")
        try:
            kind = TopicKind(kind_text)
        except ValueError:
            raise TopicError(f"topic {topic!r}: unknown kind {kind_text!r}") from None
        register_id: str | None = None
        if kind in REGISTER_KINDS:
            if len(rest) != 3:
                raise TopicError(f"topic {topic!r}: a {kind.value} topic ends with a register id")
            if not (kind is TopicKind.EVENT and rest[2] == AGENT_LEVEL_REGISTER):
                register_id = rest[2]
        elif len(rest) != 2:
            raise TopicError(f"topic {topic!r}: a {kind.value} topic has no register segment")
        return cls(agent_id=agent_id, kind=kind, register_id=register_id)


def status_topic(agent: str) -> str:
    return AgentTopic(agent, TopicKind.STATUS).render()


def birth_topic(agent: str) -> str:
    return AgentTopic(agent, TopicKind.BIRTH).render()


def state_topic(agent: str, register: str) -> str:
    return AgentTopic(agent, TopicKind.STATE, register).render()


def event_topic(agent: str, register: str | None) -> str:
    """``register=None`` gives the agent-level event topic ``…/event/_agent``."""
    return AgentTopic(agent, TopicKind.EVENT, register).render()


def hist_topic(agent: str) -> str:
    return AgentTopic(agent, TopicKind.HIST).render()


def cmd_topic(agent: str) -> str:
    return AgentTopic(agent, TopicKind.CMD).render()


def ack_topic(agent: str) -> str:
    return AgentTopic(agent, TopicKind.ACK).render()


# What a collector subscribes to (everything agents publish).
UPLINK_FILTERS: tuple[str, ...] = (
    f"{TOPIC_ROOT}/+/{TopicKind.STATUS.value}",
    f"{TOPIC_ROOT}/+/{TopicKind.BIRTH.value}",
    f"{TOPIC_ROOT}/+/{TopicKind.STATE.value}/+",
    f"{TOPIC_ROOT}/+/{TopicKind.EVENT.value}/+",
    f"{TOPIC_ROOT}/+/{TopicKind.HIST.value}",
)


def shared(topic_filter: str, group: str = "collectors") -> str:
    """Shared-subscription form (``$share/<group>/<filter>``) for collectors scaled out."""
    if not group or any(ch in group for ch in "/+#"):
        raise TopicError(f"invalid shared-subscription group {group!r}")
    return f"$share/{group}/{topic_filter}"


def agent_filters(agent: str) -> tuple[str, ...]:
    """What an agent subscribes to: its own commands and acks, and the collector's status."""
    return (cmd_topic(agent), ack_topic(agent), COLLECTOR_STATUS_TOPIC)
