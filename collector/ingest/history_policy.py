"""Which states become history rows, and what a history row stores.

The latest-state table is rewritten by every message; history only needs what monitoring looks
back at: every change that matters (shift, ФН flags and validity, OFD backlog crossing a band,
device errors, a replaced ФН; ``protocol.kkt.significance``), the register's link coming back,
and enough samples to draw charts — one per ``sample_every`` while the charted values (unsent
count, shift) move, one per ``idle_sample_every`` while they stay flat. A fleet publishing a
heartbeat a minute otherwise writes 72 M rows a day at 50 000 registers.

Severity changes are not decided here: the alert engine records each escalation, de-escalation
and clearing in ``alert_history``. Link and agent transitions are kept in ``events`` and in the
first state after them (``link_up`` differs from the last kept).

Pure: the caller (``collector.ingest.history_keeper``) remembers the last kept row per register.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from protocol.kkt.significance import Aspect, significant_aspects
from protocol.kkt.state import RegisterState

FIRST = "first"  # nothing kept for the register yet (or the collector restarted)
LINK = "link"  # the register's link (or its agent) came back since the last kept state
SAMPLE = "sample"  # a periodic point for charts
REPLAY = "replay"  # the first of a run of records older than the newest kept one

# What history readers use (collector/web/shared/present.history_point: shift, backlog and its age,
# ФН validity and warnings) and what names a significant change (ФН phase, device errors); vendor
# and protocol make it a valid ``RegisterState``. Counters, identity (in ``registers``), firmware
# and the OFD settings are latest-state only.
_HISTORY_FIELDS: dict[str, bool | set[str]] = {
    "schema_version": True, "vendor": True, "protocol": True, "register_clock": True,
    "shift": {"status", "opened_at"},
    "fn": {"phase", "valid_until", "warnings"},
    "ofd": {"unsent_count", "first_unsent_at"},
    "device": {"last_error", "fn_errors"},
}  # fmt: skip


def history_document(state: RegisterState) -> str:
    """The slim JSON a history row stores; it still validates as a ``RegisterState`` (every omitted
    field has a default), so readers parse old full rows and new slim rows alike."""
    return state.model_dump_json(include=_HISTORY_FIELDS, exclude_none=True, exclude_defaults=True)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What the policy compares: one state as monitoring and charts see it. The significant parts
    are kept as one hash per aspect: the collector remembers a snapshot per register (50 000 of
    them), and only needs to know whether, and in which aspect, a state differs."""

    aspects: tuple[int, ...]  # hash of each ``Aspect`` of the significant projection, in enum order
    chart: tuple[str, int | None]  # the values the register page draws
    link_up: bool

    @classmethod
    def of(cls, state: RegisterState, *, link_up: bool = True) -> Snapshot:
        aspects = tuple(map(hash, significant_aspects(state)))  # in ``Aspect`` order, as ``_ASPECT_NAMES``
        return cls(aspects, (state.shift.status._value_, state.ofd.unsent_count), link_up)  # _value_: .value, cheaper

    def changed(self, newer: Snapshot) -> list[str]:
        """The aspects in which ``newer`` differs from this snapshot."""
        if self.aspects == newer.aspects:
            return []
        return [name for name, old, new in zip(_ASPECT_NAMES, self.aspects, newer.aspects, strict=True) if old != new]


# Iterating the enum and reading each member's value is a tenth of a message's history upkeep: once.
_ASPECT_NAMES = tuple(aspect.value for aspect in Aspect)


@dataclass(frozen=True, slots=True)
class Kept:
    """The last history row kept for a register: what it showed and when (collector clock)."""

    snapshot: Snapshot
    at: float  # POSIX seconds of the row's ``ts``


@dataclass(frozen=True, slots=True)
class HistoryPolicy:
    sample_every: timedelta = timedelta(minutes=15)
    idle_sample_every: timedelta = timedelta(hours=6)

    def decide(self, before: Kept | None, after: Snapshot, at: float) -> str | None:
        """Why the state ``after`` made at ``at`` is kept, given the last kept row ``before``
        (None: nothing kept yet); None when it adds nothing to the history."""
        if before is None:
            return FIRST
        if after.link_up and not before.snapshot.link_up:
            return LINK
        changed = before.snapshot.changed(after)
        if changed:
            return ",".join(changed)
        every = self.sample_every if after.chart != before.snapshot.chart else self.idle_sample_every
        return SAMPLE if abs(at - before.at) >= every.total_seconds() else None
