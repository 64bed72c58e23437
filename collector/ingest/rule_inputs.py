"""What the alert rules can see of a register, minus what cannot change their verdict — so an
ingest-triggered evaluation can skip a register whose new message changed nothing the rules read.

A poll publishes a new state every few seconds, yet most carry only a new receipt counter, a new
poll time and the register clock read at that poll. The rules read the register clock only as
``register_clock + (now − polled)`` (``rules.polled_at``), so the pair matters only through its offset; receipts and
the last document number are read by no rule. Everything else of ``RuleInput`` (the rest of the
state, agent and link status, contract, zone) must be equal, field by field, for the verdict to be
equal at the same ``now``. Time moving on is the periodic sweep's job, exactly as for a register
that sends nothing.

The rules read when the agent was last seen and when the state arrived only as their age at
``now`` (silence, "no fresh data"), so the key holds those ages, like the clock's offset: a
heartbeat a minute after the last one, evaluated as it arrives, has the ages of the last one
(nearly nothing), and is no evaluation — at 50 000 registers sending once a minute, absolute times
made every message one. (The verdict's ``last_data_at`` then keeps the evaluated message's time;
it is read only when the verdict is "no data", which a fresh message always changes.)

The times in the key only ever move a little between two messages, and every rule reads them
against thresholds of minutes or more. :func:`same_verdict` lets each drift by up to ``DRIFT``
since the last evaluation: as if that evaluation ran a few seconds later, which the sweep period
(15 s) already allows for every time-driven verdict.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from enum import Enum
from hashlib import blake2b
from operator import attrgetter
from typing import TYPE_CHECKING, Any, get_args

from msgspec import Struct
from msgspec.structs import astuple
from msgspec.structs import fields as struct_fields
from pydantic import BaseModel

from collector.alerts import RuleInput, Thresholds
from collector.alerts.rules import polled_at

if TYPE_CHECKING:
    from protocol.kkt.vocabulary import AnyRegisterState

# Read by no rule (see above); the shift's receipts likewise.
_RULE_BLIND = frozenset({"read_at", "register_clock", "last_fd_number", "shift"})
# RuleInput fields compared as they are; ``now``, ``state``, the poll, arrival and last-seen times are reduced.
_REDUCED = {"now", "state", "state_received_at", "polled_at", "agent_last_seen"}
_PLAIN_FIELDS = tuple(f.name for f in fields(RuleInput) if f.name not in _REDUCED)
_plain_of: Callable[[RuleInput], tuple[Any, ...]] = attrgetter(*_PLAIN_FIELDS)  # several names: always a tuple
DRIFT = timedelta(seconds=5)  # how far the key's times may move before an evaluation is due again

Instant = datetime | timedelta | None
Times = tuple[Instant, Instant, Instant]


@dataclass(frozen=True, slots=True)
class RuleInputsKey:
    """``exact`` must be equal; ``times`` (the ages of last seen and of arrival at the key's ``now``, the
    register clock's offset) may drift (``same_verdict``)."""

    exact: tuple[Any, ...]
    times: Times


def _flat(value: Any) -> Any:
    """A nested part as (type, field values): compares like the part, without its ``__eq__``."""
    if isinstance(value, BaseModel):
        return type(value), tuple(value.__dict__.values())
    return (type(value), astuple(value)) if isinstance(value, Struct) else value


def _is_part(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel | Struct)


def _holds_part(annotation: Any) -> bool:
    """Whether a field so annotated may hold a nested part (``FnState``, ``OfdLinkCheck | None``, …)."""
    return _is_part(annotation) or any(_holds_part(arg) for arg in get_args(annotation))


def _field_types(state_class: type[Any]) -> list[tuple[str, Any]]:
    """(name, annotation) of each field, in declaration order, of a model or of its msgspec mirror."""
    if issubclass(state_class, Struct):
        return [(info.name, info.type) for info in struct_fields(state_class)]
    return [(name, info.annotation) for name, info in state_class.model_fields.items()]


def _getter(names: tuple[str, ...]) -> Callable[[Any], tuple[Any, ...]]:
    """``attrgetter`` that always returns a tuple (it returns the bare value for one name)."""
    if not names:
        return lambda _obj: ()
    if len(names) == 1:
        one = attrgetter(names[0])
        return lambda obj: (one(obj),)
    return attrgetter(*names)


@dataclass(frozen=True, slots=True)
class _Projection:
    """Which fields of one ``RegisterState`` class ``_projected`` reads, and how. The schema is
    static, so this is worked out once per class instead of walking ``__dict__`` with an
    ``isinstance`` per value on every message."""

    plain: Callable[[Any], tuple[Any, ...]]  # fields that cannot hold a part: compared as they are
    # Fields typed as one part class (fn, ofd, device): validation makes each value an instance
    # of it (or of a subclass), so it is taken apart with ``type`` and ``values`` (no Python call).
    parts: Callable[[Any], tuple[Any, ...]]
    values: Callable[[Any], Any]  # a part's field values: ``vars`` of a model, ``astuple`` of a Struct
    maybe: Callable[[Any], tuple[Any, ...]]  # fields that may hold a part or not (a union): ``_flat``


_PROJECTIONS: dict[type[Any], _Projection] = {}
_SHIFT_FIELDS: dict[type[Any], Callable[[Any], tuple[Any, ...]]] = {}  # all of the shift's but receipts


def _projection(state_class: type[Any]) -> _Projection:
    seen = [(name, annotation) for name, annotation in _field_types(state_class) if name not in _RULE_BLIND]
    projection = _Projection(
        plain=_getter(tuple(name for name, annotation in seen if not _holds_part(annotation))),
        parts=_getter(tuple(name for name, annotation in seen if _is_part(annotation))),
        values=astuple if issubclass(state_class, Struct) else vars,
        maybe=_getter(tuple(
            name for name, annotation in seen if _holds_part(annotation) and not _is_part(annotation)
        )),
    )  # fmt: skip
    _PROJECTIONS[state_class] = projection
    return projection


def _shift_fields(shift_class: type[Any]) -> Callable[[Any], tuple[Any, ...]]:
    getter = _getter(tuple(name for name, _ in _field_types(shift_class) if name != "receipts"))
    _SHIFT_FIELDS[shift_class] = getter
    return getter


def _projected(state: AnyRegisterState) -> tuple[Any, ...]:
    """The state minus what no rule reads, as a tuple of its field values: equal exactly when the
    reduced states would be (same types, same values; nested parts compare field by field), and
    far cheaper to build and compare than two copies.

    A nested part is kept as its type and its field values: a model's ``__dict__`` (field → value;
    equal dicts of one class are equal field values; the frozen model's own, not a copy: it lives
    as long as the state the last evaluation's inputs keep anyway), or a Struct's ``astuple``."""
    state_class, shift = type(state), state.shift
    shift_class = type(shift)
    projection = _PROJECTIONS.get(state_class) or _projection(state_class)
    parts = projection.parts(state)
    return (
        state_class,
        projection.plain(state),
        tuple(map(type, parts)),
        tuple(map(projection.values, parts)),
        tuple(map(_flat, projection.maybe(state))),
        shift_class,
        (_SHIFT_FIELDS.get(shift_class) or _shift_fields(shift_class))(shift),
    )


def rule_inputs_key(inp: RuleInput) -> RuleInputsKey | None:
    """A comparable key of ``inp`` with ``now`` and the rule-blind fields removed; None when the
    input cannot be reduced safely (then the register is always evaluated)."""
    plain = _plain_of(inp)
    polled = polled_at(inp) if inp.state is not None else None
    return _key(plain, inp.state, inp.agent_last_seen, inp.state_received_at, polled, inp.now)


def with_state(
    key: RuleInputsKey, state: AnyRegisterState, *, received_at: datetime, polled_at: datetime,
    agent_last_seen: datetime | None, now: datetime,
) -> RuleInputsKey | None:
    """The key of the inputs ``key`` was made from, with another state (polled and received at the
    given times) and last-seen time, at ``now``: what ``rule_inputs_key`` would give for them,
    without building the inputs again."""
    return _key(key.exact[0], state, agent_last_seen, received_at, polled_at, now)


def still_same_verdict(
    key: RuleInputsKey | None, state: AnyRegisterState, *, received_at: datetime, polled_at: datetime,
    agent_last_seen: datetime | None, now: datetime,
) -> bool:
    """``same_verdict(key, with_state(key, state, …))``, without building the new key: the
    in-memory fast path asks this of nearly every state message."""
    if key is None:
        return False
    exact = key.exact
    if exact[1] is None:
        return False  # a key without a state never equals one with a state
    times = fresh_times(state, received_at=received_at, polled_at=polled_at, agent_last_seen=agent_last_seen, now=now)
    if times is None or exact[1] != _projected(state):
        return False
    old_seen, old_received, old_offset = key.times
    new_seen, new_received, new_offset = times
    return _close(old_seen, new_seen) and _close(old_received, new_received) and _close(old_offset, new_offset)


def fresh_times(
    state: AnyRegisterState, *, received_at: datetime, polled_at: datetime, agent_last_seen: datetime | None, now: datetime
) -> Times | None:
    """The ``times`` of a key with this state (``rule_inputs_key``'s), without the rest of the key;
    None when the inputs cannot be reduced."""
    offset = _clock_offset(state, polled_at, now)
    if offset is _UNREDUCIBLE:
        return None
    return _age(now, agent_last_seen), _age(now, received_at if agent_last_seen is None else None), offset


class _Unreducible(Enum):
    """``_clock_offset``'s answer when the inputs cannot be reduced (an enum so that ``is`` narrows)."""

    TOKEN = 0


_UNREDUCIBLE = _Unreducible.TOKEN


def _clock_offset(state: AnyRegisterState, polled: datetime | None, now: datetime) -> timedelta | _Unreducible | None:
    """The register clock's offset from the poll time (None: no clock); ``_UNREDUCIBLE`` when
    the poll is unknown or "in the future" (clamped by the rules: not offset-invariant)."""
    clock = state.register_clock
    if clock is None:
        return None
    if polled is None:
        return _UNREDUCIBLE
    if polled.tzinfo is not UTC:  # a UTC time (the usual) is aware and already in UTC
        if polled.utcoffset() is None:
            return _UNREDUCIBLE
        polled = polled.astimezone(UTC)
    if polled > now:
        return _UNREDUCIBLE
    return clock - polled.replace(tzinfo=None)


def _key(
    plain: tuple[Any, ...], state: AnyRegisterState | None, last_seen: datetime | None,
    received_at: datetime | None, polled: datetime | None, now: datetime,
) -> RuleInputsKey | None:
    if state is None:
        return RuleInputsKey((plain, None), (_age(now, last_seen), _age(now, received_at), None))
    offset = _clock_offset(state, polled, now)
    if offset is _UNREDUCIBLE:
        return None
    # Without a register clock no rule reads the poll time; the agent's read_at is then rule-blind.
    # Arrival time stands in for the agent's last_seen when that is unknown.
    received = received_at if last_seen is None else None
    return RuleInputsKey((plain, _projected(state)), (_age(now, last_seen), _age(now, received), offset))


def _age(now: datetime, moment: datetime | None) -> timedelta | None:
    return None if moment is None else now - moment


def _close(old: Instant, new: Instant) -> bool:
    if old is None or new is None:
        return old is new
    kind = type(old)
    if kind is type(new) and (kind is datetime or kind is timedelta):  # the usual case, without isinstance
        return -DRIFT <= new - old <= DRIFT  # type: ignore[operator]
    if isinstance(old, datetime) and isinstance(new, datetime):
        return abs(new - old) <= DRIFT
    if isinstance(old, timedelta) and isinstance(new, timedelta):
        return abs(new - old) <= DRIFT
    return False  # one key's instant against another's offset: never the same position


def same_verdict(old: RuleInputsKey | None, new: RuleInputsKey | None) -> bool:
    """Whether inputs with key ``new`` get the verdict of those with ``old`` (up to ``DRIFT`` of time)."""
    if old is None or new is None or old.exact != new.exact:
        return False
    old_seen, old_received, old_offset = old.times
    new_seen, new_received, new_offset = new.times
    return _close(old_seen, new_seen) and _close(old_received, new_received) and _close(old_offset, new_offset)


# --- the key as stored beside the verdict, for collectors sharing the stream -------------------


def inputs_digest(thresholds: Thresholds, key: RuleInputsKey) -> str:
    """The exact part of ``key`` and the thresholds as a digest that is the same in every collector
    process: ``repr`` of plain values, types and enums does not depend on hash randomisation (a
    pickle of a model would: its fields-set is a set). Unequal digests only cost an evaluation."""
    text = repr((tuple(thresholds.__dict__.values()), key.exact))
    return blake2b(text.encode(), digest_size=16).hexdigest()


def verdict_key(digest: str, key: RuleInputsKey) -> str:
    """What ``register_state.verdict_key`` stores: the digest and the key's times."""
    return ";".join([digest, *map(_instant_text, key.times)])


def stored_verdict_holds(stored: str | None, digest: str, times: Times) -> bool:
    """Whether a verdict stored with ``stored`` (by any collector) is the one inputs with ``digest``
    and ``times`` (a key's) get: the same exact inputs, each time within ``DRIFT`` (``same_verdict``)."""
    if stored is None:
        return False
    parts = stored.split(";")
    if len(parts) != 4 or parts[0] != digest:
        return False
    try:
        stored_times = [_instant(text) for text in parts[1:]]
    except ValueError:
        return False
    return all(_close(a, b) for a, b in zip(stored_times, times, strict=True))


def _instant_text(value: Instant) -> str:
    if value is None:
        return ""
    if isinstance(value, timedelta):
        return f"d{value.total_seconds():.6f}"
    return f"{value.timestamp():.6f}"


def _instant(text: str) -> Instant:
    if not text:
        return None
    if text.startswith("d"):
        return timedelta(seconds=float(text[1:]))
    return datetime.fromtimestamp(float(text), UTC)
