"""``kassa-collector agents refused``: the operator's list of agents whose messages the collector
refuses (not enrolled, revoked), from the dead letters; ``agents place``: move an agent (and its
registers) from «Новые кассы» into a store."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime

import sqlalchemy as sa

from collector.accounts.audit import Actor
from collector.accounts.cli_support import add_db_argument, run_in_transaction
from collector.accounts.errors import NotFound
from collector.accounts.new_registers import place_agent
from collector.storage.refused_agents import refused_agents
from collector.storage.schema import agents

WHY = {"unknown_agent": "not enrolled", "agent_revoked": "revoked"}


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("agents", help="agents the collector refuses; place new agents")
    actions = parser.add_subparsers(dest="agents_command", metavar="ACTION", required=True)
    refused = actions.add_parser("refused", help="agents whose messages are refused, most recent first")
    add_db_argument(refused)
    refused.add_argument("--limit", type=int, default=100)
    refused.set_defaults(func=run_refused)
    place = actions.add_parser("place", help="move an agent and its registers into a store")
    add_db_argument(place)
    place.add_argument("--agent", required=True, help="the agent id")
    place.add_argument("--node", type=int, required=True, help="the store's node id")
    place.set_defaults(func=run_place)


def run_refused(args: argparse.Namespace) -> int:
    def work(conn: sa.Connection) -> int:
        found = refused_agents(conn, limit=args.limit)
        if not found:
            print("no agent is refused")
        for agent in found:
            company = "" if agent.tenant_id is None else f", company {agent.tenant_id}"
            print(f"{agent.agent_id}: {WHY.get(agent.reason, agent.reason)}{company}, {agent.messages} messages "
                  f"from {agent.first_at:%Y-%m-%d %H:%M} to {agent.last_at:%Y-%m-%d %H:%M} UTC")
        return 0

    return run_in_transaction(args, "kassa-collector agents refused", work)


def run_place(args: argparse.Namespace) -> int:
    def work(conn: sa.Connection) -> int:
        tenant = conn.execute(sa.select(agents.c.tenant_id).where(agents.c.agent_id == args.agent)).scalar_one_or_none()
        if tenant is None:
            raise NotFound(f"no agent {args.agent!r}")
        place_agent(conn, Actor.cli(), int(tenant), args.agent, args.node, at=datetime.now(UTC))
        print(f"agent {args.agent} and its registers moved to node {args.node}")
        return 0

    return run_in_transaction(args, "kassa-collector agents place", work)
