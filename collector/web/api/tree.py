"""The company tree in the JSON API: the tree with its alert rollups (every caller, by scope),
and its management — nodes, levels, the CSV import of stores and registers, tags. Nodes and registers outside the caller's view answer 404; a visible one
without the needed permission answers 403 (``rights.authorize`` inside the accounts package)."""

from __future__ import annotations

import sqlalchemy as sa
from aiohttp import web
from pydantic import BaseModel, Field

from collector.accounts import tree
from collector.accounts.rights import scope_for
from collector.accounts.tree_import import import_tree_csv
from collector.storage import repository as repo
from collector.storage.schema import nodes, tags
from collector.storage.scope import node_visible
from collector.web.api.csv_import import ImportQuery, ImportReportOut, read_csv, report_out
from collector.web.api.models import Created, Done, InputModel, Name
from collector.web.auth import principal_of
from collector.web.problems import Problem
from collector.web.routing import (
    API,
    Operation,
    in_transaction,
    int_path_param,
    json_response,
    now,
    parse_body,
    parse_query,
)
from collector.web.shared import present
from collector.web.shared.accounts import Caller, answer_as_caller, require_visible
from collector.web.shared.fleet_models import NodeRollupList, NodeTreeOut
from collector.web.shared.paging import Page, Paged, next_link, repaged


class NodeOut(BaseModel):
    id: int
    parent_id: int | None
    kind: str
    name: str


class LevelOut(BaseModel):
    position: int
    name: str = Field(description="the key nodes carry as their kind")
    holds_registers: bool
    title: str = Field(description="what people read: the company's own name for the level, else the default")


class TreeOut(BaseModel):
    levels: list[LevelOut]
    nodes: list[NodeOut]


class NodeBody(InputModel):
    parent_id: int = Field(ge=1)
    kind: str = Field(min_length=1, max_length=50)
    name: str = Name


class NodePatch(InputModel):
    name: str | None = Field(None, min_length=1, max_length=200)
    parent_id: int | None = Field(None, ge=1, description="move the subtree under this node")


class LevelsBody(InputModel):
    names: list[str] = Field(min_length=2, max_length=20)


class LevelList(Paged):
    items: list[LevelOut]


class TagBody(InputModel):
    name: str = Field(min_length=1, max_length=100)


class TagOut(BaseModel):
    id: int
    name: str


class TagList(Paged):
    items: list[TagOut]


# --- tree ----------------------------------------------------------------------------------------


def _levels(conn: sa.Connection, tenant_id: int) -> list[LevelOut]:
    return [LevelOut(position=lv.position, name=lv.name, holds_registers=lv.holds_registers, title=lv.shown)
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


async def node_tree(request: web.Request) -> web.Response:
    scope = principal_of(request).scope

    def work(conn: sa.Connection) -> NodeTreeOut:
        return NodeTreeOut(roots=present.node_forest(repo.node_rollups(conn, scope)))

    return json_response(await in_transaction(request, work))


async def node_rollups(request: web.Request) -> web.Response:
    query = parse_query(request, Page)
    scope = principal_of(request).scope

    def work(conn: sa.Connection) -> NodeRollupList:
        page, total = repo.node_page(conn, scope, limit=query.limit, offset=query.offset)
        rollups = repo.node_rollups(conn, scope, node_ids=page)
        return NodeRollupList(items=[present.rollup_out(r) for r in rollups], next=next_link(request, query, len(rollups), total))

    return json_response(await in_transaction(request, work))


_NODE_ID = {"node_id": int}
_W = (403, 404, 409, 415, 422)

OPERATIONS: tuple[Operation, ...] = (
    Operation("GET", f"{API}/nodes", node_tree, "getNodeTree", "The company tree visible to the caller", "nodes",
              NodeTreeOut),
    Operation("GET", f"{API}/nodes/rollups", node_rollups, "getNodeRollups",
              "Per node: registers by worst severity and the earliest block, all descendants included", "nodes",
              NodeRollupList, query=Page, errors=(400,)),
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
)


