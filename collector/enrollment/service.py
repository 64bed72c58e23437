"""Enrollment: an operator issues a one-time token for a store; an agent redeems it for its
identity and broker credentials; an operator can revoke an agent again.

Redeeming is one database transaction that also provisions the broker account: the token is
claimed (``UPDATE … WHERE used_at IS NULL``, so two agents racing with one token cannot both
win), the agent is bound to the token's store, the credential is recorded, and only then is the
broker told. A broker failure rolls the claim back, so the installer can simply retry with the
same token. If the commit itself fails after the broker accepted the account, the account is
removed again (best effort; an orphan account has no token and no row, so nobody knows its password).
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import secrets
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from collector.enrollment.broker import CredentialBackend
from collector.enrollment.errors import TokenExpired, TokenUnknown, TokenUsed, UnknownAgent, UnknownStore
from collector.enrollment.passwords import mosquitto_hash, new_password
from collector.enrollment.schema import agent_credentials, enrollment_tokens
from collector.storage.agents import enroll_agent, get_agent, revoke_agent
from collector.storage.engine import begin_write
from collector.storage.schema import agents, nodes
from protocol.mqtt.topics import is_valid_id

DEFAULT_TOKEN_TTL = timedelta(hours=24)
MAX_TOKEN_TTL = timedelta(days=30)
_MAX_TOKEN_LENGTH = 200
_HINT_LENGTH = 40
_SUFFIX_BYTES = 4  # 8 hex characters after the hint; collisions are retried


def _utc_now() -> datetime:
    return datetime.now(UTC)


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def agent_id_for(hint: str | None, suffix: str) -> str:
    """``<slug of hint>-<suffix>``, or ``agent-<suffix>``: readable in logs, valid as a topic id.

    The hint (usually the POS computer's hostname) is lowercased and reduced to ``a-z 0-9 -``;
    it only helps people recognise the agent, the random suffix makes it unique.
    """
    slug = re.sub(r"[^a-z0-9]+", "-", (hint or "").lower()).strip("-")[:_HINT_LENGTH].strip("-")
    candidate = f"{slug or 'agent'}-{suffix}"
    if not is_valid_id(candidate):  # cannot happen with the slug rules above; never hand out a bad id
        raise ValueError(f"generated agent id {candidate!r} is not a valid topic id")
    return candidate


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """A new token. ``token`` is shown to the operator once and never stored in clear."""

    token: str
    token_id: int
    tenant_id: int
    node_id: int
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class Enrollment:
    """What the agent gets for its token: who it is and how it reaches the broker."""

    agent_id: str
    broker_url: str
    username: str
    password: str
    tenant_id: int
    node_id: int
    broker_fallback_urls: tuple[str, ...] = ()  # the other nodes of a clustered broker, in order


def spread(agent_id: str, urls: Sequence[str]) -> tuple[str, tuple[str, ...]]:
    """The agent's first node and its fallbacks: the cluster's nodes rotated by a stable hash of
    its id, so a fleet enrolled on a cluster starts spread evenly over the nodes."""
    start = zlib.crc32(agent_id.encode()) % len(urls)
    rotated = (*urls[start:], *urls[:start])
    return rotated[0], tuple(rotated[1:])


def enrollment_token() -> str:
    """256 random bits, URL-safe, never starting with «-»: the installer pastes it after
    ``kassa-agent enroll --token``, and argparse would take a leading dash for an option
    (one token in 64 did)."""
    while (token := secrets.token_urlsafe(32)).startswith("-"):
        pass
    return token


class EnrollmentService:
    def __init__(
        self,
        engine: sa.Engine,
        backend: CredentialBackend,
        *,
        broker_url: str,
        broker_fallback_urls: Sequence[str] = (),
        token_ttl: timedelta = DEFAULT_TOKEN_TTL,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        self._engine = engine
        self._backend = backend
        self.broker_url = broker_url  # what agents connect to (usually mqtts://… on the public listener)
        self.broker_fallback_urls = tuple(broker_fallback_urls)  # a cluster's other nodes
        self._token_ttl = token_ttl
        self._clock = clock

    def create_token(self, node_id: int, *, created_by: str, ttl: timedelta | None = None) -> IssuedToken:
        """A single-use token that enrolls an agent into ``node_id`` (and that node's tenant)."""
        ttl = self._token_ttl if ttl is None else ttl
        if not timedelta(0) < ttl <= MAX_TOKEN_TTL:
            raise ValueError(f"token lifetime must be between 0 and {MAX_TOKEN_TTL.days} days")
        token = enrollment_token()
        now = self._clock()
        with begin_write(self._engine) as conn:
            tenant_id = conn.execute(
                sa.select(nodes.c.tenant_id).where(nodes.c.id == node_id)
            ).scalar_one_or_none()
            if tenant_id is None:
                raise UnknownStore(f"node {node_id} does not exist")
            token_id = conn.execute(
                sa.insert(enrollment_tokens)
                .values(
                    token_hash=token_digest(token),
                    tenant_id=tenant_id,
                    node_id=node_id,
                    created_by=created_by,
                    created_at=now,
                    expires_at=now + ttl,
                )
                .returning(enrollment_tokens.c.id)
            ).scalar_one()
        return IssuedToken(token, int(token_id), int(tenant_id), node_id, now + ttl)

    def redeem(self, token: str, agent_hint: str | None = None) -> Enrollment:
        """Exchange ``token`` for a new agent identity; raises TokenUnknown/TokenUsed/TokenExpired."""
        token = token.strip()
        if not token or len(token) > _MAX_TOKEN_LENGTH:
            raise TokenUnknown("no such enrollment token")
        now = self._clock()
        provisioned: str | None = None
        try:
            with begin_write(self._engine) as conn:
                row = conn.execute(
                    sa.select(enrollment_tokens)
                    .where(enrollment_tokens.c.token_hash == token_digest(token))
                    .with_for_update()
                ).first()
                if row is None:
                    raise TokenUnknown("no such enrollment token")
                if row.used_at is not None:
                    raise TokenUsed(f"this token was already used (at {row.used_at:%Y-%m-%d %H:%M} UTC)")
                if row.expires_at <= now:
                    raise TokenExpired(f"this token expired at {row.expires_at:%Y-%m-%d %H:%M} UTC")
                agent_id = self._unused_agent_id(conn, agent_hint)
                claimed = conn.execute(
                    sa.update(enrollment_tokens)
                    .where(enrollment_tokens.c.id == row.id, enrollment_tokens.c.used_at.is_(None))
                    .values(used_at=now, used_by_agent=agent_id)
                ).rowcount
                if claimed != 1:
                    raise TokenUsed("this token was just used by another agent")
                enroll_agent(conn, agent_id, tenant_id=row.tenant_id, node_id=row.node_id, enrolled_at=now)
                password = new_password()
                conn.execute(
                    sa.insert(agent_credentials).values(
                        agent_id=agent_id,
                        username=agent_id,
                        password_hash=mosquitto_hash(password),
                        created_at=now,
                    )
                )
                self._backend.add_agent(agent_id, password)
                provisioned = agent_id
        except BaseException:
            if provisioned is not None:
                with contextlib.suppress(Exception):
                    self._backend.remove_agent(provisioned)
            raise
        first, fallbacks = spread(agent_id, (self.broker_url, *self.broker_fallback_urls))
        return Enrollment(agent_id, first, agent_id, password, int(row.tenant_id), int(row.node_id), fallbacks)

    def revoke_agent(self, agent_id: str) -> None:
        """Remove the agent's broker accounts (connects are refused from now on) and mark it revoked."""
        now = self._clock()
        with begin_write(self._engine) as conn:
            if get_agent(conn, agent_id) is None:
                raise UnknownAgent(f"agent {agent_id!r} is not enrolled")
            active = agent_credentials.c.revoked_at.is_(None) & (agent_credentials.c.agent_id == agent_id)
            usernames = set(conn.execute(sa.select(agent_credentials.c.username).where(active)).scalars())
            # An agent enrolled before credentials were recorded still logs in as its id.
            for username in sorted(usernames or {agent_id}):
                self._backend.remove_agent(username)
            conn.execute(sa.update(agent_credentials).where(active).values(revoked_at=now))
            revoke_agent(conn, agent_id)

    def _unused_agent_id(self, conn: sa.Connection, hint: str | None) -> str:
        for _ in range(5):
            candidate = agent_id_for(hint, secrets.token_hex(_SUFFIX_BYTES))
            taken = conn.execute(sa.select(agents.c.agent_id).where(agents.c.agent_id == candidate)).first()
            if taken is None:
                return candidate
        raise RuntimeError("could not find an unused agent id in 5 attempts")
