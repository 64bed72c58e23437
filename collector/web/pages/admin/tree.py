"""The company tree editor: create, rename/move and delete nodes, and the CSV import with a dry run."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from aiohttp import web

from collector.accounts import tree
from collector.accounts.csvrows import ImportReport
from collector.accounts.rights import (
    Permission,
    authorize,
    scope_for,
)
from collector.accounts.tree_import import import_tree_csv
from collector.storage.schema import nodes
from collector.storage.scope import node_visible
from collector.web.pages.render import page
from collector.web.pages.support import (
    REPORT_KEY,
    SECTION_PATHS,
    Handler,
    Invalid,
    as_caller,
    change,
    checked_form,
    covering,
    int_field,
    need,
    run_import,
    section_render,
)
from collector.web.routing import int_path_param, now
from collector.web.shared.accounts import (
    Caller,
    require_visible,
)

# --- tree ----------------------------------------------------------------------------------------


@page
async def tree_admin(request: web.Request) -> web.StreamResponse:
    report = request.get(REPORT_KEY)

    def work(conn: sa.Connection, who: Caller) -> dict[str, Any]:
        editable = covering(conn, who.user_id, Permission.MANAGE_TREE)
        need(bool(editable), f"{who.actor.label} may not edit the tree anywhere")
        visible = conn.execute(
            sa.select(nodes.c.id, nodes.c.parent_id, nodes.c.kind, nodes.c.name, nodes.c.path)
            .where(node_visible(scope_for(conn, who.user_id), nodes)).order_by(nodes.c.path)
        ).all()
        rows = [{"node": n, "depth": len([part for part in n.path.split("/") if part]) - 1,
                 "editable": any(n.path.startswith(p) for p in editable)} for n in visible]
        return {"rows": rows, "levels": tree.levels(conn, who.tenant_id),
                "titles": tree.level_titles(conn, who.tenant_id), "paths": tree.node_paths(conn, who.tenant_id),
                "targets": [r["node"] for r in rows if r["editable"]]}

    context = await as_caller(request, work)
    return section_render(request, "admin_tree.html", {**context, "report": report})


@page
async def create_node(request: web.Request) -> web.StreamResponse:
    fields, at = await checked_form(request), now(request)

    def work(conn: sa.Connection, who: Caller) -> None:
        parent_id = int_field(fields, "parent_id", "create", "родительский узел")
        require_visible(conn, who, parent_id)
        authorize(conn, who.actor, who.tenant_id, Permission.MANAGE_TREE, parent_id)
        name = " ".join(fields.get("name", "").split())
        if not name:
            raise Invalid("create", "Укажите название узла.")
        tree.create_node(conn, who.actor, who.tenant_id, parent_id=parent_id, kind=fields.get("kind", ""),
                         name=name, at=at)

    return await change(request, tree_admin, "create", work, "node-created")


@page
async def update_node(request: web.Request) -> web.StreamResponse:
    node_id = int_path_param(request, "node_id")
    fields, at = await checked_form(request), now(request)
    form = f"node-{node_id}"

    def work(conn: sa.Connection, who: Caller) -> None:
        require_visible(conn, who, node_id)
        authorize(conn, who.actor, who.tenant_id, Permission.MANAGE_TREE, node_id)
        current = tree.get_node(conn, who.tenant_id, node_id)
        parent_text, name = fields.get("parent_id", "").strip(), " ".join(fields.get("name", "").split())
        if parent_text and parent_text != str(current.parent_id):  # both in one transaction, as in the API
            new_parent = int_field(fields, "parent_id", form, "новый родительский узел")
            require_visible(conn, who, new_parent)
            tree.move_node(conn, who.actor, who.tenant_id, node_id, new_parent, at=at)
        if name and name != current.name:
            tree.rename_node(conn, who.actor, who.tenant_id, node_id, name, at=at)
        elif not name:
            raise Invalid(form, "Название не может быть пустым.")

    return await change(request, tree_admin, form, work, "node-saved")


@page
async def delete_node(request: web.Request) -> web.StreamResponse:
    node_id = int_path_param(request, "node_id")
    await checked_form(request)
    at = now(request)

    def work(conn: sa.Connection, who: Caller) -> None:
        require_visible(conn, who, node_id)
        tree.delete_node(conn, who.actor, who.tenant_id, node_id, at=at)

    return await change(request, tree_admin, f"node-{node_id}", work, "node-deleted")



@page
async def import_tree(request: web.Request) -> web.StreamResponse:
    at = now(request)

    def check(conn: sa.Connection, who: Caller) -> None:
        authorize(conn, who.actor, who.tenant_id, Permission.MANAGE_TREE, None)
        authorize(conn, who.actor, who.tenant_id, Permission.MANAGE_REGISTERS, None)

    def run(conn: sa.Connection, who: Caller, text: str, dry_run: bool) -> ImportReport:
        return import_tree_csv(conn, who.actor, who.tenant_id, text, at=at, dry_run=dry_run)

    return await run_import(request, tree_admin, "import", check, run)


SECTION_PATHS[tree_admin] = "/admin/tree"

ROUTES: tuple[tuple[str, str, Handler, str], ...] = (
    ("GET", "/admin/tree", tree_admin, "page-admin-tree"),
    ("POST", "/admin/tree/nodes", create_node, "admin-node-create"),
    ("POST", "/admin/tree/nodes/{node_id}", update_node, "admin-node-update"),
    ("POST", "/admin/tree/nodes/{node_id}/delete", delete_node, "admin-node-delete"),
    ("POST", "/admin/tree/import", import_tree, "admin-tree-csv"),
)
