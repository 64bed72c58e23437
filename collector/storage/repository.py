"""The storage API the ingest loop, the alert engine and the web layer call.

Every function takes a SQLAlchemy Core ``Connection`` and leaves commit to the caller, so one
transaction can batch many calls. The implementations live in small modules by purpose; this
module gathers them under one import:

* ingest writes: ``insert_history``, ``insert_events``, ``upsert_latest_state``,
  ``advance_ingest_mark``/``ingest_marks``, ``dead_letter``, ``ensure_register``
* agents: ``enroll_agent``, ``upsert_agent_status``, ``mark_agent_seen``
* alerts: ``upsert_alert``/``load_alert(s)``, ``add_alert_history``, ``add_comment``
* scoped reads: ``list_registers``, ``get_register``, ``list_alerts``, ``list_events``,
  ``state_history``, ``node_rollups`` (``view_node_ids`` / ``with_children``: one view of the tree)
* tree, tags, contracts, silences and retention
"""

from __future__ import annotations

from collector.storage.agents import (
    AgentRow,
    StatusOutcome,
    enroll_agent,
    get_agent,
    mark_agent_seen,
    revoke_agent,
    upsert_agent_status,
)
from collector.storage.alert_store import (
    add_alert_history,
    add_comment,
    list_comments,
    load_alert,
    load_alert_history,
    load_alerts,
    upsert_alert,
)
from collector.storage.contracts import load_contracts, upsert_contract
from collector.storage.ingest import (
    advance_ingest_mark,
    dead_letter,
    dead_letter_page,
    ensure_register,
    get_ingest_marks,
    insert_agent_events,
    insert_events,
    insert_history,
    list_dead_letters,
    set_link_up,
    set_register_evaluation,
    upsert_latest_state,
)
from collector.storage.reads import (
    REGISTER_STATUSES,
    agent_in_scope,
    find_registers,
    get_alert,
    get_register,
    list_agent_events,
    list_alerts,
    list_events,
    state_history,
)
from collector.storage.register_list import SORTS as REGISTER_SORTS
from collector.storage.register_list import list_registers
from collector.storage.retention import purge_dead_letters, purge_events, purge_history
from collector.storage.rollups import node_page, node_rollups, view_node_ids, with_children
from collector.storage.silences import add_silence, delete_silence, silences_covering
from collector.storage.tree import create_node, create_tag, create_tenant, move_node, tag_register

# The name the design uses for reading the marks back (``ingest_marks`` is also the table).
ingest_marks = get_ingest_marks

__all__ = [
    "REGISTER_SORTS",
    "REGISTER_STATUSES",
    "AgentRow",
    "StatusOutcome",
    "add_alert_history",
    "add_comment",
    "add_silence",
    "advance_ingest_mark",
    "agent_in_scope",
    "create_node",
    "create_tag",
    "create_tenant",
    "dead_letter",
    "dead_letter_page",
    "delete_silence",
    "enroll_agent",
    "ensure_register",
    "find_registers",
    "get_agent",
    "get_alert",
    "get_ingest_marks",
    "get_register",
    "ingest_marks",
    "insert_agent_events",
    "insert_events",
    "insert_history",
    "list_agent_events",
    "list_alerts",
    "list_comments",
    "list_dead_letters",
    "list_events",
    "list_registers",
    "load_alert",
    "load_alert_history",
    "load_alerts",
    "load_contracts",
    "mark_agent_seen",
    "move_node",
    "node_page",
    "node_rollups",
    "purge_dead_letters",
    "purge_events",
    "purge_history",
    "revoke_agent",
    "set_link_up",
    "set_register_evaluation",
    "silences_covering",
    "state_history",
    "tag_register",
    "upsert_agent_status",
    "upsert_alert",
    "upsert_contract",
    "upsert_latest_state",
    "view_node_ids",
    "with_children",
]
