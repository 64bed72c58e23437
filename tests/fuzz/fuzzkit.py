"""Shared settings and strategies of the fuzz suite (imported by path: pytest runs with --import-mode=importlib).

Every fuzz target runs under the hypothesis profile named by ``KASSA_FUZZ_PROFILE``:

* ``fuzz`` (default, also what CI runs): a few seconds per target, so ``make test`` stays quick;
* ``fuzz-long``: many more examples for a fuzzing session by hand (minutes per target, so lift
  the suite's per-test timeout), e.g. ``KASSA_FUZZ_PROFILE=fuzz-long pytest --timeout 0 tests/fuzz``.

Profiles are registered under their own names and applied per test (``@FUZZ``), so the other
hypothesis tests of the suite keep their own settings.
"""

from __future__ import annotations

import json
import os
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

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


# ---------------------------------------------------------------------------------------------
# MQTT messages: valid seeds from the ingest testkit, mutated anywhere inside.

sys.path.insert(0, str(Path(__file__).parents[1] / "collector"))
import ingest_testkit as kit  # noqa: E402  (path set just above)

AGENT, REGISTER = "agent-1", "kkt-1"
SEEDS: list[tuple[str, bytes]] = [
    kit.status_msg(AGENT, 3, "online"),
    kit.state_msg(AGENT, REGISTER, 3, 1),
    kit.birth_msg(AGENT, 3, 0, {REGISTER: kit.register_state(), "kkt-2": None}),
    kit.event_msg(AGENT, REGISTER, 3, 2, kit.EventKind.SHIFT_OPENED),
    kit.event_msg(AGENT, None, 3, 3, kit.EventKind.OUTBOX_GAP),
    kit.hist_msg(AGENT, [kit.state_payload(AGENT, REGISTER, 2, 5), kit.event_payload(AGENT, REGISTER, 2, 6, kit.EventKind.LINK_LOST)]),
]

_offsets = st.integers(-(24 * 60 - 1), 24 * 60 - 1).map(lambda m: timezone(timedelta(minutes=m)))
# Timestamps at the edges of what datetime can hold, with any offset ISO 8601 allows.
edge_timestamps = st.builds(
    lambda moment, zone: moment.replace(tzinfo=zone).isoformat(),
    st.sampled_from([datetime.min, datetime.max]) | st.datetimes(),
    st.none() | _offsets,
)
json_leaves = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=20)
    | edge_timestamps
    | st.sampled_from(["", "0", "-1", "1e400", "\u0000", "kassa/v1/#", "a" * 300])
)
json_values = st.recursive(
    json_leaves,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)


def _containers(doc: Any) -> list[Any]:
    """Every dict and list inside ``doc`` (``doc`` included), to mutate one of them."""
    found = [doc]
    children = doc.values() if isinstance(doc, dict) else doc
    for child in children:
        if isinstance(child, dict | list):
            found += _containers(child)
    return found


@st.composite
def mutated_payloads(draw: st.DrawFn, raw: bytes) -> bytes:
    """``raw`` (a JSON object) with one change anywhere: a value replaced, a key dropped or added,
    or the bytes themselves cut or flipped."""
    how = draw(st.sampled_from(["replace", "drop", "add", "cut", "flip"]))
    if how == "cut":
        return raw[: draw(st.integers(0, len(raw)))]
    if how == "flip":
        at = draw(st.integers(0, len(raw) - 1))
        return raw[:at] + bytes((draw(st.integers(0, 255)),)) + raw[at + 1 :]
    doc = json.loads(raw)
    target = draw(st.sampled_from(_containers(doc)))
    if how == "add" or not target:
        if isinstance(target, dict):
            target[draw(st.text(max_size=8))] = draw(json_values)
        else:
            target.append(draw(json_values))
    else:
        key = draw(st.sampled_from(sorted(target) if isinstance(target, dict) else range(len(target))))
        if how == "drop":
            del target[key]
        else:
            target[key] = draw(json_values)
    return json.dumps(doc, ensure_ascii=draw(st.booleans())).encode()


@st.composite
def mutated_messages(draw: st.DrawFn) -> tuple[str, bytes]:
    """A seed message whose payload is mutated (mostly) or whose topic is swapped for another seed's."""
    topic, raw = draw(st.sampled_from(SEEDS))
    if draw(st.integers(0, 9)) == 0:
        topic = draw(st.sampled_from([t for t, _ in SEEDS]))
        return topic, raw
    return topic, draw(mutated_payloads(raw))
