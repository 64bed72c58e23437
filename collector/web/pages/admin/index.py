"""The administration index (the sections this user may open) and "why does X see Y"."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from aiohttp import web

from collector.accounts.errors import NotFound
from collector.accounts.rights import Permission, authorize, explain
from collector.web.pages.render import page, render
from collector.web.pages.support import (
    ROLE_TITLES,
    Handler,
    admin_sections,
    as_caller,
    covering,
    tenant_users,
)
from collector.web.shared.accounts import Caller, require_visible


@page
async def admin_index(request: web.Request) -> web.StreamResponse:
    sections = await as_caller(request, lambda conn, who: admin_sections(conn, who.user_id))
    return render(request, "admin_index.html", {"sections": sections})


@page
async def why_page(request: web.Request) -> web.StreamResponse:
    register_id = request.query.get("register", "").strip()[:100]
    subject_text = request.query.get("user", "").strip()

    def work(conn: sa.Connection, who: Caller) -> dict[str, Any]:
        may_ask_for_others = bool(covering(conn, who.user_id, Permission.MANAGE_GRANTS))
        colleagues = tenant_users(conn, who) if may_ask_for_others else []
        context: dict[str, Any] = {"register": register_id, "subject": subject_text, "colleagues": colleagues,
                                   "answer": None}
        if not register_id:
            return context
        require_visible(conn, who, register_id)  # 404 for what the asker cannot see
        if subject_text and not (subject_text.isascii() and subject_text.isdigit() and len(subject_text) < 18):
            raise NotFound(f"user {subject_text!r} not found")
        subject = int(subject_text) if subject_text else who.user_id
        if subject != who.user_id:  # a colleague's view: for those who manage grants there
            if subject not in {u.id for u in colleagues}:
                raise NotFound(f"user {subject} not found")
            authorize(conn, who.actor, who.tenant_id, Permission.MANAGE_GRANTS, register_id)
        found = explain(conn, subject, register_id)
        context["answer"] = {"visible": found.visible, "grants": found.grants}
        return context

    return render(request, "admin_why.html", {**await as_caller(request, work), "role_titles": ROLE_TITLES})


ROUTES: tuple[tuple[str, str, Handler, str], ...] = (
    ("GET", "/admin", admin_index, "page-admin"),
    ("GET", "/admin/why", why_page, "page-admin-why"),
)
