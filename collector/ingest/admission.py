"""Which agents may store data: enrolled and not revoked, or — when enrollment is not enforced —
auto-registered: in a single-company install (``company`` named) into that company's «Новые кассы»
node, where its owners and admins see them; without a company (writer tests, benchmarks) into a bare
tenant's "unassigned" node, which no account can see — the collector config never chooses that."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import sqlalchemy as sa

from collector.accounts.new_registers import DEFAULT_NODE_NAME, landing_node
from collector.ingest import bulk
from collector.storage import repository as repo
from collector.storage.dialect import member_of, serialize_creation
from collector.storage.schema import agents, nodes, tenants

UNASSIGNED_KIND = "unassigned"


@dataclass(frozen=True, slots=True)
class Refusal:
    reason: Literal["unknown_agent", "agent_revoked"]  # dead-letter reason, and what the agent is told
    detail: str


class Admission:
    """Caches admitted agents; a refused agent is looked up again on its next batch (it may get enrolled)."""

    def __init__(
        self,
        *,
        enforce: bool,
        default_tenant: str,
        unassigned_node: str,
        company: str | None = None,
        new_registers_node: str = DEFAULT_NODE_NAME,
    ) -> None:
        self._enforce = enforce
        self._tenant_name = default_tenant
        self._node_name = unassigned_node
        self._company = company
        self._new_registers_node = new_registers_node
        self._admitted: set[str] = set()
        self._landing: tuple[int, int] | None = None  # (tenant, node) newcomers go to

    def reset(self) -> None:
        """Forget every admission (after a rollback, an auto-registration may not have been stored)."""
        self._admitted.clear()
        self._landing = None

    def check(self, conn: sa.Connection, agent_ids: set[str], now: datetime) -> dict[str, Refusal]:
        """Admit what can be admitted (auto-registering if allowed); returns the refused agents."""
        unknown = agent_ids - self._admitted
        if not unknown:
            return {}
        rows = conn.execute(sa.select(agents.c.agent_id, agents.c.revoked).where(member_of(conn, agents.c.agent_id, unknown)))
        found = {row.agent_id: bool(row.revoked) for row in rows}
        refused: dict[str, Refusal] = {}
        newcomers: list[str] = []
        for agent_id in sorted(unknown):
            if found.get(agent_id) is True:
                refused[agent_id] = Refusal("agent_revoked", f"agent {agent_id!r} was revoked")
            elif agent_id in found:
                self._admitted.add(agent_id)
            elif self._enforce:
                refused[agent_id] = Refusal("unknown_agent", f"agent {agent_id!r} is not enrolled")
            else:
                newcomers.append(agent_id)
        if newcomers:
            # A fleet coming online at once brings hundreds of new agents in one batch: resolve
            # the node once and register them with one statement, not two queries per agent.
            if self._landing is None:
                # Several collectors meeting their first newcomers at once must not each create the node.
                serialize_creation(conn, "kassa:landing-node")
                self._landing = self._unassigned_node(conn, now)
            tenant_id, node_id = self._landing
            bulk.enroll_agents(conn, newcomers, tenant_id=tenant_id, node_id=node_id, enrolled_at=now, rebind=False)
            self._admitted.update(newcomers)
        return refused

    def _unassigned_node(self, conn: sa.Connection, now: datetime) -> tuple[int, int]:
        if self._company is not None:
            landing = landing_node(conn, self._company, self._new_registers_node)
            return landing.tenant_id, landing.node_id
        tenant_id = conn.execute(
            sa.select(tenants.c.id).where(tenants.c.name == self._tenant_name).order_by(tenants.c.id).limit(1)
        ).scalar_one_or_none()
        if tenant_id is None:
            tenant_id = repo.create_tenant(conn, self._tenant_name, created_at=now)
        node_id = conn.execute(
            sa.select(nodes.c.id)
            .where(nodes.c.tenant_id == tenant_id, nodes.c.kind == UNASSIGNED_KIND, nodes.c.name == self._node_name)
            .order_by(nodes.c.id)
            .limit(1)
        ).scalar_one_or_none()
        if node_id is None:
            node_id = repo.create_node(conn, tenant_id, parent_id=None, kind=UNASSIGNED_KIND, name=self._node_name)
        return int(tenant_id), int(node_id)


DEFAULT_MAX_SESSION_JUMP = 1000


class SessionGuard:
    """Refuses a session number that jumps implausibly far past the highest one the collector has
    stored for the agent.

    An agent adds 1 per MQTT connection and every connection publishes a status and a birth, so
    the collector normally sees sessions one apart; a jump of more than ``max_jump`` means a forged
    or corrupt message, and storing it would rank it above everything the real agent sends for
    good. An agent the collector never heard from has no baseline: its first session is taken.
    Knowledge is cached per agent and grows only with :meth:`learn` after a commit.
    """

    def __init__(self, max_jump: int = DEFAULT_MAX_SESSION_JUMP) -> None:
        self.max_jump = max_jump
        self._known: dict[str, int | None] = {}

    def learn(self, sessions: dict[str, int]) -> None:
        """Committed: the agents' highest stored sessions are now at least these."""
        for agent, session in sessions.items():
            known = self._known.get(agent)
            self._known[agent] = session if known is None else max(known, session)

    def forget(self, agents_superseded: set[str]) -> None:
        """A birth lowered what is stored for these agents: read it again when next needed."""
        for agent in agents_superseded:
            self._known.pop(agent, None)

    def load(self, conn: sa.Connection, agent_ids: set[str]) -> None:
        """Read the stored highest sessions of the agents not cached yet (one query)."""
        self._read(conn, [agent for agent in agent_ids if agent not in self._known])

    def refusal(self, conn: sa.Connection, agent: str, session: int, *, floor: int = 0) -> str | None:
        """Why stored ``session`` is implausible for ``agent`` (after :meth:`load`), or None. ``floor``
        is the base of the message's installation (epochs.py): a new installation's sessions start
        just above it. A refusal is checked against the database first: other collectors (shared
        subscription) may have stored higher sessions of the agent since it was cached."""
        if self._plausible(agent, session, floor):
            return None
        self._read(conn, [agent])
        if self._plausible(agent, session, floor):
            return None
        known = self._known[agent]
        return (
            f"session {session} of agent {agent!r} jumps {session - (known or 0)} past the highest stored "
            f"({known}); at most {self.max_jump} is plausible"
        )

    def _plausible(self, agent: str, session: int, floor: int) -> bool:
        known = self._known.get(agent)
        return known is None or session <= max(known, floor) + self.max_jump

    def _read(self, conn: sa.Connection, agent_ids: list[str]) -> None:
        if not agent_ids:
            return
        rows = conn.execute(
            sa.select(agents.c.agent_id, agents.c.last_session, agents.c.status_session).where(
                member_of(conn, agents.c.agent_id, agent_ids)
            )
        )
        found = {row.agent_id: _highest(row.last_session, row.status_session) for row in rows}
        self._known.update({agent: found.get(agent) for agent in agent_ids})


def _highest(*sessions: int | None) -> int | None:
    known = [session for session in sessions if session is not None]
    return max(known) if known else None
