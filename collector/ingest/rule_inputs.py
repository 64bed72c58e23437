"""What the alert rules can see of a register, minus what cannot change their verdict — so an
ingest-triggered evaluation can skip a register whose new message changed nothing the rules read.

A poll publishes a new state every few seconds, yet most carry only a new receipt counter, a new
poll time and the register clock read at that poll. The rules read the register clock only as
``register_clock + (now − polled)`` (``rules.polled_at``), so the pair matters only through its offset; receipts and
the last document number are read by no rule. Everything else of ``RuleInput`` (the rest of the
state, agent and link status, contract, zone) must be equal, field by field, for the verdict to be
equal at the same ``now``. Time moving on is the periodic sweep's job, exactly as for a register
that sends nothing.

The times in the key (the register clock's offset, when the agent was last seen or the state
arrived) only ever move a little between two polls, and every rule reads them against thresholds
of minutes or more. :func:`same_verdict` lets each drift by up to ``DRIFT`` since the last
evaluation: as if that evaluation ran a few seconds later, which the sweep period (15 s) already
allows for every time-driven verdict. Without it a register's clock offset and last-seen time,
which move with every message, would make every message an evaluation.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from hashlib import blake2b
from typing import Any

from pydantic import BaseModel

from collector.alerts import RuleInput, Thresholds
from collector.alerts.rules import polled_at
from protocol.kkt.state import RegisterState

# Read by no rule (see above); the shift's receipts likewise.
_RULE_BLIND = frozenset({"read_at", "register_clock", "last_fd_number", "shift"})
# RuleInput fields compared as they are; ``now``, ``state``, the poll, arrival and last-seen times are reduced.
_REDUCED = {"now", "state", "state_received_at", "polled_at", "agent_last_seen"}
_PLAIN_FIELDS = tuple(f.name for f in fields(RuleInput) if f.name not in _REDUCED)
DRIFT = timedelta(seconds=5)  # how far the key's times may move before an evaluation is due again

Instant = datetime | timedelta | None


@dataclass(frozen=True, slots=True)
class RuleInputsKey:
    """``exact`` must be equal; ``times`` (last seen, arrival, register clock offset) may drift (``same_verdict``)."""

    exact: tuple[Any, ...]
    times: tuple[Instant, Instant, Instant]


def _flat(value: Any) -> Any:
    """A nested model as (type, field values): compares like the model, without its ``__eq__``."""
    return (type(value), tuple(value.__dict__.values())) if isinstance(value, BaseModel) else value


def _projected(state: RegisterState) -> tuple[Any, ...]:
    """The state minus what no rule reads, as a tuple of its field values: equal exactly when the
    reduced models would be (same types, same values; nested parts compare field by field), and
    far cheaper to build and compare than two model copies."""
    shift = state.shift
    return (
        type(state),
        tuple(_flat(value) for name, value in state.__dict__.items() if name not in _RULE_BLIND),
        type(shift),
        tuple(value for name, value in shift.__dict__.items() if name != "receipts"),
    )


def rule_inputs_key(inp: RuleInput) -> RuleInputsKey | None:
    """A comparable key of ``inp`` with ``now`` and the rule-blind fields removed; None when the
    input cannot be reduced safely (then the register is always evaluated)."""
    plain = tuple(getattr(inp, name) for name in _PLAIN_FIELDS)
    polled = polled_at(inp) if inp.state is not None else None
    return _key(plain, inp.state, inp.agent_last_seen, inp.state_received_at, polled, inp.now)


def with_state(
    key: RuleInputsKey, state: RegisterState, *, received_at: datetime, polled_at: datetime,
    agent_last_seen: datetime | None, now: datetime,
) -> RuleInputsKey | None:
    """The key of the inputs ``key`` was made from, with another state (polled and received at the
    given times) and last-seen time, at ``now``: what ``rule_inputs_key`` would give for them,
    without building the inputs again."""
    return _key(key.exact[0], state, agent_last_seen, received_at, polled_at, now)


def _key(
    plain: tuple[Any, ...], state: RegisterState | None, last_seen: datetime | None,
    received_at: datetime | None, polled: datetime | None, now: datetime,
) -> RuleInputsKey | None:
    if state is None:
        return RuleInputsKey((plain, None), (last_seen, received_at, None))
    offset: timedelta | None = None
    if state.register_clock is not None:
        if polled is None or polled.utcoffset() is None or polled > now:
            return None  # a poll "in the future" is clamped by the rules: not offset-invariant
        offset = state.register_clock - polled.astimezone(UTC).replace(tzinfo=None)
    # Without a register clock no rule reads the poll time; the agent's read_at is then rule-blind.
    # Arrival time stands in for the agent's last_seen when that is unknown.
    received = received_at if last_seen is None else None
    return RuleInputsKey((plain, _projected(state)), (last_seen, received, offset))


def _close(old: Instant, new: Instant) -> bool:
    if old is None or new is None:
        return old is new
    if isinstance(old, datetime) and isinstance(new, datetime):
        return abs(new - old) <= DRIFT
    if isinstance(old, timedelta) and isinstance(new, timedelta):
        return abs(new - old) <= DRIFT
    return False  # one key's instant against another's offset: never the same position


def same_verdict(old: RuleInputsKey | None, new: RuleInputsKey | None) -> bool:
    """Whether inputs with key ``new`` get the verdict of those with ``old`` (up to ``DRIFT`` of time)."""
    if old is None or new is None or old.exact != new.exact:
        return False
    return all(_close(a, b) for a, b in zip(old.times, new.times, strict=True))


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


def stored_verdict_holds(stored: str | None, digest: str, key: RuleInputsKey) -> bool:
    """Whether a verdict stored with ``stored`` (by any collector) is the one inputs with ``digest``
    and ``key``'s times get: the same exact inputs, each time within ``DRIFT`` (``same_verdict``)."""
    if stored is None:
        return False
    parts = stored.split(";")
    if len(parts) != 4 or parts[0] != digest:
        return False
    try:
        times = [_instant(text) for text in parts[1:]]
    except ValueError:
        return False
    return all(_close(a, b) for a, b in zip(times, key.times, strict=True))


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
