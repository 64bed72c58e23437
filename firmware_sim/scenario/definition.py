"""What a scenario is once read: its initial ``[state]``, background ``[life]`` and timeline, and the
register model that state starts as."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any

from firmware_sim.action_faults import ActionFaults, SimAction
from firmware_sim.model import FiscalRefused, ReceiptState, RegisterModel
from firmware_sim.scenario.actions import fn_memory_full
from firmware_sim.scenario.values import IDENTITY_KEYS, ScenarioError, parse_duration, parse_phase


@dataclass(frozen=True)
class Life:
    sell_every: timedelta | None = None
    ofd_drain_every: timedelta | None = None
    amount: int = 10_000  # kopecks per background sale
    opens: time | None = None  # the store's trading day on the register clock (both or neither)
    closes: time | None = None

    def trading(self, now: datetime) -> bool:
        """Inside the trading day (always, without a timetable)."""
        if self.opens is None or self.closes is None:
            return True
        return self.opens <= now.time() < self.closes

    def last_close(self, now: datetime) -> datetime | None:
        """The most recent closing time at or before ``now``; None without a timetable."""
        if self.closes is None:
            return None
        today = datetime.combine(now.date(), self.closes)
        return today if today <= now else today - timedelta(days=1)


@dataclass(frozen=True)
class TimedAction:
    at: timedelta
    action: str
    params: dict[str, Any]
    where: str  # "at[3]" for messages


@dataclass(frozen=True)
class ActionFault:
    """One ``[[action_faults]]`` entry: what the next ``action`` does instead of succeeding.

    ``refuse`` maps a protocol family ("shtrih", "atol") to the register's error code; a family
    left out runs the action normally. ``drop`` is how long the register falls silent mid-action,
    ``executed`` whether it carried the action out first.
    """

    action: SimAction
    refuse: dict[str, int] = field(default_factory=dict)
    drop: timedelta | None = None
    executed: bool = True

    def arm(self, faults: ActionFaults, protocol: str) -> None:
        if self.drop is not None:
            faults.drop_link_during(self.action, self.drop.total_seconds(), execute=self.executed)
            return
        code = self.refuse.get(protocol_family(protocol))
        if code is not None:
            faults.refuse_next(self.action, code)


def protocol_family(protocol: str) -> str:
    """``shtrih-alt`` → ``shtrih``, ``atol2`` → ``atol``: error codes belong to the family."""
    return "atol" if protocol.startswith("atol") else "shtrih"


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    state: dict[str, Any]
    timeline: tuple[TimedAction, ...] = ()
    life: Life = field(default_factory=Life)
    start: datetime | None = None  # fixed start time; None = whenever the simulation starts
    action_faults: tuple[ActionFault, ...] = ()

    def build(self, clock: Callable[[], datetime]) -> RegisterModel:
        """A fresh model in this scenario's initial state, relative to ``clock()`` as the start."""
        return _build_model(self, clock)

    def arm_action_faults(self, faults: ActionFaults, protocol: str) -> None:
        """Script the device's remote-action faults, in file order (each fires once)."""
        for fault in self.action_faults:
            fault.arm(faults, protocol)


# --------------------------------------------------------------------------- initial state


def _build_model(scenario: Scenario, clock: Callable[[], datetime]) -> RegisterModel:
    s = scenario.state
    start = clock()
    identity = {k: s[k] for k in IDENTITY_KEYS if k in s}
    valid_until: date = (start + parse_duration(s.get("fn_valid_for", "450d"))).date()
    model = RegisterModel(clock=clock, fn_valid_until=valid_until, **identity)
    # open_shift() numbers the new shift last + 1, so step back when the file names the open one.
    model.autonomous = s.get("autonomous", False)  # before any document: an autonomous ФН queues none
    model.ofd_acks = s.get("ofd_acks", True)
    model.ofd_settings_changed = s.get("ofd_settings_changed", False)
    model.ofd_host = s.get("ofd_host", model.ofd_host)
    model.ofd_port = s.get("ofd_port", model.ofd_port)
    model.shift_number = max(s.get("shift_number", 1 if "shift_opened" in s else 0) - ("shift_opened" in s), 0)
    # Unsent documents first: they are the oldest entries of the OFD queue, whose head the ФН reports.
    if "unsent" in s:
        # ``count`` is what a reader sees at start: the documents made below are unsent too.
        made_later = ("shift_opened" in s) + s.get("receipts", 0)
        backdated = s["unsent"]["count"] - made_later
        if backdated < 1:
            raise ScenarioError(
                f"{scenario.name}: state.unsent.count {s['unsent']['count']} must exceed the {made_later} "
                "document(s) the open shift and its receipts make (they are unsent too)"
            )
        model.backdate_unsent(backdated, start + parse_duration(s["unsent"]["oldest"]))
    try:
        if "shift_opened" in s:
            model.open_shift(at=start + parse_duration(s["shift_opened"]))
        for _ in range(s.get("receipts", 0)):
            model.sell()
    except (FiscalRefused, ReceiptState) as exc:
        raise ScenarioError(f"{scenario.name}: state.shift_opened/receipts: the register refuses: {exc}") from exc
    if s.get("ofd_connected", True) and "unsent" not in s:
        model.deliver_to_ofd()  # a connected register's past documents reached the OFD long ago
    model.ofd_connected = s.get("ofd_connected", True)
    model.paper_present = s.get("paper", True)
    model.cover_open = s.get("cover_open", False)
    model.critical_error = s.get("critical_error", False)
    if "documents_left" in s:
        model.documents_left = s["documents_left"]
    if s.get("fn_memory_full", False):
        fn_memory_full(model, {})
    # The phase last: a ФН that is not fiscal would refuse the documents made above.
    if "fn_phase" in s:
        model.fn_phase = parse_phase(s["fn_phase"], "state.fn_phase")
    return model
