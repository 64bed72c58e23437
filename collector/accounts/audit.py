"""The append-only audit log: one row per change to users, groups, grants, the tree, contracts,
КЭП orders and enrollment. Nothing here updates or deletes; the database refuses it too
(triggers from migration 0002)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from collector.accounts.schema import audit_log, users

CLI_ACTOR = "cli"  # the operator CLI acts without a user


@dataclass(frozen=True, slots=True)
class Actor:
    """Who makes a change: a user (checked against grants) or the operator CLI (``user_id`` None)."""

    user_id: int | None
    label: str

    @classmethod
    def cli(cls) -> Actor:
        return cls(user_id=None, label=CLI_ACTOR)

    @classmethod
    def user(cls, conn: sa.Connection, user_id: int) -> Actor:
        email = conn.execute(sa.select(users.c.email).where(users.c.id == user_id)).scalar_one_or_none()
        return cls(user_id=user_id, label=email or f"user {user_id}")


@dataclass(frozen=True, slots=True)
class AuditEntry:
    id: int
    tenant_id: int | None
    at: datetime
    actor_id: int | None
    actor: str
    action: str
    target_type: str
    target_id: str
    details: dict[str, Any]


def record(
    conn: sa.Connection,
    actor: Actor,
    *,
    tenant_id: int | None,
    action: str,
    target_type: str,
    target_id: str | int,
    at: datetime,
    details: dict[str, Any] | None = None,
) -> None:
    """Append one entry; ``details`` must be JSON-serialisable (dates as ISO strings)."""
    conn.execute(
        sa.insert(audit_log).values(
            tenant_id=tenant_id,
            at=at,
            actor_id=actor.user_id,
            actor=actor.label,
            action=action,
            target_type=target_type,
            target_id=str(target_id),
            details=details or {},
        )
    )


def list_entries(
    conn: sa.Connection,
    tenant_id: int,
    *,
    target_type: str | None = None,
    target_id: str | int | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[AuditEntry]:
    """Newest first."""
    query = sa.select(audit_log).where(audit_log.c.tenant_id == tenant_id)
    if target_type is not None:
        query = query.where(audit_log.c.target_type == target_type)
    if target_id is not None:
        query = query.where(audit_log.c.target_id == str(target_id))
    rows = conn.execute(query.order_by(audit_log.c.at.desc(), audit_log.c.id.desc()).limit(limit).offset(offset))
    return [AuditEntry(**r._asdict()) for r in rows]
