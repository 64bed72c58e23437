"""The register-state vocabulary both state types share: the pydantic ``protocol.kkt.state``
(collector, simulator) and its msgspec mirror ``protocol.mqtt.wire`` (agent). No model library
here, so the agent can name vendors and shift states without loading pydantic."""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, TypeAlias

if TYPE_CHECKING:  # type names only: the agent must not load pydantic, nor this module msgspec
    from protocol.kkt import state
    from protocol.mqtt import wire

    AnyRegisterState: TypeAlias = state.RegisterState | wire.RegisterState
    """A register state as either side holds it: the contract's pydantic model (web, tests) or its
    msgspec mirror (the agent, and the collector's ingest and alert evaluation)."""

STATE_SCHEMA_VERSION = 1

# The driver protocol names a RegisterState may carry (``protocol``): the agent registers one
# session per name, the collector accepts them for new registers.
DRIVER_PROTOCOLS = ("shtrih", "shtrih-alt", "atol", "atol2")


class Vendor(StrEnum):
    SHTRIH = "shtrih"
    ATOL = "atol"


class ShiftStatus(StrEnum):
    OPEN = "open"  # open, 24 h not elapsed
    EXPIRED = "expired"  # open for 24 h or more: fiscal documents are refused until a Z-report
    CLOSED = "closed"
    UNKNOWN = "unknown"


def register_id_of(vendor: Vendor, serial: str | None, fn_serial: str | None) -> str:
    """Stable identity for topics and storage: the factory serial, else the ФН serial."""
    ident = serial or fn_serial
    return f"{vendor.value}-{ident}" if ident else f"{vendor.value}-unknown"


def oldest_unsent_age(register_clock: datetime | None, first_unsent_at: datetime | None, unsent: int | None) -> timedelta | None:
    """Age of the oldest unsent document on the register's own clock, or None if unknown/empty."""
    if first_unsent_at is None or register_clock is None or not unsent:
        return None
    return register_clock - first_unsent_at


def shift_age(register_clock: datetime | None, opened_at: datetime | None, status: ShiftStatus) -> timedelta | None:
    """How long the shift has been open, on the register's clock; None when closed or unknown."""
    if opened_at is None or register_clock is None or status not in (ShiftStatus.OPEN, ShiftStatus.EXPIRED):
        return None
    return register_clock - opened_at
