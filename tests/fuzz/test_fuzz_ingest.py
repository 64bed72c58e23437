"""Fuzz: the collector's ingest path — decode (``classify``), admission and the batch writer —
over mutated, foreign-topic and wrong-agent messages, on SQLite and PostgreSQL.

Property: ``classify`` returns a decoded message, a rejection with a dead-letter reason, or None,
and never raises; the writer never raises on bad input and loses nothing: every message of a
batch is handed back for its PUBACK, and every rejected one is kept verbatim as a dead letter.
"""

from __future__ import annotations

import sys
from pathlib import Path

import sqlalchemy as sa
from hypothesis import example, given
from hypothesis import strategies as st

from collector.ingest.batcher import IngestWriter, Rejected, WriterSettings, classify
from collector.ingest.writes import Decoded
from collector.storage.schema import dead_letters

sys.path.insert(0, str(Path(__file__).parent))
from fuzzkit import FUZZ, FUZZ_DB, SEEDS, kit, mutated_messages

engine = kit.engine  # the fixture: a migrated engine on SQLite and on PostgreSQL

FOREIGN_TOPICS = ["kassa/v1/agent-1/cmd", "kassa/v1/agent-1/ack", "kassa/v2/agent-1/state/kkt-1", "other/topic",
                  "kassa/v1/_collector/status", "kassa/v1/agent-2/status", "kassa/v1/agent-1/event/_agent"]  # fmt: skip
messages = mutated_messages() | st.tuples(st.sampled_from(FOREIGN_TOPICS), st.sampled_from([p for _, p in SEEDS]))


@FUZZ
@given(messages)
def test_classify_decodes_or_rejects_with_a_reason(message: tuple[str, bytes]) -> None:
    topic, raw = message
    item = classify(kit.inbound(topic, raw))
    assert item is None or isinstance(item, Decoded) or (isinstance(item, Rejected) and item.reason)


@FUZZ_DB
@given(st.lists(messages, min_size=1, max_size=6), st.booleans())
# A NUL inside a JSON string is valid JSON but PostgreSQL's JSONB refuses it.
@example([(SEEDS[3][0], SEEDS[3][1].replace(b'"message":"t"', b'"message":"\\u0000"'))], False)
def test_writer_loses_no_message(engine: sa.Engine, batch: list[tuple[str, bytes]], enforce_enrollment: bool) -> None:
    """Enforced enrollment: an agent not registered yet (auto-registered by an earlier example without
    it) is refused by admission and its messages dead-lettered."""
    inbound = [kit.inbound(topic, raw) for topic, raw in batch]
    with engine.connect() as conn:
        before = conn.execute(sa.select(sa.func.max(dead_letters.c.id))).scalar_one() or 0
    settings = WriterSettings(enforce_enrollment=enforce_enrollment)
    result = IngestWriter(engine, kit.FakeDownlink(), settings=settings).process(inbound)
    assert {id(m) for m in result.committed} == {id(m) for m in inbound}
    with engine.connect() as conn:
        kept = conn.execute(
            sa.select(dead_letters.c.topic, dead_letters.c.raw, dead_letters.c.reason).where(dead_letters.c.id > before)
        ).all()
    assert sorted((r.topic, bytes(r.raw), r.reason) for r in kept) == sorted(
        (r.inbound.topic, r.inbound.payload, r.reason) for r in result.dead_letters
    )
