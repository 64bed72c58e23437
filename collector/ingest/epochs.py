"""Agent installations: map each (agent, epoch, session) to the one increasing session number the
storage keys on, and notice a reinstalled agent.

A reinstalled agent (lost outbox) restarts its sessions at 1 under a new random ``epoch`` (see
``protocol.mqtt.models``). Stored as they come, its records would collide with the old
installation's (agent, session, seq): taken for duplicates and acked — deleted by the agent,
never stored — its status ignored as older than the last one, its latest state frozen. So the
first time an epoch shows up, it gets a ``base`` above every session stored for the agent, and
every session of that epoch is stored as ``base + session``. Dedup, newer-only upserts, status
(LWT) ordering, ingest marks and the rebirth tracker then work unchanged on that number; acks
are translated back (with the epoch, so the agent can refuse another installation's ack).

Base 0 is kept for messages without an epoch (older agents) and for an agent's first epoch when
its sessions simply continue (a new agent, or an old one upgraded with its outbox): only an
epoch whose sessions restarted at or below what was stored is a reinstall, reported as an
``agent_reinstalled`` agent event, a log line and a metric.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Final

import sqlalchemy as sa
from msgspec.structs import replace as with_fields

from collector.ingest.batch import epoch_of
from collector.ingest.writes import Decoded
from collector.storage import repository as repo
from collector.storage.dialect import member_of, upsert_insert
from collector.storage.rows import AgentEventRow
from collector.storage.schema import agent_epochs, agents, ingest_marks
from protocol.mqtt.wire import EventPayload, HistBatch, HistEventRecord, HistStateRecord, StatePayload

log = logging.getLogger(__name__)

STRIDE: Final = 2**40  # sessions per installation: a trillion connections, and 2**23 reinstalls fit int64
REINSTALLED: Final = "agent_reinstalled"  # agent event kind (made by the collector, not sent by agents)


@dataclass
class Translated:
    items: list[Decoded] = field(default_factory=list)
    refused: list[tuple[Decoded, str]] = field(default_factory=list)  # (item, why) for the dead letters
    reinstalls: list[AgentEventRow] = field(default_factory=list)
    # (agent, stored session) → (the agent's own session, its epoch): how to word the ack
    own_sessions: dict[tuple[str, int], tuple[int, str | None]] = field(default_factory=dict)


class SessionOutOfRange(ValueError):
    """A session too large for its installation's range (never reached by a real agent)."""


class Epochs:
    """Cache of every epoch's base per agent; :meth:`reset` after a rollback (a base may be unstored)."""

    def __init__(self) -> None:
        self._bases: dict[str, dict[str, int]] = {}

    def reset(self) -> None:
        self._bases.clear()

    def translate(self, conn: sa.Connection, items: list[Decoded], now: datetime) -> Translated:
        self._resolve(conn, _first_sessions(items), now, out := Translated())
        for item in items:
            try:
                out.items.append(self._translate(item, out))
            except SessionOutOfRange as exc:
                out.refused.append((item, str(exc)))
        return out

    def base(self, agent: str, epoch: str | None) -> int:
        """What the sessions of this installation are stored above (0 without an epoch; after :meth:`translate`)."""
        return 0 if epoch is None else self._bases.get(agent, {}).get(epoch, 0)

    def stored_session(
        self,
        conn: sa.Connection,
        agent: str,
        epoch: str | None,
        session: int,
        now: datetime,
        own_sessions: dict[tuple[str, int], tuple[int, str | None]],
    ) -> int:
        """The stored session of one (agent, epoch, session), e.g. of a dead-lettered message whose
        seq still counts for the ack; records how to word that ack in ``own_sessions``."""
        out = Translated()
        if epoch is not None:
            self._resolve(conn, {(agent, epoch): session}, now, out)
        stored = self._stored(agent, epoch, session, out)
        own_sessions.update(out.own_sessions)
        return stored

    # --- translation ------------------------------------------------------------------------

    def _translate(self, item: Decoded, out: Translated) -> Decoded:
        payload = item.payload
        if isinstance(payload, HistBatch):
            records = [self._record(record, out) for record in payload.records]
            if all(new is old for new, old in zip(records, payload.records, strict=True)):
                return item
            return replace(item, payload=with_fields(payload, records=records))
        session, epoch = getattr(payload, "session", None), epoch_of(payload)
        if session is None:
            return item  # not an agent envelope (downlink kinds never get here)
        stored = self._stored(payload.agent, epoch, session, out)  # type: ignore[union-attr]
        return item if stored == session else replace(item, payload=with_fields(payload, session=stored))  # type: ignore[type-var]

    def _record(self, record: HistStateRecord | HistEventRecord, out: Translated) -> Any:
        inner: StatePayload | EventPayload = record.payload
        stored = self._stored(inner.agent, epoch_of(inner), inner.session, out)
        if stored == inner.session:
            return record
        return with_fields(record, payload=with_fields(inner, session=stored))

    def _stored(self, agent: str, epoch: str | None, session: int, out: Translated) -> int:
        base = 0 if epoch is None else self._bases[agent][epoch]
        if base and session >= STRIDE:
            raise SessionOutOfRange(f"session {session} of agent {agent!r} is beyond {STRIDE - 1}, the most one installation may use")
        out.own_sessions[(agent, base + session)] = (session, epoch)
        return base + session

    # --- new epochs -------------------------------------------------------------------------

    def _resolve(self, conn: sa.Connection, firsts: dict[tuple[str, str], int], now: datetime, out: Translated) -> None:
        unknown = {key: first for key, first in firsts.items() if key[1] not in self._bases.get(key[0], {})}
        if not unknown:
            return
        self._load(conn, {agent for agent, _ in unknown})
        for (agent, epoch), first in sorted(unknown.items()):
            if epoch not in self._bases[agent]:
                self._introduce(conn, agent, epoch, first, now, out)

    def _load(self, conn: sa.Connection, agent_ids: set[str]) -> None:
        for agent in agent_ids:
            self._bases.setdefault(agent, {})
        rows = conn.execute(
            sa.select(agent_epochs.c.agent_id, agent_epochs.c.epoch, agent_epochs.c.base).where(
                member_of(conn, agent_epochs.c.agent_id, agent_ids)
            )
        )
        for row in rows:
            self._bases[row.agent_id][row.epoch] = int(row.base)

    def _introduce(self, conn: sa.Connection, agent: str, epoch: str, first: int, now: datetime, out: Translated) -> None:
        known = self._bases[agent]
        stored = _highest_session(conn, agent)
        highest = max([stored or 0, *(base for base in known.values())])
        if stored is None and not known:
            base = 0  # a new agent
        elif first > highest and 0 not in known.values():
            base = 0  # sessions continue (an agent upgraded with its outbox): nothing was restarted
        else:
            base = (highest // STRIDE + 1) * STRIDE
        inserted = conn.execute(
            upsert_insert(conn, agent_epochs)
            .values(agent_id=agent, epoch=epoch, base=base, first_session=first, first_seen=now)
            .on_conflict_do_nothing(index_elements=[agent_epochs.c.agent_id, agent_epochs.c.epoch])
        ).rowcount
        if not inserted:  # another collector introduced it first: take its base
            base = conn.execute(
                sa.select(agent_epochs.c.base).where(agent_epochs.c.agent_id == agent, agent_epochs.c.epoch == epoch)
            ).scalar_one()
        known[epoch] = int(base)
        if inserted and base:
            out.reinstalls.append(_reinstall_event(agent, epoch, base, first, stored, now))
            repo.insert_agent_events(conn, out.reinstalls[-1:])
            log.warning(
                "agent %s was reinstalled: its sessions restarted at %d (stored up to %s) under epoch %s",
                agent, first, stored, epoch,
            )


def _first_sessions(items: list[Decoded]) -> dict[tuple[str, str], int]:
    """(agent, epoch) → the lowest session the batch carries under it."""
    firsts: dict[tuple[str, str], int] = {}
    for item in items:
        payload = item.payload
        envelopes = [record.payload for record in payload.records] if isinstance(payload, HistBatch) else [payload]
        for envelope in envelopes:
            epoch = epoch_of(envelope)
            if epoch is not None:
                key = (envelope.agent, epoch)  # type: ignore[union-attr]
                firsts[key] = min(firsts.get(key, envelope.session), envelope.session)  # type: ignore[union-attr]
    return firsts


def _highest_session(conn: sa.Connection, agent: str) -> int | None:
    """The highest session stored for the agent anywhere (seen, status, ingest marks)."""
    row = conn.execute(sa.select(agents.c.last_session, agents.c.status_session).where(agents.c.agent_id == agent)).first()
    marked = conn.execute(sa.select(sa.func.max(ingest_marks.c.session)).where(ingest_marks.c.agent_id == agent)).scalar()
    found = [int(value) for value in (*(row or ()), marked) if value is not None]
    return max(found) if found else None


def _reinstall_event(agent: str, epoch: str, base: int, first: int, stored: int | None, now: datetime) -> AgentEventRow:
    # Keyed (agent, base, 0): an agent's own records are stored at base + session with session ≥ 1.
    message = (
        f"Агент переустановлен: его буфер отправки создан заново, нумерация сессий началась с {first} "
        f"(до этого получены сессии до {stored}). Данные новой установки принимаются как новые."
    )
    return AgentEventRow(
        agent_id=agent, session=base, seq=0, kind=REINSTALLED, ts=now, received_at=now,
        data={"message": message, "epoch": epoch, "first_session": first, "previous_session": stored},
    )
