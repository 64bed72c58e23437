"""Garbage-collector settings for a collector process.

Every state message allocates a few hundred container objects (the decoded models, rows, keys),
so with CPython's default first-generation threshold (700 allocations) a collection runs every
couple of messages and rescans whatever survived it. Nearly all of it is freed by reference
counting when the batch is done; cycles are rare. A threshold of 20 000 cut the writer's CPU per
message by about a quarter (``bench/ingest_profile.py``) and keeps the older generations' cadence.
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 20_000  # allocations between two first-generation collections (CPython default: 700)


def tune_for_ingest() -> None:
    """Process-wide: call once from the process's entry point, not from a library."""
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)
