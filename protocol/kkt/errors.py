"""Typed errors of the register codecs.

Deframers never raise: they report damaged frames as values. Decoding a *complete* payload
that does not match its layout raises :class:`DecodeError`; a device answering with a non-zero
error code is represented by :class:`DeviceError` carrying the vendor's Russian meaning.
"""

from __future__ import annotations


class CodecError(Exception):
    """Base class for every error raised by ``protocol.kkt``."""


class DecodeError(CodecError):
    """A complete payload does not match the expected layout (too short, bad value)."""


class EncodeError(CodecError):
    """A value cannot be represented in the wire format (out of range, too long)."""


class DeviceError(CodecError):
    """The register executed the command and answered with an error code."""

    def __init__(self, vendor: str, command: int, code: int, meaning: str) -> None:
        self.vendor = vendor
        self.command = command
        self.code = code
        self.meaning = meaning
        super().__init__(f"{vendor} command {command:#04x}: error {code:#04x} ({code}) — {meaning}")
