"""Per-agent sequence bookkeeping: which ``ack`` high-water mark may be published, and when a gap in
a live session has stayed open long enough to ask the agent for a rebirth.

``ack {session, seq}`` tells the agent to delete every record of ``session`` with seq ≤ ``seq``
from its outbox, so for the live stream it must be the **contiguous** committed prefix: acking
past a missing seq would let the agent drop a record the database never got. A record after a
gap stays in the agent's outbox and is replayed on ``hist`` after its next reconnect.

Replayed ``hist`` batches are different: the outbox coalesces states and sends them oldest first,
so their seqs have gaps by design; there the mark is the highest seq committed (``max`` mode).
Under a shared subscription every collector sees only part of each agent's stream, so gaps are
normal there and no collector may ack a prefix: each acks exactly the seqs it committed (``ranges``,
``Batcher._publish_acks``) and never asks for rebirths — the agent itself sends again what stays
unacked behind an acked seq (``agent.runtime.replay``).

An agent's sessions only grow, so a live message of a *lower* session than the tracked one is
either late or the real agent contradicting a forged higher session. Either way the collector asks
for a rebirth at once; the birth names the agent's real session (:meth:`SequenceTracker.supersede`)
and tracking continues there, counting what of that session arrived meanwhile.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

NOTHING = -1  # committed prefix before seq 0 (the birth) arrived
UNSEEDED = -2  # tracking restarted by a birth; the durable mark is still to be read
MAX_STRAYS = 10_000  # lower-session seqs remembered per tracked session


@dataclass
class _Session:
    session: int
    committed: int = NOTHING  # highest seq s.t. every seq ≤ it is committed
    above: set[int] = field(default_factory=set)  # committed seqs beyond a gap
    gap_since: float | None = None
    rebirth_asked: bool = False
    contradicted: bool = False  # a live message of a lower session came after this one's
    # Committed seqs of lower sessions that arrived while this one was tracked: kept so that, when
    # a birth shows the lower session is the real one, they count towards its ack.
    strays: dict[int, set[int]] = field(default_factory=dict)

    def copy(self) -> _Session:
        return _Session(
            self.session, self.committed, set(self.above), self.gap_since, self.rebirth_asked, self.contradicted,
            {session: set(seqs) for session, seqs in self.strays.items()},
        )


class SequenceTracker:
    def __init__(
        self,
        reorder_window: float,
        *,
        contiguous: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._window = reorder_window
        self._contiguous = contiguous
        self._clock = clock
        self._live: dict[str, _Session] = {}  # agent → its newest session seen
        # Agents that may be due a rebirth (a gap opened, or contradicted): checked after every
        # batch, where walking every tracked agent cost ~4 ms a batch at 50 000 agents.
        self._watch: set[str] = set()
        self._journal: dict[str, _Session | None] = {}  # state before this batch, per touched agent

    def begin(self) -> None:
        """Start journaling: :meth:`rollback` undoes what follows (the transaction rolled back)."""
        self._journal = {}

    def rollback(self) -> None:
        for agent, saved in self._journal.items():
            if saved is None:
                self._live.pop(agent, None)
            else:
                self._live[agent] = saved
                if saved.contradicted or saved.gap_since is not None:
                    self._watch.add(agent)
        self._journal = {}

    def _touch(self, agent: str) -> None:
        if agent not in self._journal:
            current = self._live.get(agent)
            self._journal[agent] = None if current is None else current.copy()

    def knows(self, agent: str, session: int) -> bool:
        current = self._live.get(agent)
        return current is not None and current.session >= session and current.committed != UNSEEDED

    def seed(self, agent: str, session: int, committed: int) -> None:
        """Start tracking from the durable mark (after a restart, or the first message of a session)."""
        current = self._live.get(agent)
        if current is not None and current.session == session and current.committed == UNSEEDED:
            self._touch(agent)
            current.committed = committed
            current.above = {seq for seq in current.above if seq > committed}
        elif current is None or session > current.session:
            self._touch(agent)
            self._live[agent] = _Session(session=session, committed=committed)

    def commit_live(self, agent: str, session: int, seqs: Iterable[int]) -> int | None:
        """Record committed live seqs; returns the new mark when it advanced, else None."""
        self._touch(agent)
        current = self._live.get(agent)
        if current is None or session > current.session:
            current = _Session(session=session)
            self._live[agent] = current
        elif session < current.session:
            # Sessions only grow, so either a late message of an older session or the real agent
            # contradicting a forged higher session: a birth settles which (see ``supersede``).
            current.contradicted = True
            self._watch.add(agent)
            strays = current.strays.setdefault(session, set())
            if len(strays) < MAX_STRAYS:  # bounded: beyond it the agent's outbox replays them
                strays.update(seqs)
            return None
        before = current.committed
        if self._contiguous:
            current.above.update(seq for seq in seqs if seq > current.committed)
            self._advance(current)
        else:
            current.committed = max([current.committed, *seqs])
        self._update_gap(agent, current)
        return current.committed if current.committed > before else None

    def supersede(self, agent: str, session: int) -> None:
        """A live birth of ``session``: the agent is in that session now. A higher session tracked
        for it is dropped; tracking restarts from the birth session's durable mark (:meth:`seed`)
        plus what of that session arrived meanwhile."""
        current = self._live.get(agent)
        if current is not None and current.session > session:
            self._touch(agent)
            self._live[agent] = _Session(session, UNSEEDED, current.strays.get(session, set()))

    @staticmethod
    def _advance(current: _Session) -> None:
        while current.committed + 1 in current.above:
            current.committed += 1
            current.above.discard(current.committed)

    def commit_replayed(self, agent: str, session: int, top_seq: int) -> None:
        """A replayed batch of ``session`` committed up to ``top_seq``."""
        self._touch(agent)
        current = self._live.get(agent)
        if current is not None and current.session == session and top_seq > current.committed:
            current.committed = top_seq
            current.above = {seq for seq in current.above if seq > top_seq}
            self._update_gap(agent, current)

    def due_rebirths(self) -> list[str]:
        """Agents whose gap outlived the reorder window and were not asked yet (asked once per gap)."""
        if not self._contiguous:
            return []
        now = self._clock()
        due = []
        for agent in list(self._watch):
            current = self._live.get(agent)
            if current is None or current.rebirth_asked or (not current.contradicted and current.gap_since is None):
                self._watch.discard(agent)  # asked already, or nothing to ask: a new gap adds it again
            elif current.contradicted or now - current.gap_since >= self._window:  # type: ignore[operator]
                # A contradiction at once: its birth tells the agent's real session.
                current.rebirth_asked = True
                self._watch.discard(agent)
                due.append(agent)
        return sorted(due)

    def open_gaps(self) -> dict[str, tuple[int, int]]:
        """agent → (session, first missing seq), for diagnostics and tests."""
        return {
            agent: (current.session, current.committed + 1) for agent, current in self._live.items() if current.above
        }

    def _update_gap(self, agent: str, current: _Session) -> None:
        if not current.above:
            current.gap_since = None
            current.rebirth_asked = False
        elif current.gap_since is None:
            current.gap_since = self._clock()
            self._watch.add(agent)
