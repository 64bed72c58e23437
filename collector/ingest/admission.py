"""Which agents may store data: enrolled and not revoked, or — when enrollment is not enforced —
auto-registered: in a single-company install (``company`` named) into that company's «Новые кассы»
node, where its owners and admins see them; without a company (writer tests, benchmarks) into a bare
tenant's "unassigned" node, which no account can see — the collector config never chooses that."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from collector.accounts.new_registers import DEFAULT_NODE_NAME, landing_node
from collector.ingest import bulk
from collector.storage import repository as repo
from collector.storage.schema import agents, nodes, tenants

UNASSIGNED_KIND = "unassigned"


@dataclass(frozen=True, slots=True)
class Refusal:
    reason: str  # dead-letter reason
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

    def reset(self) -> None:
        """Forget every admission (after a rollback, an auto-registration may not have been stored)."""
        self._admitted.clear()

    def check(self, conn: sa.Connection, agent_ids: set[str], now: datetime) -> dict[str, Refusal]:
        """Admit what can be admitted (auto-registering if allowed); returns the refused agents."""
        unknown = agent_ids - self._admitted
        if not unknown:
            return {}
        rows = conn.execute(sa.select(agents.c.agent_id, agents.c.revoked).where(agents.c.agent_id.in_(unknown)))
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
            tenant_id, node_id = self._unassigned_node(conn, now)
            bulk.enroll_agents(conn, newcomers, tenant_id=tenant_id, node_id=node_id, enrolled_at=now)
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
