"""Simulated register clocks: callables returning naive local register time.

``RegisterModel(clock=...)`` takes any ``Callable[[], datetime]``; these two cover the CLI
(time runs ``speed`` times faster than real time, plus scripted jumps) and tests (time moves
only when told to).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta


class SimClock:
    """Sim time = ``start`` + real monotonic time elapsed × ``speed`` + every ``advance``.

    Monotonic, so the simulated register never jumps when the host's wall clock is adjusted.
    """

    def __init__(
        self, start: datetime, speed: float = 1.0, *, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        if start.tzinfo is not None:
            raise ValueError("register time is naive local time: pass a datetime without tzinfo")
        if speed <= 0:
            raise ValueError(f"speed must be positive, got {speed}")
        self.start = start
        self.speed = speed
        self._monotonic = monotonic
        self._origin = monotonic()
        self._jumped = timedelta(0)
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        elapsed = (self._monotonic() - self._origin) * self.speed
        with self._lock:
            return self.start + timedelta(seconds=elapsed) + self._jumped

    def advance(self, delta: timedelta) -> None:
        """Scripted jump (e.g. "skip to tomorrow"); negative deltas are refused."""
        if delta < timedelta(0):
            raise ValueError("a register clock cannot be moved backwards by advance()")
        with self._lock:
            self._jumped += delta

    def sim_elapsed(self) -> timedelta:
        return self() - self.start


class ManualClock:
    """Test clock: stands still until ``advance``/``set`` moves it."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2026, 3, 2, 9, 0, 0)
        self.start = self.now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        if delta < timedelta(0):
            raise ValueError("a register clock cannot be moved backwards by advance()")
        self.now += delta

    def set(self, when: datetime) -> None:
        self.now = when

    def sim_elapsed(self) -> timedelta:
        return self.now - self.start
