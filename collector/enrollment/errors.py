"""Typed refusals of enrollment; the HTTP layer maps each to a status the agent can explain."""

from __future__ import annotations


class EnrollmentError(Exception):
    """Base of every error this package raises on purpose."""


class TokenUnknown(EnrollmentError):
    """No token with this value exists (mistyped, or never issued)."""


class TokenExpired(EnrollmentError):
    """The token exists but its validity ended; the operator must issue a new one."""


class TokenUsed(EnrollmentError):
    """The token was already exchanged by an agent; tokens are single use."""


class UnknownStore(EnrollmentError, LookupError):
    """A token was requested for a node that does not exist."""


class UnknownAgent(EnrollmentError, LookupError):
    """Revocation of an agent id nobody enrolled."""


class BrokerError(EnrollmentError):
    """The broker did not accept a credential change (unreachable, refused, or timed out)."""
