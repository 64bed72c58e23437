"""Reads that rarely change and cost a poll several round trips (the OFD server settings, the
fiscalisation result): read once, then again after ``interval`` or when the context changes
(a new ФН, a new shift — when an engineer usually re-registers or reconfigures the register)."""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

T = TypeVar("T")

SLOW_READ_INTERVAL = 600.0  # seconds: the OFD settings and the registration mode


class SlowRead(Generic[T]):
    def __init__(self, interval: float | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = SLOW_READ_INTERVAL if interval is None else interval  # read late: the bench sets it
        self._clock = clock
        self._value: T | None = None
        self._read_at: float | None = None
        self._context: Hashable = None

    def get(self, context: Hashable, read: Callable[[], T]) -> T:
        """The cached value, or a fresh ``read()`` when it is due or ``context`` changed."""
        now = self._clock()
        due = self._read_at is None or now - self._read_at >= self.interval or context != self._context
        if due:
            self._value = read()
            self._read_at, self._context = now, context
        return self._value  # type: ignore[return-value]  # set on the first call

    def forget(self) -> None:
        """Read again on the next poll (the register was reconnected or replaced)."""
        self._read_at = None
