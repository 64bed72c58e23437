"""Typed refusals of the storage layer; callers (ingest, API) turn them into dead letters or 4xx."""

from __future__ import annotations


class StorageError(Exception):
    """Base of every error this package raises on purpose."""


class InvalidValue(StorageError, ValueError):
    """A value the storage cannot accept (unknown severity or sort key, out-of-range seq, …)."""


class UnsupportedDialect(StorageError):
    """A connection to a database other than SQLite or PostgreSQL."""


class UnknownAgent(StorageError, LookupError):
    """The agent id is not enrolled: its data has no tenant or store to go to."""


class AgentRevoked(StorageError):
    """The agent's enrollment was revoked; its data must not be stored."""


class RegisterOwnedElsewhere(StorageError):
    """A register id already belongs to another tenant: refuse rather than move it across tenants."""


class UnknownNode(StorageError, LookupError):
    """A node id that does not exist in the given tenant."""
