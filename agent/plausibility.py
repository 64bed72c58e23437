"""Plausibility gate between a driver's ``RegisterState`` and publishing (vendor-neutral, no I/O).

A frame checksum is not proof: two flips of the same bit in two bytes pass Shtrih's XOR LRC, so a
ФН validity of 2028-02-29 (YY=28, DD=29) arrives as 2029-02-28. Values that matter — identity,
registration data, ФН validity and the ФН's counters — are guarded:

* **A guarded value that changes is re-read** and accepted only when the re-read agrees (the
  first read of a register counts as a change). Otherwise the previous value is kept (``None``,
  "unknown", before there is one) and the disagreement is logged. So a one-off corruption is never
  published, and one that slipped into an earlier read cannot pin a counter forever.
* **Implausible values are refused**, each with a logged reason: a ФН validity no ФН can have
  (before the first ФН, or further ahead than the longest-lived ФН) and, while the ФН stays the
  same, counters going backwards. The last accepted value (or ``None``) is published instead.

Cost: one extra poll whenever a guarded value changed, e.g. after a receipt moved the FD counter.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import date, timedelta
from typing import Any

from msgspec.structs import replace

from protocol.mqtt.wire import RegisterState

log = logging.getLogger(__name__)

# Counters of one ФН: +1 may only grow, -1 may only shrink. A new ФН restarts them.
MONOTONIC_FIELDS = {
    "last_fd_number": +1,
    "shift.number": +1,
    "fn.registrations_done": +1,
    "fn.registrations_left": -1,
    "fn.documents_left": -1,
}
# Read again on change, published only when two reads agree.
GUARDED_FIELDS = ("serial", "rnm", "inn", "fn.serial", "fn.valid_until", *MONOTONIC_FIELDS)
FIRST_FN_VALIDITY = date(2016, 7, 1)  # 54-ФЗ ФНs exist since mid-2016
LONGEST_FN_LIFE = timedelta(days=1100 + 30)  # ФН-36 serves 1100 days; a month of slack for clocks


def field(state: RegisterState, path: str) -> Any:
    value: Any = state
    for part in path.split("."):
        value = getattr(value, part)
    return value


def with_fields(state: RegisterState, values: dict[str, Any]) -> RegisterState:
    """A copy of ``state`` with dotted-path fields replaced (the models are frozen)."""
    top: dict[str, Any] = {}
    nested: dict[str, dict[str, Any]] = {}
    for path, value in values.items():
        head, _, rest = path.partition(".")
        if rest:
            nested.setdefault(head, {})[rest] = value
        else:
            top[head] = value
    for head, parts in nested.items():
        top[head] = replace(getattr(state, head), **parts)
    return replace(state, **top)


class PlausibilityGate:
    """Remembers the last accepted snapshot of one register and reviews each new read."""

    def __init__(self, register: Callable[[], str]) -> None:
        self._register = register  # for log lines: the id may only be known after the first read
        self.accepted: RegisterState | None = None
        self.refusals = 0

    def review(self, state: RegisterState, reread: Callable[[], RegisterState]) -> RegisterState:
        """The snapshot to publish for ``state``; ``reread`` polls the register once more."""
        base = self.accepted
        changed = self._changed(state, base)
        if changed:
            try:
                second = reread()
            except Exception as exc:  # unreachable for the re-read: nothing is confirmed
                state = self._keep(state, base, changed, f"the re-read failed ({type(exc).__name__}: {exc})")
            else:
                disagree = [path for path in changed if field(second, path) != field(state, path)]
                if disagree:
                    readings = ", ".join(f"{p}: {field(state, p)} then {field(second, p)}" for p in disagree)
                    state = self._keep(state, base, disagree, f"two reads disagree ({readings})")
        state = self._refuse_implausible(state, base)
        self.accepted = state
        return state

    @staticmethod
    def _changed(state: RegisterState, base: RegisterState | None) -> list[str]:
        """Guarded fields whose new value needs a second read (every known one on the first read)."""
        return [
            path
            for path in GUARDED_FIELDS
            if field(state, path) is not None and (base is None or field(state, path) != field(base, path))
        ]

    def _keep(self, state: RegisterState, base: RegisterState | None, paths: list[str], why: str) -> RegisterState:
        self._refused(f"{', '.join(paths)} changed but {why}: keeping the previous values")
        return with_fields(state, {p: field(base, p) if base is not None else None for p in paths})

    def _refuse_implausible(self, state: RegisterState, base: RegisterState | None) -> RegisterState:
        replaced: dict[str, Any] = {}
        for path, reason in self._implausible(state, base):
            fallback = field(base, path) if base is not None else None
            self._refused(f"{path} = {field(state, path)} refused: {reason}; publishing {fallback}")
            replaced[path] = fallback
        return with_fields(state, replaced) if replaced else state

    def _implausible(self, state: RegisterState, base: RegisterState | None) -> list[tuple[str, str]]:
        problems = []
        valid_until = state.fn.valid_until
        if valid_until is not None:
            if valid_until < FIRST_FN_VALIDITY:
                problems.append(("fn.valid_until", f"earlier than any ФН ({FIRST_FN_VALIDITY})"))
            elif state.register_clock is not None and valid_until > state.register_clock.date() + LONGEST_FN_LIFE:
                problems.append(("fn.valid_until", f"more than {LONGEST_FN_LIFE.days} days after the register clock"))
        if base is not None and state.fn.serial is not None and state.fn.serial == base.fn.serial:
            for path, direction in MONOTONIC_FIELDS.items():
                before, after = field(base, path), field(state, path)
                if before is not None and after is not None and (after - before) * direction < 0:
                    went = "backwards" if direction > 0 else "up"
                    problems.append((path, f"went {went} from {before} with the same ФН"))
        return problems

    def _refused(self, message: str) -> None:
        self.refusals += 1
        register = self._register()
        log.warning("%s: %s", register, message, extra={"register": register})
