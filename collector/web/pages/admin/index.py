"""The administration index (the sections this user may open) and "why does X see Y"."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from aiohttp import web

from collector.accounts.errors import NotFound
from collector.accounts.rights import Permission, authorize, explain, scope_for
from collector.storage import repository as repo
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
    """The register is named as people know it: serial, РНМ, ФН number or the internal id."""
    asked = request.query.get("register", "").strip()[:100]
    subject_text = request.query.get("user", "").strip()

    def work(conn: sa.Connection, who: Caller) -> dict[str, Any]:
        may_ask_for_others = bool(covering(conn, who.user_id, Permission.MANAGE_GRANTS))
        colleagues = tenant_users(conn, who) if may_ask_for_others else []
        context: dict[str, Any] = {"register": asked, "subject": subject_text, "colleagues": colleagues,
                                   "answer": None, "matches": [], "not_found": False}
        if not asked:
            return context
        matches = repo.find_registers(conn, scope_for(conn, who.user_id), asked)  # only what the asker sees
        if len(matches) != 1:
            context.update(matches=matches, not_found=not matches)
            return context
        register_id, serial = matches[0]
        context["shown_as"] = serial or register_id
        require_visible(conn, who, register_id)
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

    context = await as_caller(request, work)
    # Nonexistent and out of sight read the same, as everywhere: a 404 with the form to try again.
    return render(request, "admin_why.html", {**context, "role_titles": ROLE_TITLES},
                  status=404 if context["not_found"] else 200)


ROUTES: tuple[tuple[str, str, Handler, str], ...] = (
    ("GET", "/admin", admin_index, "page-admin"),
    ("GET", "/admin/why", why_page, "page-admin-why"),
)
