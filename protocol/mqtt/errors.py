"""Typed errors of the MQTT contract.

Every error carries a short machine ``reason`` (stable, snake_case) so the collector can file a
rejected message in its dead-letter table without parsing the human message.
"""

from __future__ import annotations


class ContractError(Exception):
    """Base class: a topic or payload that does not follow the agent↔collector contract."""

    reason = "contract_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class TopicError(ContractError):
    """Malformed topic: foreign root, unknown kind, bad id, register segment missing or extra."""

    reason = "bad_topic"


class PayloadTooLarge(ContractError):
    reason = "payload_too_large"


class InvalidJson(ContractError):
    """Not UTF-8 or not JSON at all."""

    reason = "invalid_json"


class UnsupportedSchemaVersion(ContractError):
    """``v`` missing, not an integer, or newer than this code understands."""

    reason = "unsupported_version"


class AgentMismatch(ContractError):
    """The payload's ``agent`` differs from the agent in the topic (spoofing or a bug)."""

    reason = "agent_mismatch"


class RegisterMismatch(ContractError):
    """A state/event payload's ``register`` differs from the register in the topic."""

    reason = "register_mismatch"


class InvalidPayload(ContractError):
    """Valid JSON that fails the model: the message lists every bad field."""

    reason = "invalid_payload"
