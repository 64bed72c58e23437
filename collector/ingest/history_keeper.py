"""The writer's memory for the history policy: per register, the last history row kept.

In memory only: after a restart (or a rolled-back batch, :meth:`HistoryKeeper.clear`) the next
state of each register is kept as ``first`` — one extra row per register, never a lost change.
Under a shared subscription each collector remembers what it kept itself, so a change is kept by
the collector that saw it, and samples come at most once per interval per collector.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING

from collector.ingest.history_policy import REPLAY, HistoryPolicy, Kept, Snapshot

if TYPE_CHECKING:
    from protocol.kkt.vocabulary import AnyRegisterState


class HistoryKeeper:
    def __init__(self, policy: HistoryPolicy) -> None:
        self.policy = policy
        self._newest: dict[str, Kept] = {}
        # The last kept of the records older than the newest (a replayed outbox arrives oldest first).
        self._replayed: dict[str, Kept] = {}
        self._by_agent: dict[str, set[str]] = {}

    def clear(self) -> None:
        self._newest.clear()
        self._replayed.clear()
        self._by_agent.clear()

    def keep(self, register_id: str, agent_id: str, state: AnyRegisterState, ts: datetime) -> str | None:
        """Why this state (made at ``ts``, collector clock) becomes a history row; None: it does not."""
        at, snapshot = ts.timestamp(), Snapshot.of(state)
        newest = self._newest.get(register_id)
        if newest is not None and at < newest.at:
            before = self._replayed.get(register_id)
            before = before if before is not None and before.at <= at else None
            reason = REPLAY if before is None else self.policy.decide(before, snapshot, at)
            if reason is not None:
                self._replayed[register_id] = Kept(snapshot, at)
            return reason
        reason = self.policy.decide(newest, snapshot, at)
        if reason is not None:
            self._newest[register_id] = Kept(snapshot, at)
            self._by_agent.setdefault(agent_id, set()).add(register_id)
        return reason

    def link_lost(self, register_id: str) -> None:
        """The register's link went down: the next state that arrives is kept (reason ``link``)."""
        kept = self._newest.get(register_id)
        if kept is not None and kept.snapshot.link_up:
            self._newest[register_id] = replace(kept, snapshot=replace(kept.snapshot, link_up=False))

    def agent_offline(self, agent_id: str) -> None:
        """The agent went offline: each of its registers' next state is kept."""
        for register_id in self._by_agent.get(agent_id, ()):
            self.link_lost(register_id)
