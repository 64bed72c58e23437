"""What in a register's state matters to monitoring, as opposed to counters that move with every sale.

Shared by the agent's publishing policy (significant changes go out at once, counters at most once
a minute) and the collector's history policy (history keeps significant changes plus a periodic
sample), so both sides agree on what a "change that matters" is.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the agent passes the msgspec mirror and must not load pydantic for a type name
    from protocol.kkt.vocabulary import AnyRegisterState as RegisterState

# Unsent-document counts where the OFD backlog changes band: none, some, growing, large, huge.
# Moving inside a band is a counter; crossing a bound is a change (1 = the backlog appeared).
BACKLOG_BOUNDS: tuple[int, ...] = (1, 10, 100, 1000)


class Aspect(StrEnum):
    """Which kind of change made a state significant (stored as the history row's reason)."""

    SHIFT = "shift"
    FN = "fn"
    BACKLOG = "backlog"
    DEVICE = "device"
    IDENTITY = "identity"


def backlog_band(unsent_count: int | None) -> int | None:
    """0 for no backlog, then one more per bound reached; None when the register did not say."""
    return None if unsent_count is None else bisect_right(BACKLOG_BOUNDS, unsent_count)


@dataclass(frozen=True, slots=True)
class Significant:
    """The monitoring-relevant projection of a state, one tuple per :class:`Aspect` (same names)."""

    shift: tuple[str, int | None]
    fn: tuple[int | None, bool | None, date | None, int | None, tuple[str, ...]]
    backlog: tuple[int | None, bool, bool | None, bool | None, str | None, int | None, bool | None, bool | None]
    device: tuple[str | None, tuple[int, ...], bool | None, bool | None]
    identity: tuple[str | None, str | None, str | None]


def significant(state: RegisterState) -> Significant:
    return Significant(*significant_aspects(state))


def significant_aspects(state: RegisterState) -> tuple[
    tuple[str, int | None],
    tuple[int | None, bool | None, date | None, int | None, tuple[str, ...]],
    tuple[int | None, bool, bool | None, bool | None, str | None, int | None, bool | None, bool | None],
    tuple[str | None, tuple[int, ...], bool | None, bool | None],
    tuple[str | None, str | None, str | None],
]:
    """The fields of ``significant(state)`` in :class:`Aspect` order, without the dataclass: the
    collector hashes them for every state message it receives."""
    fn, ofd, device, shift = state.fn, state.ofd, state.device, state.shift
    link = ofd.link_check
    unsent = ofd.unsent_count
    return (
        # ``_value_`` is ``.value`` without the enum property's Python-level descriptor call.
        (shift.status._value_, shift.number),
        (fn.phase, fn.fiscal, fn.valid_until, fn.warning_flags, tuple(fn.warnings)),
        # An oldest unsent document appearing or going is a backlog change whatever the count says;
        # so is anything the OFD diagnosis names a cause by (server, timeout, the PC's link check).
        (
            None if unsent is None else bisect_right(BACKLOG_BOUNDS, unsent),  # backlog_band, inlined
            ofd.first_unsent_at is not None,
            ofd.autonomous,
            ofd.response_timeout,
            ofd.server_host,
            ofd.server_port,
            None if link is None else link.resolved,
            None if link is None else link.connected,
        ),
        (device.last_error, tuple(device.fn_errors), device.paper_present, device.cover_open),
        (state.serial, state.rnm, fn.serial),
    )
