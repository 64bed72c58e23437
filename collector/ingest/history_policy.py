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
from typing import TYPE_CHECKING, get_args

import msgspec
from pydantic import BaseModel

from protocol.kkt.significance import Aspect, significant_aspects
from protocol.kkt.state import RegisterState
from protocol.mqtt import wire

if TYPE_CHECKING:
    from protocol.kkt.vocabulary import AnyRegisterState

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


def history_document(state: AnyRegisterState) -> str:
    """The slim JSON a history row stores; it still validates as a ``RegisterState`` (every omitted
    field has a default), so readers parse old full rows and new slim rows alike.

    The same text as ``model_dump_json(include=_HISTORY_FIELDS, exclude_none=True,
    exclude_defaults=True)`` (``reference_history_document``), for a third of the CPU: pydantic
    compares each field with a fresh default, building a ``FnState()`` & co. per call; here the
    defaults are built once, and what differs from them becomes the ``include``. The msgspec
    mirror that ingest decodes (``protocol.mqtt.wire``) gives the same text, encoded by msgspec."""
    if type(state) is wire.RegisterState:
        return _mirror_history_document(state)
    if type(state) is not RegisterState:
        return reference_history_document(state)  # type: ignore[arg-type]
    include: dict[str, bool | set[str]] = {}
    for name, parts, default in _SLIM_PLAN:
        value = getattr(state, name)
        if value is None:
            continue
        if parts is None:
            if value != default:
                include[name] = True
            continue
        if type(value) is not type(default):  # a subclass (never parsed from JSON): its own defaults apply
            return reference_history_document(state)
        # A nested model is its default when its fields are equal (what its ``__eq__`` compares:
        # these models have no extra or private attributes).
        if vars(value) == vars(default):
            continue
        # Its listed fields that are set and not their default (flat values: ``_slim_plan``).
        include[name] = {
            part for part, part_default in parts
            if (field := getattr(value, part)) is not None and field != part_default
        }  # fmt: skip
    return state.model_dump_json(include=include, exclude_none=True)


def reference_history_document(state: RegisterState) -> str:
    """``history_document`` as pydantic defines it (and the test holds the fast one to)."""
    return state.model_dump_json(include=_HISTORY_FIELDS, exclude_none=True, exclude_defaults=True)


def _default_of(model: type[BaseModel], name: str) -> object:
    info = model.model_fields[name]
    if info.default_factory is not None:
        return info.default_factory()  # type: ignore[call-arg]
    return info.default  # PydanticUndefined for a required field: never equal to a value


def _holds_model(annotation: object) -> bool:
    if isinstance(annotation, type):
        return issubclass(annotation, BaseModel)
    return any(_holds_model(arg) for arg in get_args(annotation))


def _slim_plan() -> tuple[tuple[str, tuple[tuple[str, object], ...] | None, object], ...]:
    plan: list[tuple[str, tuple[tuple[str, object], ...] | None, object]] = []
    for name, parts in _HISTORY_FIELDS.items():
        default = _default_of(RegisterState, name)
        if parts is True:
            # Whole fields are flat values: a model would need its defaults left out recursively.
            assert not _holds_model(RegisterState.model_fields[name].annotation), name
            plan.append((name, None, default))
            continue
        assert isinstance(parts, set) and isinstance(default, BaseModel)
        nested = type(default)
        listed = tuple((part, _default_of(nested, part)) for part in nested.model_fields if part in parts)
        # Only flat parts: a nested model inside would need its defaults compared recursively.
        assert not any(isinstance(part_default, BaseModel) for _, part_default in listed), name
        plan.append((name, listed, default))
    return tuple(plan)


_SLIM_PLAN = _slim_plan()
# The same plan with the mirror's defaults (the same values: the drift test holds the two equal).
_MIRROR_DEFAULTS = wire.RegisterState(vendor=wire.Vendor.ATOL, protocol="")
_MIRROR_PLAN = tuple(
    (name, parts, default if parts is None else getattr(_MIRROR_DEFAULTS, name)) for name, parts, default in _SLIM_PLAN
)
_ENCODER = msgspec.json.Encoder()


def _mirror_history_document(state: wire.RegisterState) -> str:
    """``history_document`` of a mirror: the fields the model's would include, in the same order,
    encoded as the model encodes them (equal Structs compare in C, without ``vars``)."""
    slim: dict[str, object] = {}
    for name, parts, default in _MIRROR_PLAN:
        value = getattr(state, name)
        if value is None:
            continue
        if parts is None:
            if value != default:
                slim[name] = value
        elif value != default:
            slim[name] = {
                part: field for part, part_default in parts
                if (field := getattr(value, part)) is not None and field != part_default
            }  # fmt: skip
    return _ENCODER.encode(slim).decode()


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
