"""The register-state vocabulary both state types share: the pydantic ``protocol.kkt.state``
(collector, simulator) and its msgspec mirror ``protocol.mqtt.wire`` (agent). No model library
here, so the agent can name vendors and shift states without loading pydantic."""

from __future__ import annotations

from enum import StrEnum

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
