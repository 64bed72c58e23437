"""What this process last evaluated for each register, and the in-memory fast path it allows.

Most ingest-triggered evaluations find nothing a rule reads changed (``rule_inputs``). Telling
so from the database costs a 4-table join per register, re-reading what the writer has just
committed. The fast path instead takes the fresh state the writer hands over and the rest of the
inputs (agent, link, contract, thresholds) from this process's last evaluation of the register,
and checks with one primary-key read of ``register_state`` that nothing else moved meanwhile:

* the stored row is still the fresh state's version (no later message won since);
* the stored verdict is ours (``evaluated_at``): no other collector evaluated the register since,
  as it does after it stores an agent's status or the register's link — or, when another
  collector evaluated it (under a shared subscription consecutive messages of a register go to
  different collectors), it stored the same inputs (``verdict_key``: their digest and times).
  Those may be the inputs of our last evaluation, or the new ones: the fresh state with the rest
  as we last saw it. Then another collector has evaluated this very change, and its verdict is
  adopted as ours (under a shared subscription, each change of a register's inputs reaches one
  collector; the others would otherwise each take the join once to learn its verdict);
* the link flag is the one evaluated, and up (a down link's since-when is read from events).

The worker drops what it knows of the registers of an agent whose status or clock this process
stored (:meth:`AlertEngine.forget`). What none of this sees — an OFD contract or a company's
thresholds edited in the web UI, an agent's last-seen time written by another collector — the
periodic sweep applies, as it does for a register that sends nothing. When a check fails the
register takes the database path, so the cache is only ever a shortcut.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from collector.alerts import RuleInput, Thresholds
from collector.ingest.rule_inputs import (
    RuleInputsKey,
    fresh_times,
    inputs_digest,
    same_verdict,
    still_same_verdict,
    stored_verdict_holds,
    with_state,
)
from collector.ingest.writes import FreshState
from collector.storage.errors import UnsupportedDialect
from collector.storage.rows import RegisterEvaluation


@dataclass(frozen=True, slots=True)
class Evaluated:
    """A register's last evaluation committed by this process, and what it was evaluated on."""

    thresholds: Thresholds
    key: RuleInputsKey | None
    evaluated_at: datetime
    inputs: RuleInput
    state_agent_id: str | None
    digest: str | None = None  # rule_inputs.inputs_digest of ``thresholds`` and ``key``
    outcome: RegisterEvaluation | None = None  # what is stored for ``evaluated_at``; None: not known here

    def same_verdict(
        self, thresholds: Thresholds, key: RuleInputsKey | None, stored_at: datetime | None, stored_key: str | None = None
    ) -> bool:
        """Would inputs with ``key`` get the stored verdict? It must be ours (``stored_at``), or
        another collector's computed on these same inputs (``stored_key``)."""
        if thresholds is not self.thresholds and thresholds != self.thresholds:  # pydantic ``__eq__`` is slow
            return False
        if not same_verdict(self.key, key):
            return False
        if stored_at == self.evaluated_at:
            return True
        return key is not None and self.digest is not None and stored_verdict_holds(stored_key, self.digest, key.times)


_STORED = (
    "SELECT register_id, agent_id, session, seq, evaluated_at, link_up, verdict_key FROM register_state"
    " WHERE register_id IN "
)
_STORED_SQL = {
    "sqlite": _STORED + "(SELECT value FROM json_each(?))",
    "postgresql": _STORED + "(SELECT json_array_elements_text(%s::json))",
}


def _stored(
    conn: sa.Connection, register_ids: list[str]
) -> Iterator[tuple[str, str, int, int, datetime | None, bool | None, str | None]]:
    """The stored version, verdict time, link flag and verdict key of these registers' latest states.

    Fixed driver SQL with the ids as one JSON parameter: read for every batch, a row per
    register, where SQLAlchemy's typed result rows cost more than the query. The types'
    conversions are done here: SQLite stores an instant as naive UTC text and a flag as 0/1."""
    sql = _STORED_SQL.get(conn.dialect.name)
    if sql is None:
        raise UnsupportedDialect(f"no register_state read for database dialect {conn.dialect.name!r}")
    sqlite = conn.dialect.name == "sqlite"
    rows = conn.exec_driver_sql(sql, (json.dumps(register_ids),))
    for register_id, agent_id, session, seq, evaluated_at, link_up, verdict_key in rows:
        if sqlite and evaluated_at is not None:
            evaluated_at = datetime.fromisoformat(evaluated_at).replace(tzinfo=UTC)
        yield register_id, agent_id, session, seq, evaluated_at, None if link_up is None else bool(link_up), verdict_key


def unchanged_in_memory(
    conn: sa.Connection, candidates: Mapping[str, Evaluated], fresh: Mapping[str, FreshState], now: datetime
) -> dict[str, Evaluated]:
    """The registers among ``candidates`` (each with a state in ``fresh``) whose stored verdict
    still holds, known without the join (see the module docstring), each with what this process
    now knows of its evaluation: the candidate's, or another collector's verdict adopted."""
    ids = [register_id for register_id, last in candidates.items() if last.inputs.link_up is not False]
    if not ids:
        return {}
    unchanged: dict[str, Evaluated] = {}
    for register_id, agent_id, session, seq, evaluated_at, link_up, verdict_key in _stored(conn, ids):
        last, state = candidates[register_id], fresh[register_id]
        if agent_id != state.agent_id or session != state.session or seq != state.seq:
            continue
        if agent_id != last.state_agent_id or link_up != last.inputs.link_up:
            continue
        ours = evaluated_at == last.evaluated_at
        if not ours and (verdict_key is None or last.digest is None):
            continue  # another collector's verdict, and nothing to tell what it was computed on
        seen = last.inputs.agent_last_seen  # the agent was seen at least when the fresh state arrived
        received = state.received_at
        last_seen = None if seen is None else max(seen, received)
        # ``Evaluated.same_verdict`` on the key ``with_state`` would give, without building it; the
        # thresholds are the ones evaluated, by definition.
        if not still_same_verdict(
            last.key, state.state, received_at=received, polled_at=state.polled_at, agent_last_seen=last_seen, now=now
        ):
            if not ours and evaluated_at is not None:
                adopted = _adopted(last, state, verdict_key, evaluated_at, last_seen, now)
                if adopted is not None:
                    unchanged[register_id] = adopted
            continue
        if not ours:  # the same inputs as our last evaluation: is the stored verdict of them too?
            times = fresh_times(state.state, received_at=received, polled_at=state.polled_at, agent_last_seen=last_seen, now=now)
            if times is None or last.digest is None or not stored_verdict_holds(verdict_key, last.digest, times):
                continue
        unchanged[register_id] = last
    return unchanged


def _adopted(
    last: Evaluated, state: FreshState, stored_key: str | None, evaluated_at: datetime,
    last_seen: datetime | None, now: datetime,
) -> Evaluated | None:
    """Our last evaluation moved on to the fresh state, when another collector's stored verdict
    was computed on exactly that (its digest and times); None when it was not."""
    if last.key is None:
        return None
    key = with_state(
        last.key, state.state, received_at=state.received_at, polled_at=state.polled_at, agent_last_seen=last_seen, now=now
    )
    if key is None:
        return None
    digest = inputs_digest(last.thresholds, key)
    if not stored_verdict_holds(stored_key, digest, key.times):
        return None
    inputs = replace(
        last.inputs, now=now, state=state.state, state_received_at=state.received_at, polled_at=state.polled_at,
        agent_last_seen=last_seen,
    )  # fmt: skip
    return Evaluated(last.thresholds, key, evaluated_at, inputs, state.agent_id, digest)


@dataclass(frozen=True, slots=True)
class StoredInputs:
    """What may have moved under a register the sweep would pass over (``AlertEngine._not_quiet``)."""

    register_id: str
    version: tuple[str, int, int]  # the state row's (agent_id, session, seq)
    evaluated_at: datetime | None
    link_up: bool | None
    agent_online: bool | None
    agent_clock_offset: timedelta | None
    agent_seen: bool  # whether the agent's last-seen time is known (a later one only ends quiet later)


_INPUTS = (
    "SELECT s.register_id, s.agent_id, s.session, s.seq, s.evaluated_at, s.link_up, a.online, a.clock_offset,"
    " a.last_seen IS NOT NULL"
    " FROM register_state s JOIN registers r ON r.register_id = s.register_id"
    " LEFT JOIN agents a ON a.agent_id = r.agent_id WHERE s.register_id IN "
)
_INPUTS_SQL = {
    "sqlite": _INPUTS + "(SELECT value FROM json_each(?))",
    "postgresql": _INPUTS + "(SELECT json_array_elements_text(%s::json))",
}


def stored_inputs(conn: sa.Connection, register_ids: list[str]) -> Iterator[StoredInputs]:
    """These registers' state versions, verdict times, link flags and agents' status and clock
    offsets, as stored (fixed driver SQL, as ``_stored``: read for every register of a sweep)."""
    sql = _INPUTS_SQL.get(conn.dialect.name)
    if sql is None:
        raise UnsupportedDialect(f"no register_state read for database dialect {conn.dialect.name!r}")
    sqlite = conn.dialect.name == "sqlite"
    rows = conn.exec_driver_sql(sql, (json.dumps(register_ids),))
    for register_id, agent_id, session, seq, evaluated_at, link_up, online, offset, seen in rows:
        if sqlite and evaluated_at is not None:
            evaluated_at = datetime.fromisoformat(evaluated_at).replace(tzinfo=UTC)
        yield StoredInputs(
            register_id,
            (agent_id, session, seq),
            evaluated_at,
            None if link_up is None else bool(link_up),
            None if online is None else bool(online),
            None if offset is None else timedelta(seconds=offset),
            bool(seen),
        )
