"""Typed driver errors. Every message names the cause; ``hint`` names the fix for the installer."""

from __future__ import annotations

from agent.drivers.link import LinkClosed, LinkError, PortNotFound, PortPermissionDenied

__all__ = [
    "ChecksumError",
    "DeviceRefused",
    "DriverError",
    "LinkClosed",
    "LinkError",
    "NoAnswer",
    "PortNotFound",
    "PortPermissionDenied",
    "ProtocolViolation",
    "split_hint",
]


class DriverError(Exception):
    def __init__(self, message: str, hint: str = "") -> None:
        self.hint = hint
        super().__init__(f"{message}. {hint}" if hint else message)


class NoAnswer(DriverError):
    """Nothing (or nothing valid) came back within the timeout after all retries."""


class ChecksumError(DriverError):
    """Frames kept arriving damaged after every retry (noise, wrong baud rate, bad cable)."""


class ProtocolViolation(DriverError):
    """The device answered, but not in this protocol (wrong protocol selected, or a different device)."""


class DeviceRefused(DriverError):
    """The register answered a command with an error code; ``code`` and ``meaning`` say which."""

    def __init__(self, command: int, code: int, meaning: str) -> None:
        self.command = command
        self.code = code
        self.meaning = meaning
        super().__init__(f"command {command:#06x} refused with error {code:#04x}: {meaning}")


def split_hint(exc: Exception) -> tuple[str, str]:
    """A typed error's cause and its fix (its message embeds the hint at its end)."""
    text, hint = str(exc), getattr(exc, "hint", "")
    if hint and text.endswith(f". {hint}"):
        text = text[: -len(hint) - 2]
    return text, hint
