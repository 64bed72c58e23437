"""Users in the JSON API: sign-up (with an optional КЭП order), e-mail confirmation, login/logout
with a session cookie, password reset, accepting an invitation, the caller's own profile and API
tokens.

Every write runs in one transaction (e-mails after the commit), is checked by
``rights.authorize`` inside the accounts package and leaves an audit entry.
"""

from __future__ import annotations

import asyncio

import sqlalchemy as sa
from aiohttp import web
from pydantic import AwareDatetime, BaseModel, Field

from collector.accounts import audit, kep
from collector.accounts.audit import Actor
from collector.accounts.errors import AccountsError
from collector.accounts.rights import Permission, permissions_at, user_grants
from collector.accounts.schema import api_tokens, users
from collector.accounts.sessions import create_api_token, revoke_api_token, revoke_session
from collector.accounts.web_auth import SESSION_COOKIE
from collector.web.api.company import TenantOut, tenant_out
from collector.web.api.kep import KepOrderBody, applicant_of
from collector.web.api.models import Done, Email, InputModel, Name, Password, Secret
from collector.web.problems import Problem
from collector.web.routing import (
    API,
    ENGINE_KEY,
    Operation,
    int_path_param,
    json_response,
    now,
    parse_body,
    parse_query,
)
from collector.web.shared.account_actions import GrantOut, grant_out
from collector.web.shared.accounts import (
    ACCOUNTS_WEB_KEY,
    Caller,
    answer_as_caller,
    as_problem,
    client_address,
    run_in_transaction,
    throttle,
)
from collector.web.shared.paging import Page, Paged, repaged


class SignUpBody(InputModel):
    email: str = Email
    password: str = Password
    company: str = Name
    inn: str = Field(min_length=10, max_length=12, description="the company's ИНН (10 or 12 digits)")
    kep_order: KepOrderBody | None = Field(None, description="order a КЭП right away (optional)")


class SignUpOut(BaseModel):
    tenant_id: int
    user_id: int
    root_node_id: int
    kep_order_id: int | None
    message: str


class TokenBody(InputModel):
    token: str = Secret


class ConfirmOut(BaseModel):
    user_id: int
    confirmed: bool


class LoginBody(InputModel):
    email: str = Email
    password: str = Password


class LoginOut(BaseModel):
    user_id: int
    email: str
    csrf_token: str = Field(description="send it as X-CSRF-Token with every POST/PUT/PATCH/DELETE")
    expires_at: AwareDatetime


class ResetRequestBody(InputModel):
    email: str = Email


class ResetConfirmBody(InputModel):
    token: str = Secret
    password: str = Password


class MeOut(BaseModel):
    user_id: int
    email: str
    full_name: str
    tenant: TenantOut
    company_permissions: list[Permission] = Field(description="what holds on the whole company tree")
    grants: list[GrantOut]


class ApiTokenBody(InputModel):
    name: str = Field(min_length=1, max_length=100)
    expires_at: AwareDatetime | None = None


class ApiTokenOut(BaseModel):
    id: int
    name: str
    prefix: str
    created_at: AwareDatetime
    expires_at: AwareDatetime | None
    last_used_at: AwareDatetime | None


class ApiTokenList(Paged):
    items: list[ApiTokenOut]


class NewApiTokenOut(BaseModel):
    id: int
    prefix: str
    token: str = Field(description="shown once; only its hash is kept")


class AcceptBody(InputModel):
    token: str = Secret
    password: str | None = Field(None, max_length=256, description="needed when the address has no account yet")
    full_name: str = Field("", max_length=200)




def _no_store(response: web.Response) -> web.Response:
    response.headers["Cache-Control"] = "no-store"  # answers carrying secrets are never cached
    return response


# --- anonymous flows -----------------------------------------------------------------------------


async def sign_up(request: web.Request) -> web.Response:
    throttle(request, "sign-up")
    body = await parse_body(request, SignUpBody)
    service, at = request.app[ACCOUNTS_WEB_KEY].service, now(request)

    def work(conn: sa.Connection) -> SignUpOut:
        made = service.sign_up(
            conn, email=body.email, password=body.password, company=body.company, inn=body.inn, at=at
        )
        order_id = None
        if body.kep_order is not None:
            owner = Actor.user(conn, made.user_id)
            order_id = kep.create_order(conn, owner, made.tenant_id, applicant_of(body.kep_order), at=at)
        return SignUpOut(
            tenant_id=made.tenant_id,
            user_id=made.user_id,
            root_node_id=made.root_node_id,
            kep_order_id=order_id,
            message="check your mailbox: follow the link we sent to confirm the address",
        )

    return json_response(await run_in_transaction(request, work), status=201)


async def confirm_email(request: web.Request) -> web.Response:
    body = await parse_body(request, TokenBody)
    service, at = request.app[ACCOUNTS_WEB_KEY].service, now(request)
    user_id = await run_in_transaction(request, lambda conn: service.confirm_email(conn, body.token, at=at))
    return json_response(ConfirmOut(user_id=user_id, confirmed=True))


async def login(request: web.Request) -> web.Response:
    throttle(request, "login")
    body = await parse_body(request, LoginBody)
    accounts = request.app[ACCOUNTS_WEB_KEY]
    try:
        # The session presented before login (if any) is revoked: a planted cookie stays worthless.
        session = await asyncio.to_thread(
            accounts.service.login,
            request.app[ENGINE_KEY],
            email=body.email,
            password=body.password,
            ip=client_address(request),
            at=now(request),
            previous_session=request.cookies.get(SESSION_COOKIE),
        )
    except AccountsError as exc:
        raise as_problem(exc, request) from None
    answer = LoginOut(
        user_id=session.user_id,
        email=body.email.strip().lower(),
        csrf_token=session.csrf_secret,
        expires_at=session.expires_at,
    )
    response = json_response(answer)
    response.set_cookie(
        SESSION_COOKIE,
        session.token,
        max_age=int((session.expires_at - now(request)).total_seconds()),
        path="/",
        secure=accounts.cookie_secure,
        httponly=True,
        samesite="Lax",
    )
    return _no_store(response)


async def logout(request: web.Request) -> web.Response:
    cookie, at = request.cookies.get(SESSION_COOKIE), now(request)
    if cookie:
        await run_in_transaction(request, lambda conn: revoke_session(conn, cookie, at=at))
    response = json_response(Done(ok=True, message="logged out"))
    response.del_cookie(SESSION_COOKIE, path="/")
    return response


async def request_password_reset(request: web.Request) -> web.Response:
    throttle(request, "password-reset")
    body = await parse_body(request, ResetRequestBody)
    service, at = request.app[ACCOUNTS_WEB_KEY].service, now(request)
    await run_in_transaction(request, lambda conn: service.request_password_reset(conn, body.email, at=at))
    # The same answer whether or not the address has an account.
    message = "if the address has an account, a reset link is on its way"
    return json_response(Done(ok=True, message=message), status=202)


async def reset_password(request: web.Request) -> web.Response:
    throttle(request, "password-reset")
    body = await parse_body(request, ResetConfirmBody)
    service, at = request.app[ACCOUNTS_WEB_KEY].service, now(request)
    await run_in_transaction(request, lambda conn: service.reset_password(conn, body.token, body.password, at=at))
    return json_response(Done(ok=True, message="password changed; every session was logged out"))


async def accept_invitation(request: web.Request) -> web.Response:
    throttle(request, "invitation")
    body = await parse_body(request, AcceptBody)
    service, at = request.app[ACCOUNTS_WEB_KEY].service, now(request)

    def work(conn: sa.Connection) -> ConfirmOut:
        user_id = service.accept_invitation(
            conn, body.token, password=body.password, at=at, full_name=body.full_name
        )
        return ConfirmOut(user_id=user_id, confirmed=True)

    return json_response(await run_in_transaction(request, work))


# --- the caller's own account --------------------------------------------------------------------


def _me(conn: sa.Connection, who: Caller) -> MeOut:
    row = conn.execute(sa.select(users.c.email, users.c.full_name).where(users.c.id == who.user_id)).one()
    return MeOut(
        user_id=who.user_id,
        email=row.email,
        full_name=row.full_name,
        tenant=tenant_out(conn, who.tenant_id),
        company_permissions=sorted(permissions_at(conn, who.user_id, None)),
        grants=[grant_out(g) for g in user_grants(conn, who.user_id)],
    )


async def me(request: web.Request) -> web.Response:
    return await answer_as_caller(request, _me, write=False)


def _tokens(conn: sa.Connection, who: Caller) -> ApiTokenList:
    rows = conn.execute(
        sa.select(api_tokens)
        .where(api_tokens.c.user_id == who.user_id, api_tokens.c.revoked_at.is_(None))
        .order_by(api_tokens.c.id)
    )
    return ApiTokenList(items=[ApiTokenOut.model_validate(r, from_attributes=True) for r in rows])


async def list_tokens(request: web.Request) -> web.Response:
    page = parse_query(request, Page)
    return await answer_as_caller(request, lambda conn, who: repaged(request, page, _tokens(conn, who)), write=False)


async def create_token(request: web.Request) -> web.Response:
    body, at = await parse_body(request, ApiTokenBody), now(request)
    if body.expires_at is not None and body.expires_at <= at:
        raise Problem(422, "invalid-input", "Invalid input", "expires_at is in the past")

    def work(conn: sa.Connection, who: Caller) -> NewApiTokenOut:
        made = create_api_token(conn, who.user_id, body.name, at=at, expires_at=body.expires_at)
        audit.record(conn, who.actor, tenant_id=who.tenant_id, action="token.create", target_type="api_token",
                     target_id=made.token_id, at=at, details={"name": body.name, "prefix": made.prefix})
        return NewApiTokenOut(id=made.token_id, prefix=made.prefix, token=made.token)

    return _no_store(await answer_as_caller(request, work, status=201))


async def delete_token(request: web.Request) -> web.Response:
    token_id, at = int_path_param(request, "token_id"), now(request)

    def work(conn: sa.Connection, who: Caller) -> Done:
        if not revoke_api_token(conn, who.user_id, token_id, at=at):  # only one's own tokens
            raise Problem(404, "not-found", "Not found", f"API token {token_id} does not exist or is not yours")
        audit.record(conn, who.actor, tenant_id=who.tenant_id, action="token.revoke", target_type="api_token",
                     target_id=token_id, at=at)
        return Done(ok=True, message=f"API token {token_id} revoked")

    return await answer_as_caller(request, work)


# --- invitations and audit -----------------------------------------------------------------------


_PUBLIC_ERRORS = (400, 409, 415, 422, 429)
_TOKEN_ID = {"token_id": int}

OPERATIONS: tuple[Operation, ...] = (
    Operation("POST", f"{API}/auth/signup", sign_up, "signUp",
              "Create a company and its owner (no КЭП needed); a confirmation link is mailed", "accounts",
              SignUpOut, body=SignUpBody, status=201, errors=_PUBLIC_ERRORS, public=True),
    Operation("POST", f"{API}/auth/confirm", confirm_email, "confirmEmail", "Confirm the e-mail address",
              "accounts", ConfirmOut, body=TokenBody, errors=_PUBLIC_ERRORS, public=True),
    Operation("POST", f"{API}/auth/login", login, "login",
              "Log in: sets the session cookie (HttpOnly, SameSite=Lax) and returns the CSRF token",
              "accounts", LoginOut, body=LoginBody, errors=(*_PUBLIC_ERRORS, 401, 403), public=True),
    Operation("POST", f"{API}/auth/logout", logout, "logout", "End the cookie session", "accounts", Done,
              errors=(403,)),
    Operation("POST", f"{API}/auth/password-reset", request_password_reset, "requestPasswordReset",
              "Mail a password reset link (the answer never says whether the address exists)", "accounts",
              Done, body=ResetRequestBody, status=202, errors=_PUBLIC_ERRORS, public=True),
    Operation("POST", f"{API}/auth/password-reset/confirm", reset_password, "resetPassword",
              "Set a new password with the mailed link", "accounts", Done, body=ResetConfirmBody,
              errors=_PUBLIC_ERRORS, public=True),
    Operation("POST", f"{API}/invitations/accept", accept_invitation, "acceptInvitation",
              "Join the inviting group (creating the account when the address has none)", "accounts",
              ConfirmOut, body=AcceptBody, errors=_PUBLIC_ERRORS, public=True),
    Operation("GET", f"{API}/me", me, "getMe", "The caller: user, company and effective permissions",
              "accounts", MeOut, errors=(403,)),
    Operation("GET", f"{API}/tokens", list_tokens, "listApiTokens", "The caller's API tokens", "accounts",
              ApiTokenList, query=Page, errors=(400, 403)),
    Operation("POST", f"{API}/tokens", create_token, "createApiToken", "A new API token, shown once",
              "accounts", NewApiTokenOut, body=ApiTokenBody, status=201, errors=(403, 415, 422)),
    Operation("DELETE", f"{API}/tokens/{{token_id}}", delete_token, "revokeApiToken", "Revoke an own API token",
              "accounts", Done, path_params=_TOKEN_ID, errors=(403, 404)),
)

