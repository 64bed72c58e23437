"""Administration pages, each within the caller's rights: the tree editor with CSV import, users,
groups, grants and "why does X see Y", OFD contracts, КЭП orders, agents with enrollment tokens,
and notification receivers.

Every change calls the same accounts, enrollment and notification functions as the JSON API
(``company_api``, ``contracts_api``, ``enrollment_ops``, ``notify_api``), in one transaction, so a
refused change leaves nothing half-applied. Rights come first: a node or register outside the
caller's view is a 404 page, a missing permission a 403 page. Input the change cannot accept
re-renders the section (200, like the page itself) with the message beside the form that caused
it; a success redirects back (POST/redirect/GET), except a new enrollment token or webhook
secret, which is shown once on the answer itself and never put in a URL.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from aiohttp import web

from collector.accounts.errors import NotFound
from collector.accounts.rights import (
    Permission,
    authorize,
    explain,
)
from collector.web.accounts_support import (
    Caller,
    require_visible,
)
from collector.web.pages import admin_accounting, admin_agents, admin_notifications, admin_people, admin_tree
from collector.web.pages.account_views import admin_sections
from collector.web.pages.admin_support import (
    ROLE_TITLES,
    Handler,
    as_caller,
    covering,
    tenant_users,
)
from collector.web.pages.company_views import COMPANY_ROUTES
from collector.web.pages.render import page, render
from collector.web.pages.signed_views import SIGNED_ROUTES

# --- index and "why" -----------------------------------------------------------------------------


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



# Mounted by ``account_views.add_account_pages``; every one is private (the auth middleware runs).
ADMIN_ROUTES: tuple[tuple[str, str, Handler, str], ...] = (
    ("GET", "/admin", admin_index, "page-admin"),
    ("GET", "/admin/why", why_page, "page-admin-why"),
    *admin_tree.ROUTES,
    *admin_people.ROUTES,
    *admin_accounting.ROUTES,
    *admin_agents.ROUTES,
    *admin_notifications.ROUTES,
    *COMPANY_ROUTES,
    *SIGNED_ROUTES,
)
