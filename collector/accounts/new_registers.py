"""«Новые кассы»: where agents nobody enrolled land in a single-company install.

The collector config names the company (``company``); an agent that reports without enrollment is
registered into a node of that name directly under the company root, created on first use. Its
owners and admins see it in the tree like any other node and move each agent (its registers follow
it, as they always follow their agent's store) into a real store.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from collector.accounts import audit
from collector.accounts.audit import Actor
from collector.accounts.errors import Conflict, InvalidInput, NotFound
from collector.accounts.names import clean_name
from collector.accounts.rights import Permission, authorize, can
from collector.accounts.tree import find_company, get_node
from collector.accounts.tree_levels import levels
from collector.storage import register_summary
from collector.storage import tree as storage_tree
from collector.storage.schema import agents, nodes, registers

NEW_REGISTERS_KIND = "new_registers"  # not a company level: nothing can be created below it
DEFAULT_NODE_NAME = "Новые кассы"


@dataclass(frozen=True, slots=True)
class Landing:
    tenant_id: int
    node_id: int


def landing_node(conn: sa.Connection, company: str, node_name: str = DEFAULT_NODE_NAME) -> Landing:
    """The company's «Новые кассы» node (by company name or ИНН), created under the root if missing.

    One per company, found by its kind: ``node_name`` only names it when it is created.
    """
    found = find_company(conn, company)
    name = clean_name(node_name, "name of the new registers node")
    node_id = conn.execute(
        sa.select(nodes.c.id)
        .where(nodes.c.tenant_id == found.tenant_id, nodes.c.parent_id == found.root_node_id,
               nodes.c.kind == NEW_REGISTERS_KIND)
        .order_by(nodes.c.id)
        .limit(1)
    ).scalar_one_or_none()
    if node_id is None:
        node_id = storage_tree.create_node(
            conn, found.tenant_id, parent_id=found.root_node_id, kind=NEW_REGISTERS_KIND, name=name
        )
    return Landing(found.tenant_id, int(node_id))


@dataclass(frozen=True, slots=True)
class WaitingAgent:
    agent_id: str
    node_id: int
    enrolled_at: datetime
    last_seen: datetime | None
    registers: tuple[str, ...]  # serials where known, else register ids


def waiting_agents(conn: sa.Connection, tenant_id: int) -> list[WaitingAgent]:
    """Agents of this company still in a «Новые кассы» node, oldest first, with their registers."""
    rows = conn.execute(
        sa.select(agents.c.agent_id, agents.c.node_id, agents.c.enrolled_at, agents.c.last_seen)
        .join(nodes, nodes.c.id == agents.c.node_id)
        .where(agents.c.tenant_id == tenant_id, nodes.c.kind == NEW_REGISTERS_KIND, agents.c.revoked.is_(False))
        .order_by(agents.c.enrolled_at, agents.c.agent_id)
    ).all()
    held: dict[str, list[str]] = {row.agent_id: [] for row in rows}
    for reg in conn.execute(
        sa.select(registers.c.agent_id, registers.c.register_id, registers.c.serial)
        .where(registers.c.agent_id.in_(list(held)))
        .order_by(registers.c.register_id)
    ):
        held[reg.agent_id].append(reg.serial or reg.register_id)
    return [
        WaitingAgent(row.agent_id, row.node_id, row.enrolled_at, row.last_seen, tuple(held[row.agent_id]))
        for row in rows
    ]


def _visible(conn: sa.Connection, actor: Actor, node_id: int | None) -> bool:
    """What the actor cannot see answers as missing (existence is not revealed); the CLI sees all."""
    if actor.user_id is None:
        return True
    return node_id is not None and can(conn, actor.user_id, Permission.VIEW, int(node_id))


def place_agent(
    conn: sa.Connection, actor: Actor, tenant_id: int, agent_id: str, store_id: int, *, at: datetime
) -> None:
    """Move an agent and its registers into a store of the same company."""
    current = conn.execute(
        sa.select(agents.c.node_id, agents.c.revoked).where(
            agents.c.agent_id == agent_id, agents.c.tenant_id == tenant_id
        )
    ).first()
    if current is None or not _visible(conn, actor, current.node_id):
        raise NotFound(f"агент {agent_id!r} не найден")
    if not _visible(conn, actor, store_id):
        raise NotFound(f"магазин {store_id} не найден")
    if current.revoked:
        raise Conflict(f"агент {agent_id!r} отключён; подключите его заново токеном")
    if current.node_id is not None:
        authorize(conn, actor, tenant_id, Permission.MANAGE_REGISTERS, int(current.node_id))
    authorize(conn, actor, tenant_id, Permission.MANAGE_REGISTERS, store_id)
    store = get_node(conn, tenant_id, store_id)
    store_level = next((lv.name for lv in levels(conn, tenant_id) if lv.holds_registers), None)
    if store.kind != store_level:
        raise InvalidInput(f"«{store.name}» — не магазин: кассы переносят только в магазин")
    conn.execute(sa.update(agents).where(agents.c.agent_id == agent_id).values(node_id=store_id))
    # Registers follow their agent's store on every report (ingest), so move them together now.
    conn.execute(sa.update(registers).where(registers.c.agent_id == agent_id).values(node_id=store_id))
    register_summary.refresh_agents(conn, [agent_id])
    audit.record(
        conn,
        actor,
        tenant_id=tenant_id,
        action="agent.place",
        target_type="agent",
        target_id=agent_id,
        at=at,
        details={"from_node": current.node_id, "to_node": store_id},
    )
