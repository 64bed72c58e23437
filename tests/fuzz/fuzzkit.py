"""Shared settings and strategies of the fuzz suite (imported by path: pytest runs with --import-mode=importlib).

Every fuzz target runs under the hypothesis profile named by ``KASSA_FUZZ_PROFILE``:

* ``fuzz`` (default, also what CI runs): a few seconds per target, so ``make test`` stays quick;
* ``fuzz-long``: many more examples for a fuzzing session by hand, e.g.
  ``KASSA_FUZZ_PROFILE=fuzz-long pytest tests/fuzz``.

Profiles are registered under their own names and applied per test (``@FUZZ``), so the other
hypothesis tests of the suite keep their own settings.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

PROFILE_ENV = "KASSA_FUZZ_PROFILE"

settings.register_profile(
    "fuzz",
    max_examples=300,
    deadline=None,  # a loaded 2-core machine makes per-example deadlines flaky
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.register_profile("fuzz-ci", parent=settings.get_profile("fuzz"))
settings.register_profile("fuzz-long", parent=settings.get_profile("fuzz"), max_examples=20_000)

FUZZ: settings = settings.get_profile(os.environ.get(PROFILE_ENV, "fuzz"))
# Targets that touch a database per example get a tenth of the examples (same few seconds).
FUZZ_DB: settings = settings(FUZZ, max_examples=max(FUZZ.max_examples // 10, 20))

# Arbitrary byte streams cut at arbitrary points: what a serial line or a TCP socket hands over.
chunked_streams = st.lists(st.binary(max_size=64), max_size=12)


def split_at(data: bytes, cuts: list[int]) -> list[bytes]:
    """``data`` cut at the given points (taken modulo its length): one arbitrary delivery of it."""
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]
