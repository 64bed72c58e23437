"""The collector process's garbage-collector settings (``collector.gc_tuning``)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from collector.gc_tuning import YOUNG_THRESHOLD, tune_for_ingest


@pytest.fixture
def restored_thresholds() -> Iterator[tuple[int, int, int]]:
    before = gc.get_threshold()
    yield before
    gc.set_threshold(*before)


def test_only_the_young_generation_threshold_changes(restored_thresholds: tuple[int, int, int]) -> None:
    gc.set_threshold(700, 7, 9)
    tune_for_ingest()
    assert gc.get_threshold() == (YOUNG_THRESHOLD, 7, 9)
    assert gc.isenabled()
