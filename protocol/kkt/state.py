"""``RegisterState``: the vendor-neutral snapshot every driver returns and the agent publishes.

Rules of this model:

* A value a protocol cannot provide is ``None`` ("unknown"), never a guess. Booleans that a
  protocol does not report are ``None`` too.
* Times read from the register (its clock, ФН dates, first unsent document) are the register's
  local wall clock as naive ``datetime``/``date``: the ФН has no time zone. ``read_at`` is the
  agent's own aware UTC timestamp of the poll. Ages are therefore computed on the register's
  clock (``register_clock - first_unsent_at``), which is exactly what the ФН itself uses for its
  30-day and 24-hour rules, and advanced by ``now - read_at`` on the collector.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

from pydantic import BaseModel, ConfigDict, Field

from protocol.kkt.vocabulary import DRIVER_PROTOCOLS as DRIVER_PROTOCOLS
from protocol.kkt.vocabulary import STATE_SCHEMA_VERSION as STATE_SCHEMA_VERSION
from protocol.kkt.vocabulary import ShiftStatus as ShiftStatus
from protocol.kkt.vocabulary import Vendor as Vendor
from protocol.kkt.vocabulary import oldest_unsent_age, register_id_of, shift_age


class _Part(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class ShiftState(_Part):
    status: ShiftStatus = ShiftStatus.UNKNOWN
    number: int | None = Field(None, description="current shift, or the last closed one when closed")
    receipts: int | None = Field(None, description="receipts in the current (or last) shift")
    opened_at: datetime | None = Field(
        None, description="register local time of the shift-open document; None when not derivable"
    )


class FnState(_Part):
    serial: str | None = None
    phase: int | None = Field(None, description="ФН lifecycle phase byte (3 = fiscal mode)")
    phase_name: str | None = None
    fiscal: bool | None = Field(None, description="ФН is in fiscal mode (phase 3)")
    valid_until: date | None = None
    registrations_left: int | None = None
    registrations_done: int | None = None
    documents_left: int | None = Field(None, description="documents the ФН can still make (FF63)")
    free_memory_kb: int | None = None
    warning_flags: int | None = Field(None, description="raw 30h warning byte")
    warnings: list[str] = Field(default_factory=list, description="names of set warning bits")
    firmware: str | None = None


class OfdLinkCheck(_Part):
    """The agent's own test of the OFD server from the register's PC: DNS, then one TCP connect
    (bounded, never a payload) — the store's network as the register sees it."""

    host: str
    port: int
    resolved: bool = Field(description="the host name resolved")
    connected: bool = Field(description="a TCP connection was established")
    error: str | None = Field(None, description="why resolving or connecting failed")
    elapsed_ms: int | None = None
    checked_at: datetime = Field(description="agent UTC time of the check")


class OfdState(_Part):
    unsent_count: int | None = None
    first_unsent_number: int | None = None
    first_unsent_at: datetime | None = Field(None, description="register local time of the oldest unsent FD")
    transport_connected: bool | None = None
    # The ФН exchange status (Shtrih FF39h, ATOL A4 20h), bits beside b0 above.
    message_waiting: bool | None = Field(None, description="b1: a message for the OFD is waiting")
    awaiting_receipt: bool | None = Field(None, description="b2: waiting for the OFD's receipt")
    ofd_command_pending: bool | None = Field(None, description="b3: a command from the OFD is waiting")
    settings_changed: bool | None = Field(None, description="b4: the OFD connection settings changed")
    awaiting_command_answer: bool | None = Field(None, description="b5: waiting for the answer to an OFD command")
    response_timeout: bool | None = Field(None, description="ФН warning b3: OFD response timeout exceeded")
    autonomous: bool | None = Field(None, description="registered in autonomous mode: no OFD exchange at all")
    server_host: str | None = Field(None, description="OFD host the register is set to use (Shtrih table 19, ATOL settings 273/274)")
    server_port: int | None = None
    link_check: OfdLinkCheck | None = None


class DeviceState(_Part):
    paper_present: bool | None = None
    cover_open: bool | None = None
    mode: int | None = Field(None, description="vendor mode number, for diagnostics")
    submode: int | None = None
    last_error: str | None = Field(None, description="last device error seen during the poll, with its meaning")
    fn_errors: list[int] = Field(
        default_factory=list,
        description="ФН result codes (FN_ERRORS: 15h = 30-day rule, 16h = shift over 24 h …) refused this poll",
    )


class RegisterState(_Part):
    """One poll's view of a register. ``register_id`` is the key the agent publishes under."""

    schema_version: int = STATE_SCHEMA_VERSION
    vendor: Vendor
    protocol: str = Field(description="driver protocol name: 'shtrih', 'shtrih-alt', 'atol' or 'atol2'")
    model: str | None = None
    model_id: int | None = None
    serial: str | None = Field(None, description="factory serial number of the register (ЗН ККТ)")
    rnm: str | None = Field(None, description="registration number (РНМ)")
    inn: str | None = None
    firmware: str | None = None
    ffd_version: str | None = None
    register_clock: datetime | None = Field(None, description="register local clock at the poll")
    read_at: datetime | None = Field(None, description="agent UTC time of the poll (set by the agent)")
    last_fd_number: int | None = None
    shift: ShiftState = Field(default_factory=ShiftState)
    fn: FnState = Field(default_factory=FnState)
    ofd: OfdState = Field(default_factory=OfdState)
    device: DeviceState = Field(default_factory=DeviceState)

    @property
    def register_id(self) -> str:
        """Stable identity for topics and storage: the factory serial, else the ФН serial."""
        return register_id_of(self.vendor, self.serial, self.fn.serial)

    def oldest_unsent_age(self) -> timedelta | None:
        """Age of the oldest unsent document on the register's own clock, or None if unknown/empty."""
        return oldest_unsent_age(self.register_clock, self.ofd.first_unsent_at, self.ofd.unsent_count)

    def shift_age(self) -> timedelta | None:
        return shift_age(self.register_clock, self.shift.opened_at, self.shift.status)
