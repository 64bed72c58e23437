"""Store-and-forward outbox: every state/event is written here before it is published.

SQLite in WAL mode (stdlib ``sqlite3``), one file per agent, shared by the device worker threads
and the MQTT thread:

* **Group commit.** ``append``/``mark_published``/``ack`` only queue an operation; a committer
  thread applies the queue in one transaction every ``commit_interval`` (or at once when the
  queue fills). ``append(..., durable=True)`` blocks until its transaction is committed. Queued
  operations are applied in call order, so a PUBACK that arrives before its record is committed
  still finds it. Readers (``backlog``, ``stats``…) commit the queue first.
* **Sessions.** ``next_session()`` durably increments a counter kept in the same file (+1 per
  MQTT connection; it never goes backwards, even after kill -9). Sequence numbers are *not*
  persisted: every connection — and every process start — is a new session, so ``seq`` restarts
  at 0 per session and a (session, seq) pair can never be handed out twice. ``epoch()`` is the
  file's random installation id: a new file restarts sessions at 1 under a new epoch, so the
  collector can tell its records from a lost outbox's.
* **Delivery.** A record is deleted when the collector's ack high-water mark covers it
  (``ack_mode="collector"``) or, with no collector acking, on its PUBACK (``ack_mode="puback"``).
  ``mark_published`` remembers the connection (session) the record was published in, so a replay
  loop sends each unacked record at most once per connection, and again after a reconnect.
* **Bounds.** Over ``max_bytes`` (payload bytes, not the file size): states coalesce to the latest
  per register, then the oldest events go, then — only if the latest states alone are too big —
  the oldest states. Older than ``max_age``: states that have a newer state of the same register
  and events go; the latest state of each register is kept as the last known point. Every record
  dropped before it was ever published is counted, persisted, and reported through ``take_gap()``
  as an ``outbox_gap`` event (a published one only awaited its ack: it is not a gap). A batch
  whose transaction fails is counted the same way. Nothing is dropped silently.
* **Gap reports survive a full outbox.** ``outbox_gap`` events are never dropped by the bounds;
  an unpublished one is folded into the next report instead (``take_gap`` deletes it and hands
  its counts back), so a long outage keeps one pending gap report, not one per report.

One process must own an outbox file at a time (the session counter assumes it).

Modules: ``store`` (the ``Outbox`` facade: queue, group commit, reads), ``records`` (what it hands
out), ``schema`` (the SQLite file and its ``meta`` table), ``sessions`` (session counter, epoch),
``gaps`` (drop counters and gap reports), ``bounds`` (what goes when it is over its limits),
``ledger`` (remote actions answered, so each command id runs at most once).
"""

from agent.outbox.bounds import DEFAULT_MAX_AGE, DEFAULT_MAX_BYTES
from agent.outbox.records import (
    KINDS,
    AckMode,
    ActionRecord,
    GapInfo,
    OutboxError,
    OutboxRecord,
    OutboxStats,
    RecordKind,
)
from agent.outbox.store import Outbox

__all__ = [
    "DEFAULT_MAX_AGE",
    "DEFAULT_MAX_BYTES",
    "KINDS",
    "AckMode",
    "ActionRecord",
    "GapInfo",
    "Outbox",
    "OutboxError",
    "OutboxRecord",
    "OutboxStats",
    "RecordKind",
]
