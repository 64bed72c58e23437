"""Administration pages, each within the caller's rights: the tree editor with CSV import, users,
groups, grants and "why does X see Y", OFD contracts, КЭП orders, agents with enrollment tokens,
notification receivers, and remote actions on registers (confirmation pages, bulk shift closing)
— one module per section, each with its ``ROUTES``; this package
only assembles them. What the sections share is in ``pages.support``, which imports no section.

Every change calls the same accounts, enrollment and notification functions as the JSON API
(``api.tree``, ``api.groups``, ``api.kep``, ``api.agents``, ``api.notifications``), in one transaction, so a
refused change leaves nothing half-applied. Rights come first: a node or register outside the
caller's view is a 404 page, a missing permission a 403 page. Input the change cannot accept
re-renders the section (200, like the page itself) with the message beside the form that caused
it; a success redirects back (POST/redirect/GET), except a new enrollment token or webhook
secret, which is shown once on the answer itself and never put in a URL.
"""

from __future__ import annotations

from collector.web.pages.admin import (
    accounting,
    agents,
    company,
    index,
    notifications,
    people,
    remote_actions,
    signed,
    tree,
)
from collector.web.pages.support import Handler

# Mounted by ``navigation.add_account_pages``; every one is private (the auth middleware runs).
ADMIN_ROUTES: tuple[tuple[str, str, Handler, str], ...] = (
    *index.ROUTES,
    *tree.ROUTES,
    *people.ROUTES,
    *accounting.ROUTES,
    *agents.ROUTES,
    *notifications.ROUTES,
    *company.ROUTES,
    *signed.ROUTES,
    *remote_actions.ROUTES,
)
