"""Company endpoints: the tree (nodes, levels, CSV import), tags, user groups and grants, and why
a user sees a register. Nodes and registers outside the caller's view answer 404; a visible one
without the needed permission answers 403 (``rights.authorize`` inside the accounts package)."""

from __future__ import annotations

import sqlalchemy as sa
from aiohttp import web

from collector.accounts import groups, tree
from collector.accounts.csvrows import MAX_IMPORT_BYTES, ImportReport
from collector.accounts.errors import NotFound
from collector.accounts.rights import Permission, authorize, explain, scope_for
from collector.accounts.schema import group_members, user_groups, users
from collector.accounts.tree_import import import_tree_csv
from collector.storage.schema import nodes, tags
from collector.storage.scope import node_visible
from collector.web.accounts_models import (
    Created,
    Done,
    GrantBody,
    GroupBody,
    GroupList,
    GroupOut,
    ImportQuery,
    ImportReportOut,
    LevelList,
    LevelOut,
    LevelsBody,
    LineErrorOut,
    MemberBody,
    MemberOut,
    NodeBody,
    NodeOut,
    NodePatch,
    TagBody,
    TagList,
    TagOut,
    TreeOut,
    WhyOut,
    WhyQuery,
    grant_out,
)
from collector.web.accounts_support import Caller, answer_as_caller, require_visible
from collector.web.paging import Page, repaged
from collector.web.problems import InvalidParam, Problem
from collector.web.routing import Operation, int_path_param, now, parse_body, parse_query

API = "/api/v1"
CSV_TYPES = frozenset({"text/csv", "text/plain", "application/csv"})


# --- tree ----------------------------------------------------------------------------------------


def _levels(conn: sa.Connection, tenant_id: int) -> list[LevelOut]:
    return [LevelOut(position=lv.position, name=lv.name, holds_registers=lv.holds_registers)
            for lv in tree.levels(conn, tenant_id)]


async def get_tree(request: web.Request) -> web.Response:
    def work(conn: sa.Connection, who: Caller) -> TreeOut:
        rows = conn.execute(
            sa.select(nodes.c.id, nodes.c.parent_id, nodes.c.kind, nodes.c.name)
            .where(node_visible(scope_for(conn, who.user_id), nodes))
            .order_by(nodes.c.path)
        )
        found = [NodeOut.model_validate(r, from_attributes=True) for r in rows]
        return TreeOut(levels=_levels(conn, who.tenant_id), nodes=found)

    return await answer_as_caller(request, work, write=False)


async def create_node(request: web.Request) -> web.Response:
    body, at = await parse_body(request, NodeBody), now(request)

    def work(conn: sa.Connection, who: Caller) -> Created:
        require_visible(conn, who, body.parent_id)
        return Created(id=tree.create_node(
            conn, who.actor, who.tenant_id, parent_id=body.parent_id, kind=body.kind, name=body.name, at=at
        ))

    return await answer_as_caller(request, work, status=201)


async def update_node(request: web.Request) -> web.Response:
    node_id = int_path_param(request, "node_id")
    body, at = await parse_body(request, NodePatch), now(request)
    if body.name is None and body.parent_id is None:
        raise Problem(422, "invalid-body", "Invalid request body", "give a new name, a new parent_id or both")

    def work(conn: sa.Connection, who: Caller) -> NodeOut:
        require_visible(conn, who, node_id)
        if body.parent_id is not None:  # both in one transaction: a refused rename undoes the move
            require_visible(conn, who, body.parent_id)
            tree.move_node(conn, who.actor, who.tenant_id, node_id, body.parent_id, at=at)
        if body.name is not None:
            tree.rename_node(conn, who.actor, who.tenant_id, node_id, body.name, at=at)
        node = tree.get_node(conn, who.tenant_id, node_id)
        return NodeOut(id=node.id, parent_id=node.parent_id, kind=node.kind, name=node.name)

    return await answer_as_caller(request, work)


async def delete_node(request: web.Request) -> web.Response:
    node_id, at = int_path_param(request, "node_id"), now(request)

    def work(conn: sa.Connection, who: Caller) -> Done:
        require_visible(conn, who, node_id)
        tree.delete_node(conn, who.actor, who.tenant_id, node_id, at=at)
        return Done(ok=True, message=f"node {node_id} deleted")

    return await answer_as_caller(request, work)


async def read_csv(request: web.Request) -> str:
    """The uploaded CSV text: ``text/csv`` (or plain text), UTF-8, at most the import limit."""
    if request.content_type not in CSV_TYPES:
        raise Problem(415, "unsupported-media-type", "Unsupported media type",
                      f"send the file as text/csv (got {request.content_type or 'nothing'})")
    too_large = Problem(413, "too-large", "File too large", f"the file is larger than {MAX_IMPORT_BYTES} bytes")
    if request.content_length is not None and request.content_length > MAX_IMPORT_BYTES:
        raise too_large
    raw = await request.content.read(MAX_IMPORT_BYTES + 1)
    if len(raw) > MAX_IMPORT_BYTES:
        raise too_large
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise Problem(400, "not-utf8", "Not UTF-8", "save the CSV as UTF-8 (Excel: CSV UTF-8)") from None


def report_out(report: ImportReport, dry_run: bool) -> ImportReportOut:
    """A dry run answers its report; a real import with errors is refused, naming every line."""
    if report.errors and not dry_run:
        raise Problem(
            422,
            "import-refused",
            "Import refused",
            f"{len(report.errors)} line(s) have errors; nothing was changed",
            invalid_params=[InvalidParam(name=f"line {e.line}", reason=e.message) for e in report.errors],
        )
    return ImportReportOut(
        ok=report.ok,
        applied=report.applied,
        errors=[LineErrorOut(line=e.line, message=e.message) for e in report.errors],
        changes=report.changes,
    )


async def import_tree(request: web.Request) -> web.Response:
    query = parse_query(request, ImportQuery)
    text, at = await read_csv(request), now(request)

    def work(conn: sa.Connection, who: Caller) -> ImportReportOut:
        report = import_tree_csv(conn, who.actor, who.tenant_id, text, at=at, dry_run=query.dry_run)
        return report_out(report, query.dry_run)

    return await answer_as_caller(request, work)


async def list_levels(request: web.Request) -> web.Response:
    page = parse_query(request, Page)
    return await answer_as_caller(
        request, lambda conn, who: repaged(request, page, LevelList(items=_levels(conn, who.tenant_id))), write=False
    )


async def set_levels(request: web.Request) -> web.Response:
    body, at = await parse_body(request, LevelsBody), now(request)

    def work(conn: sa.Connection, who: Caller) -> LevelList:
        tree.set_levels(conn, who.actor, who.tenant_id, body.names, at=at)
        return LevelList(items=_levels(conn, who.tenant_id))

    return await answer_as_caller(request, work)


# --- tags ----------------------------------------------------------------------------------------


async def list_tags(request: web.Request) -> web.Response:
    page = parse_query(request, Page)

    def work(conn: sa.Connection, who: Caller) -> TagList:
        rows = conn.execute(sa.select(tags.c.id, tags.c.name).where(tags.c.tenant_id == who.tenant_id).order_by(tags.c.name))
        return repaged(request, page, TagList(items=[TagOut(id=r.id, name=r.name) for r in rows]))

    return await answer_as_caller(request, work, write=False)


async def create_tag(request: web.Request) -> web.Response:
    body, at = await parse_body(request, TagBody), now(request)

    def work(conn: sa.Connection, who: Caller) -> Created:
        return Created(id=tree.create_tag(conn, who.actor, who.tenant_id, body.name, at=at))

    return await answer_as_caller(request, work, status=201)


async def _tag_register(request: web.Request, on: bool) -> web.Response:
    register_id, tag_id, at = request.match_info["register_id"], int_path_param(request, "tag_id"), now(request)

    def work(conn: sa.Connection, who: Caller) -> Done:
        require_visible(conn, who, register_id)
        tree.set_register_tag(conn, who.actor, who.tenant_id, register_id, tag_id, on=on, at=at)
        return Done(ok=True, message=f"tag {tag_id} {'set on' if on else 'removed from'} {register_id}")

    return await answer_as_caller(request, work)


async def tag_register(request: web.Request) -> web.Response:
    return await _tag_register(request, True)


async def untag_register(request: web.Request) -> web.Response:
    return await _tag_register(request, False)


# --- groups and grants ---------------------------------------------------------------------------


def _group_list(conn: sa.Connection, who: Caller) -> GroupList:
    authorize(conn, who.actor, who.tenant_id, Permission.MANAGE_GROUPS, None)
    found = conn.execute(
        sa.select(user_groups.c.id, user_groups.c.name)
        .where(user_groups.c.tenant_id == who.tenant_id)
        .order_by(user_groups.c.name)
    ).all()
    members: dict[int, list[MemberOut]] = {g.id: [] for g in found}
    for m in conn.execute(
        sa.select(group_members.c.group_id, users.c.id, users.c.email)
        .join(users, users.c.id == group_members.c.user_id)
        .where(users.c.tenant_id == who.tenant_id)
        .order_by(users.c.email)
    ):
        members.setdefault(m.group_id, []).append(MemberOut(user_id=m.id, email=m.email))
    out = []
    for g in found:
        conferred = [
            grant_out({"grant_id": gr.grant_id, "group_id": g.id, "group_name": g.name, "role": gr.role,
                       "node_id": gr.node_id, "node_name": tree.get_node(conn, who.tenant_id, gr.node_id).name})
            for gr in groups.group_grants(conn, g.id)
        ]
        out.append(GroupOut(id=g.id, name=g.name, members=members[g.id], grants=conferred))
    return GroupList(items=out)


async def list_groups(request: web.Request) -> web.Response:
    page = parse_query(request, Page)
    return await answer_as_caller(request, lambda conn, who: repaged(request, page, _group_list(conn, who)), write=False)


async def create_group(request: web.Request) -> web.Response:
    body, at = await parse_body(request, GroupBody), now(request)

    def work(conn: sa.Connection, who: Caller) -> Created:
        return Created(id=groups.create_group(conn, who.actor, who.tenant_id, body.name, at=at))

    return await answer_as_caller(request, work, status=201)


async def add_member(request: web.Request) -> web.Response:
    group_id = int_path_param(request, "group_id")
    body, at = await parse_body(request, MemberBody), now(request)

    def work(conn: sa.Connection, who: Caller) -> Done:
        groups.add_member(conn, who.actor, who.tenant_id, group_id, body.user_id, at=at)
        return Done(ok=True, message=f"user {body.user_id} is in group {group_id}")

    return await answer_as_caller(request, work)


async def remove_member(request: web.Request) -> web.Response:
    group_id, member, at = int_path_param(request, "group_id"), int_path_param(request, "user_id"), now(request)

    def work(conn: sa.Connection, who: Caller) -> Done:
        groups.remove_member(conn, who.actor, who.tenant_id, group_id, member, at=at)
        return Done(ok=True, message=f"user {member} is not in group {group_id}")

    return await answer_as_caller(request, work)


async def create_grant(request: web.Request) -> web.Response:
    body, at = await parse_body(request, GrantBody), now(request)

    def work(conn: sa.Connection, who: Caller) -> Created:
        require_visible(conn, who, body.node_id)
        return Created(id=groups.grant_role(conn, who.actor, who.tenant_id, body.group_id, body.role, body.node_id, at=at))

    return await answer_as_caller(request, work, status=201)


async def delete_grant(request: web.Request) -> web.Response:
    grant_id, at = int_path_param(request, "grant_id"), now(request)

    def work(conn: sa.Connection, who: Caller) -> Done:
        groups.revoke_grant(conn, who.actor, who.tenant_id, grant_id, at=at)
        return Done(ok=True, message=f"grant {grant_id} revoked")

    return await answer_as_caller(request, work)


async def why_visible(request: web.Request) -> web.Response:
    register_id = request.match_info["register_id"]
    query = parse_query(request, WhyQuery)

    def work(conn: sa.Connection, who: Caller) -> WhyOut:
        require_visible(conn, who, register_id)
        subject = query.user or who.user_id
        if subject != who.user_id:  # someone else's view: a colleague's, for those who manage grants
            other = conn.execute(sa.select(users.c.tenant_id).where(users.c.id == subject)).scalar_one_or_none()
            if other != who.tenant_id:
                raise NotFound(f"user {subject} not found")
            authorize(conn, who.actor, who.tenant_id, Permission.MANAGE_GRANTS, register_id)
        found = explain(conn, subject, register_id)
        return WhyOut(register_id=register_id, user_id=subject, visible=found.visible, message=found.message,
                      grants=[grant_out(g) for g in found.grants])

    return await answer_as_caller(request, work, write=False)


_NODE_ID = {"node_id": int}
_GROUP_ID = {"group_id": int}
_W = (403, 404, 409, 415, 422)

OPERATIONS: tuple[Operation, ...] = (
    Operation("GET", f"{API}/tree", get_tree, "getCompanyTree", "Levels and the nodes of the tree the caller sees",
              "company", TreeOut, errors=(403,)),
    Operation("POST", f"{API}/nodes", create_node, "createNode", "Add a node under a parent", "company", Created,
              body=NodeBody, status=201, errors=_W),
    Operation("PATCH", f"{API}/nodes/{{node_id}}", update_node, "updateNode", "Rename and/or move a node",
              "company", NodeOut, body=NodePatch, path_params=_NODE_ID, errors=_W),
    Operation("DELETE", f"{API}/nodes/{{node_id}}", delete_node, "deleteNode",
              "Delete a node that holds nothing (no children, registers, agents, grants)", "company", Done,
              path_params=_NODE_ID, errors=(403, 404, 409, 422)),
    Operation("POST", f"{API}/tree/import", import_tree, "importTree",
              "Stores and registers from CSV (text/csv body); dry_run reports by line and changes nothing",
              "company", ImportReportOut, query=ImportQuery, errors=(403, 413, 415, 422)),
    Operation("GET", f"{API}/levels", list_levels, "listLevels", "The company's tree levels", "company", LevelList,
              query=Page, errors=(400, 403)),
    Operation("PUT", f"{API}/levels", set_levels, "setLevels", "Rename or reorder the tree levels", "company",
              LevelList, body=LevelsBody, errors=_W),
    Operation("GET", f"{API}/tags", list_tags, "listTags", "The company's tags", "company", TagList, query=Page,
              errors=(400, 403)),
    Operation("POST", f"{API}/tags", create_tag, "createTag", "A new tag", "company", Created, body=TagBody,
              status=201, errors=_W),
    Operation("PUT", f"{API}/registers/{{register_id}}/tags/{{tag_id}}", tag_register, "tagRegister",
              "Set a tag on a register", "company", Done, path_params={"register_id": str, "tag_id": int},
              errors=(403, 404)),
    Operation("DELETE", f"{API}/registers/{{register_id}}/tags/{{tag_id}}", untag_register, "untagRegister",
              "Remove a tag from a register", "company", Done, path_params={"register_id": str, "tag_id": int},
              errors=(403, 404)),
    Operation("GET", f"{API}/groups", list_groups, "listGroups", "User groups with members and grants", "company",
              GroupList, query=Page, errors=(400, 403)),
    Operation("POST", f"{API}/groups", create_group, "createGroup", "A new user group", "company", Created,
              body=GroupBody, status=201, errors=_W),
    Operation("POST", f"{API}/groups/{{group_id}}/members", add_member, "addGroupMember",
              "Add a user of the company to a group", "company", Done, body=MemberBody, path_params=_GROUP_ID,
              errors=_W),
    Operation("DELETE", f"{API}/groups/{{group_id}}/members/{{user_id}}", remove_member, "removeGroupMember",
              "Remove a user from a group", "company", Done, path_params={"group_id": int, "user_id": int},
              errors=(403, 404)),
    Operation("POST", f"{API}/grants", create_grant, "createGrant", "Give a group a role on a node's subtree",
              "company", Created, body=GrantBody, status=201, errors=_W),
    Operation("DELETE", f"{API}/grants/{{grant_id}}", delete_grant, "deleteGrant", "Revoke a grant", "company",
              Done, path_params={"grant_id": int}, errors=(403, 404)),
    Operation("GET", f"{API}/registers/{{register_id}}/why", why_visible, "explainRegister",
              "Which grants make a register visible to a user", "company", WhyOut, query=WhyQuery,
              path_params={"register_id": str}, errors=(403, 404)),
)
