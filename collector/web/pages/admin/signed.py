"""The register page's actions that need the company's КЭП: an application to the ФНС (technical
staff) and an e-document to the OFD (accountants).

They are offered on the register page only to those who may take them, and the form is only shown
when the company has a valid КЭП; otherwise the page says why and where to order one. The checks
run again on submit (``collector.accounts.signed_requests``), so an expired КЭП or a missing right
is refused with its reason even for a hand-made request.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar
from urllib.parse import quote

import sqlalchemy as sa
from aiohttp import web

from collector.accounts import signed_requests
from collector.accounts.errors import NotFound
from collector.accounts.kep import KepCheck, KepState, has_valid_kep, open_order
from collector.accounts.rights import Permission, authorize, permissions_at, user_tenant
from collector.web.pages.render import PageError, page
from collector.web.pages.support import Handler, as_caller, checked_form, refusal_text
from collector.web.problems import Problem
from collector.web.routing import now
from collector.web.shared.accounts import Caller, require_visible


@dataclass(frozen=True, slots=True)
class SignedActions:
    """What the register page offers this user for this register."""

    fns: bool  # may apply to the ФНС about it
    ofd: bool  # may send the OFD an e-document about it
    kep: KepCheck
    ordered: tuple[int, KepState] | None  # an order in progress: «КЭП заказана», not «нет КЭП»
    submitted: list[signed_requests.SubmittedRequest]

    @property
    def fns_titles(self) -> dict[str, str]:
        return signed_requests.FNS_TITLES

    @property
    def ofd_titles(self) -> dict[str, str]:
        return signed_requests.OFD_TITLES

    @property
    def any(self) -> bool:
        return self.fns or self.ofd


def signed_actions(conn: sa.Connection, user_id: int, register_id: str, at: datetime) -> SignedActions | None:
    try:
        allowed = permissions_at(conn, user_id, register_id)
    except NotFound:
        return None
    tenant_id = user_tenant(conn, user_id)
    fns, ofd = Permission.MANAGE_REGISTERS in allowed, Permission.EDIT_CONTRACTS in allowed
    return SignedActions(
        fns, ofd, has_valid_kep(conn, tenant_id, at), open_order(conn, tenant_id),
        signed_requests.submitted(conn, tenant_id, register_id) if fns or ofd else [],
    )


def _back(register_id: str, done: str) -> web.HTTPSeeOther:
    return web.HTTPSeeOther(f"/registers/{quote(register_id, safe='')}?done={done}#signed-actions")


Kind = TypeVar("Kind", signed_requests.FnsApplication, signed_requests.OfdDocument)
# (conn, caller, register id, kind, note, at) → records the request or raises a refusal
Record = Callable[[sa.Connection, Caller, str, Kind, str, datetime], object]


async def _signed_request(
    request: web.Request, permission: Permission, kinds: type[Kind], record: Record[Kind], done: str, choose: str
) -> web.StreamResponse:
    """Rights first, then the input: a kind not in the list re-asks (``?done=<choose>``); no valid КЭП
    (409) or a bad note (422) is a page that says why. Nothing is recorded unless all of it passes."""
    register_id = request.match_info["register_id"]
    fields, at = await checked_form(request), now(request)

    def work(conn: sa.Connection, who: Caller) -> str:
        require_visible(conn, who, register_id)
        authorize(conn, who.actor, who.tenant_id, permission, register_id)
        try:
            kind = kinds(fields.get("kind", ""))
        except ValueError:
            return choose
        deregistration = kind.value == signed_requests.FnsApplication.DEREGISTRATION.value  # (no OFD kind has it)
        if deregistration and fields.get("confirm") != "yes":
            return "confirm-deregistration"  # nothing recorded: the page asks to tick the confirmation
        record(conn, who, register_id, kind, fields.get("note", ""), at)
        return done

    try:
        outcome = await as_caller(request, work, write=True)
    except Problem as problem:
        raise PageError(problem.body.status, refusal_text(problem)) from None
    raise _back(register_id, outcome)


def _fns(conn: sa.Connection, who: Caller, register_id: str, kind: signed_requests.FnsApplication, note: str,
         at: datetime) -> object:
    # The page asked for the confirmation before calling (``_signed_request``).
    return signed_requests.apply_to_fns(conn, who.actor, who.tenant_id, register_id, kind, note, at=at, confirmed=True)


def _ofd(conn: sa.Connection, who: Caller, register_id: str, kind: signed_requests.OfdDocument, note: str,
         at: datetime) -> object:
    return signed_requests.send_to_ofd(conn, who.actor, who.tenant_id, kind, note, at=at, register_id=register_id)


@page
async def apply_to_fns(request: web.Request) -> web.StreamResponse:
    return await _signed_request(request, Permission.MANAGE_REGISTERS, signed_requests.FnsApplication, _fns,
                                 "fns-application", "choose-fns-kind")


@page
async def send_to_ofd(request: web.Request) -> web.StreamResponse:
    return await _signed_request(request, Permission.EDIT_CONTRACTS, signed_requests.OfdDocument, _ofd,
                                 "ofd-document", "choose-ofd-kind")


ROUTES: tuple[tuple[str, str, Handler, str], ...] = (
    ("POST", "/registers/{register_id}/fns-application", apply_to_fns, "register-fns-application"),
    ("POST", "/registers/{register_id}/ofd-document", send_to_ofd, "register-ofd-document"),
)
