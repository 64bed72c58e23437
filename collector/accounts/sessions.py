"""Login sessions and API tokens: only their SHA-256 is stored, the plaintext is shown once.

A new session is issued at every login and the one presented before it is revoked, so a
session id planted in a browser before login (fixation) is worthless afterwards; ``rotate``
does the same on privilege changes. Every session carries its own CSRF secret.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa

from collector.accounts.errors import NotFound
from collector.accounts.schema import api_tokens, sessions, users
from collector.accounts.secrets_util import new_secret, same_secret, token_hash

DEFAULT_SESSION_TTL = timedelta(days=14)
API_TOKEN_SCHEME = "km"  # tokens read "km_<prefix>_<secret>"; the prefix is what lists show


@dataclass(frozen=True, slots=True)
class NewSession:
    token: str  # goes into the cookie; not stored
    csrf_secret: str
    user_id: int
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class SessionInfo:
    session_id: int
    user_id: int
    tenant_id: int
    email: str
    csrf_secret: str
    expires_at: datetime

    def csrf_ok(self, presented: str) -> bool:
        return same_secret(self.csrf_secret, presented)


@dataclass(frozen=True, slots=True)
class NewApiToken:
    token_id: int
    prefix: str
    token: str  # shown once; only its hash is kept


@dataclass(frozen=True, slots=True)
class TokenUser:
    token_id: int
    user_id: int
    tenant_id: int
    email: str


def create_session(
    conn: sa.Connection,
    user_id: int,
    *,
    at: datetime,
    ttl: timedelta = DEFAULT_SESSION_TTL,
    ip: str | None = None,
) -> NewSession:
    token, csrf = new_secret(), new_secret()
    conn.execute(
        sa.insert(sessions).values(
            token_hash=token_hash(token),
            user_id=user_id,
            created_at=at,
            expires_at=at + ttl,
            csrf_secret=csrf,
            ip=ip,
        )
    )
    return NewSession(token, csrf, user_id, at + ttl)


def validate_session(conn: sa.Connection, token: str, *, at: datetime) -> SessionInfo | None:
    """The live session behind a cookie value; None when unknown, revoked, expired or the user disabled."""
    row = conn.execute(
        sa.select(
            sessions.c.id,
            sessions.c.user_id,
            users.c.tenant_id,
            users.c.email,
            sessions.c.csrf_secret,
            sessions.c.expires_at,
        )
        .join(users, users.c.id == sessions.c.user_id)
        .where(
            sessions.c.token_hash == token_hash(token),
            sessions.c.revoked_at.is_(None),
            sessions.c.expires_at > at,
            users.c.disabled.is_(False),
        )
    ).first()
    return None if row is None else SessionInfo(*row)


def revoke_session(conn: sa.Connection, token: str, *, at: datetime) -> bool:
    result = conn.execute(
        sa.update(sessions)
        .where(sessions.c.token_hash == token_hash(token), sessions.c.revoked_at.is_(None))
        .values(revoked_at=at)
    )
    return bool(result.rowcount)


def revoke_user_sessions(conn: sa.Connection, user_id: int, *, at: datetime) -> int:
    result = conn.execute(
        sa.update(sessions)
        .where(sessions.c.user_id == user_id, sessions.c.revoked_at.is_(None))
        .values(revoked_at=at)
    )
    return int(result.rowcount)


def rotate_session(
    conn: sa.Connection, token: str, *, at: datetime, ttl: timedelta = DEFAULT_SESSION_TTL
) -> NewSession:
    """Replace a live session by a new one (new id, new CSRF secret); the old one stops working."""
    current = validate_session(conn, token, at=at)
    if current is None:
        raise NotFound("session expired or unknown; log in again")
    revoke_session(conn, token, at=at)
    return create_session(conn, current.user_id, at=at, ttl=ttl)


def create_api_token(
    conn: sa.Connection, user_id: int, name: str, *, at: datetime, expires_at: datetime | None = None
) -> NewApiToken:
    prefix = secrets.token_hex(4)
    token = f"{API_TOKEN_SCHEME}_{prefix}_{new_secret()}"
    token_id = conn.execute(
        sa.insert(api_tokens)
        .values(
            user_id=user_id,
            name=name[:100] or "token",
            prefix=prefix,
            token_hash=token_hash(token),
            created_at=at,
            expires_at=expires_at,
        )
        .returning(api_tokens.c.id)
    ).scalar_one()
    return NewApiToken(int(token_id), prefix, token)


def authenticate_api_token(conn: sa.Connection, token: str, *, at: datetime) -> TokenUser | None:
    """The user behind a bearer token (and ``last_used_at`` updated); None when it is not valid."""
    if not token.startswith(f"{API_TOKEN_SCHEME}_"):
        return None
    row = conn.execute(
        sa.select(api_tokens.c.id, api_tokens.c.user_id, users.c.tenant_id, users.c.email)
        .join(users, users.c.id == api_tokens.c.user_id)
        .where(
            api_tokens.c.token_hash == token_hash(token),
            api_tokens.c.revoked_at.is_(None),
            sa.or_(api_tokens.c.expires_at.is_(None), api_tokens.c.expires_at > at),
            users.c.disabled.is_(False),
        )
    ).first()
    if row is None:
        return None
    conn.execute(sa.update(api_tokens).where(api_tokens.c.id == row.id).values(last_used_at=at))
    return TokenUser(*row)


def revoke_api_token(conn: sa.Connection, user_id: int, token_id: int, *, at: datetime) -> bool:
    result = conn.execute(
        sa.update(api_tokens)
        .where(
            api_tokens.c.id == token_id, api_tokens.c.user_id == user_id, api_tokens.c.revoked_at.is_(None)
        )
        .values(revoked_at=at)
    )
    return bool(result.rowcount)
