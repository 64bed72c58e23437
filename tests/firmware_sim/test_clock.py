"""Simulated clocks: sim time follows monotonic time × speed plus scripted jumps."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from firmware_sim.clock import ManualClock, SimClock
from firmware_sim.model import RegisterModel

START = datetime(2026, 3, 2, 9, 0, 0)


class FakeMonotonic:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_sim_clock_runs_speed_times_real_time_and_jumps() -> None:
    mono = FakeMonotonic()
    clock = SimClock(START, speed=60, monotonic=mono)
    assert clock() == START
    mono.now += 2.5
    assert clock() == START + timedelta(seconds=150)
    clock.advance(timedelta(hours=1))
    assert clock() == START + timedelta(hours=1, seconds=150)
    assert clock.sim_elapsed() == timedelta(hours=1, seconds=150)


def test_sim_clock_with_real_monotonic_moves_forward() -> None:
    clock = SimClock(START, speed=1000)
    first = clock()
    assert clock() >= first >= START


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"speed": 0}, "speed"), ({"speed": -1}, "speed")],
)
def test_sim_clock_rejects_bad_speed(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SimClock(START, **kwargs)


def test_sim_clock_rejects_aware_start_and_backward_jumps() -> None:
    from datetime import UTC

    with pytest.raises(ValueError, match="naive"):
        SimClock(START.replace(tzinfo=UTC))
    with pytest.raises(ValueError, match="backwards"):
        SimClock(START).advance(timedelta(seconds=-1))


def test_manual_clock_drives_the_model() -> None:
    clock = ManualClock(START)
    model = RegisterModel(clock=clock)
    assert model.now() == START
    clock.advance(timedelta(days=2))
    assert model.now() == START + timedelta(days=2)
    clock.set(START)
    assert clock() == START
    with pytest.raises(ValueError):
        clock.advance(timedelta(seconds=-5))
