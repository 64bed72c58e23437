"""Running a scenario: its timeline and background life applied to a register model as the clock passes them."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from firmware_sim.endpoint import DeviceEndpoint
from firmware_sim.model import FiscalRefused, ReceiptState, RegisterModel
from firmware_sim.scenario.actions import ACTIONS, open_shift
from firmware_sim.scenario.definition import Scenario

MAX_CATCH_UP_SALES = 500  # per tick: a huge speed-up must not freeze the device thread


class ScenarioRunner:
    """Applies a scenario's timeline and background life to a model as the clock passes them.

    Hosts pump the device from their own threads, so every change and every ``feed`` go
    through one lock: wrap the device with :meth:`guard` and call :meth:`tick` from anywhere.
    A refused action (e.g. a sale while the shift is expired) becomes a logged event, never
    an exception that would end the host loop.
    """

    def __init__(
        self, scenario: Scenario, model: RegisterModel, *, on_event: Callable[[str], None] | None = None
    ) -> None:
        self.scenario = scenario
        self.model = model
        self.started = model.now()
        self.lock = threading.RLock()
        self._on_event = on_event or (lambda _: None)
        self._next_action = 0
        self._sales_done = 0
        self._drains_done = 0
        self.events: list[str] = []

    def elapsed(self) -> timedelta:
        return self.model.now() - self.started

    def tick(self) -> list[str]:
        """Apply everything due by now; returns the events it produced (also sent to on_event)."""
        with self.lock:
            elapsed = self.elapsed()
            produced: list[str] = []
            timeline = self.scenario.timeline
            while self._next_action < len(timeline) and timeline[self._next_action].at <= elapsed:
                item = timeline[self._next_action]
                self._next_action += 1
                produced.append(self._apply(item.action, item.params, f"{item.where} {item.action}"))
            produced += self._live(elapsed)
            for text in produced:
                self.events.append(text)
                self._on_event(text)
            return produced

    def _apply(self, action: str, params: dict[str, Any], label: str) -> str:
        try:
            return ACTIONS[action][1](self.model, params)
        except FiscalRefused as exc:
            return f"{label}: refused by the ФН (code {exc.code:#04x})"
        except ReceiptState as exc:
            return f"{label}: refused: {exc}"

    def _timetable(self) -> list[str]:
        """The cashier's day: close the shift outside trading hours or once it outlived a closing
        time (the register was off at the close), open it again when trading."""
        life, model = self.scenario.life, self.model
        out: list[str] = []
        now = model.now()
        last_close = life.last_close(now)
        if last_close is None:
            return out
        opened = model.shift_opened_at
        if model.shift_open and (not life.trading(now) or (opened is not None and opened < last_close)):
            if model.receipt_open:
                return out  # a cashier finishes the receipt first
            out.append(self._apply("close_shift", {}, "timetable close_shift"))
        if life.trading(now) and not model.shift_open and model.paper_present:
            out.append(self._apply("open_shift", {}, "timetable open_shift"))
        return out

    def _live(self, elapsed: timedelta) -> list[str]:
        life, out = self.scenario.life, self._timetable()
        if life.sell_every is not None:
            due = min(int(elapsed / life.sell_every) - self._sales_done, MAX_CATCH_UP_SALES)
            for _ in range(max(due, 0)):
                self._sales_done += 1
                text = self._background_sale(life.amount)
                if text:
                    out.append(text)
        if life.ofd_drain_every is not None:
            due_drains = int(elapsed / life.ofd_drain_every) - self._drains_done
            if due_drains > 0:
                self._drains_done += due_drains
                delivered = self.model.deliver_to_ofd()
                if delivered:
                    out.append(f"OFD took {delivered} document(s)")
        return out

    def _background_sale(self, amount: int) -> str | None:
        """A cashier's sale: opens a shift when none is open, waits while paper is out or the cover open."""
        model = self.model
        if not model.paper_present or model.cover_open or not self.scenario.life.trading(model.now()):
            return None
        try:
            opened = "" if model.shift_open else open_shift(model, {}) + "; "
            return f"{opened}sale FD {model.sell(amount).number}"
        except FiscalRefused as exc:
            return f"background sale refused by the ФН (code {exc.code:#04x})"
        except ReceiptState as exc:
            return f"background sale refused: {exc}"

    def guard(self, device: DeviceEndpoint) -> DeviceEndpoint:
        """The device with every feed serialised against timeline changes (and ticking first)."""
        return _Guarded(device, self)


class _Guarded:
    def __init__(self, device: DeviceEndpoint, runner: ScenarioRunner) -> None:
        self.device = device
        self.runner = runner

    def feed(self, data: bytes) -> bytes:
        with self.runner.lock:
            self.runner.tick()
            return self.device.feed(data)

    def reset(self) -> None:
        with self.runner.lock:
            self.device.reset()

    def idle(self) -> bytes:
        with self.runner.lock:
            return self.device.idle()
