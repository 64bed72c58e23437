"""Account flows: sign-up (no КЭП needed), e-mail confirmation, password reset, login with
lockout and throttling, invitations into groups, and users created by the operator.

Links in e-mails carry single-use, expiring tokens (stored hashed); using one is a single
conditional UPDATE, so two clicks racing each other cannot both succeed. Password reset never
says whether an address is registered.

``login`` takes an engine, not a connection: a failed attempt must be counted (committed) even
though the call then raises, which a caller's rolled-back transaction would undo.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

import sqlalchemy as sa

from collector.accounts import audit
from collector.accounts.audit import Actor
from collector.accounts.errors import (
    AccountLocked,
    AuthenticationFailed,
    Conflict,
    EmailNotConfirmed,
    InvalidInput,
    NotFound,
    TokenInvalid,
)
from collector.accounts.groups import add_member, check_may_add_to_group, ensure_role_group, get_group
from collector.accounts.passwords import Passwords
from collector.accounts.rights import Role
from collector.accounts.schema import email_tokens, invitations, login_failures, users
from collector.accounts.secrets_util import new_secret, token_hash
from collector.accounts.sessions import NewSession, create_session, revoke_session, revoke_user_sessions
from collector.accounts.tree import create_company
from collector.storage.engine import begin_write

_EMAIL = re.compile(r"^[^@\s,;]+@[^@\s,;]+\.[^@\s,;]+$")
CONFIRM, RESET, INVITE = "confirm", "reset", "invite"


class Mailer(Protocol):
    """Sends one plain-text message; injected so tests and the web app choose the transport."""

    def send(self, to: str, subject: str, text: str) -> None: ...


@dataclass(frozen=True, slots=True)
class AccountSettings:
    base_url: str = "http://localhost:8080"
    confirm_ttl: timedelta = timedelta(days=2)
    reset_ttl: timedelta = timedelta(hours=1)
    invite_ttl: timedelta = timedelta(days=7)
    session_ttl: timedelta = timedelta(days=14)
    max_failures_per_account: int = 5
    lockout: timedelta = timedelta(minutes=15)
    max_failures_per_ip: int = 20
    ip_window: timedelta = timedelta(minutes=15)


@dataclass(frozen=True, slots=True)
class SignUp:
    tenant_id: int
    user_id: int
    root_node_id: int
    owners_group_id: int


def normalise_email(email: str) -> str:
    cleaned = email.strip().lower()
    if len(cleaned) > 254 or not _EMAIL.match(cleaned):
        raise InvalidInput(f"{email!r} is not an e-mail address")
    return cleaned


def create_user(
    conn: sa.Connection,
    passwords: Passwords,
    actor: Actor,
    tenant_id: int,
    *,
    email: str,
    password: str | None,
    at: datetime,
    full_name: str = "",
    confirmed: bool = False,
) -> int:
    """A user of the tenant; ``password`` None leaves password login impossible until a reset."""
    email = normalise_email(email)
    password_hash = None if password is None else passwords.hash(password)
    if conn.execute(sa.select(users.c.id).where(users.c.email == email)).first() is not None:
        raise Conflict(f"{email} already has an account")
    user_id = int(
        conn.execute(
            sa.insert(users)
            .values(
                tenant_id=tenant_id,
                email=email,
                full_name=full_name.strip()[:200],
                password_hash=password_hash,
                created_at=at,
                confirmed_at=at if confirmed else None,
            )
            .returning(users.c.id)
        ).scalar_one()
    )
    audit.record(
        conn,
        actor,
        tenant_id=tenant_id,
        action="user.create",
        target_type="user",
        target_id=user_id,
        at=at,
        details={"email": email, "confirmed": confirmed},
    )
    return user_id


class AccountService:
    def __init__(
        self, mailer: Mailer, passwords: Passwords | None = None, settings: AccountSettings | None = None
    ) -> None:
        self.mailer = mailer
        self.passwords = passwords or Passwords()
        self.settings = settings or AccountSettings()
        # Verified against when the e-mail is unknown, so both answers take the same time.
        self._dummy_hash = self.passwords.hash("not-a-real-password")

    # --- users -------------------------------------------------------------------------------

    def sign_up(
        self, conn: sa.Connection, *, email: str, password: str, company: str, inn: str, at: datetime
    ) -> SignUp:
        """Company (tenant + root node) and its owner; a confirmation link goes to the address."""
        email = normalise_email(email)
        self.passwords.hash(password)  # policy check before anything is written
        actor = Actor(user_id=None, label=f"signup:{email}")
        created = create_company(conn, actor, name=company, inn=inn, at=at)
        user_id = create_user(
            conn, self.passwords, actor, created.tenant_id, email=email, password=password, at=at
        )
        owners = ensure_role_group(conn, actor, created.tenant_id, Role.OWNER, created.root_node_id, at=at)
        add_member(conn, actor, created.tenant_id, owners, user_id, at=at)
        token = self._issue(conn, CONFIRM, at, self.settings.confirm_ttl, user_id=user_id)
        self.mailer.send(
            email,
            "Подтвердите адрес e-mail",
            f"Чтобы подтвердить адрес, откройте ссылку:\n{self.settings.base_url}/confirm?token={token}\n",
        )
        return SignUp(created.tenant_id, user_id, created.root_node_id, owners)

    def confirm_email(self, conn: sa.Connection, token: str, *, at: datetime) -> int:
        row = self._consume(conn, CONFIRM, token, at)
        conn.execute(
            sa.update(users)
            .where(users.c.id == row.user_id, users.c.confirmed_at.is_(None))
            .values(confirmed_at=at)
        )
        self._audit_user(conn, row.user_id, "user.confirm_email", at)
        return int(row.user_id)

    # --- password reset ------------------------------------------------------------------------

    def request_password_reset(self, conn: sa.Connection, email: str, *, at: datetime) -> None:
        """Mail a reset link when the address has an account; silently nothing otherwise."""
        try:
            email = normalise_email(email)
        except InvalidInput:
            return
        user_id = conn.execute(
            sa.select(users.c.id).where(users.c.email == email, users.c.disabled.is_(False))
        ).scalar_one_or_none()
        if user_id is None:
            return
        token = self._issue(conn, RESET, at, self.settings.reset_ttl, user_id=user_id)
        self.mailer.send(
            email,
            "Сброс пароля",
            f"Чтобы задать новый пароль, откройте ссылку (действует "
            f"{int(self.settings.reset_ttl.total_seconds() // 60)} мин):\n"
            f"{self.settings.base_url}/reset?token={token}\n",
        )

    def reset_password(self, conn: sa.Connection, token: str, new_password: str, *, at: datetime) -> int:
        """Set the new password, lift a lockout and end every session of the user."""
        new_hash = self.passwords.hash(new_password)
        row = self._consume(conn, RESET, token, at)
        conn.execute(
            sa.update(users)
            .where(users.c.id == row.user_id)
            .values(
                password_hash=new_hash,
                failed_logins=0,
                locked_until=None,
                confirmed_at=sa.func.coalesce(users.c.confirmed_at, at),  # the mailbox is proven
            )
        )
        revoke_user_sessions(conn, row.user_id, at=at)
        self._audit_user(conn, row.user_id, "user.reset_password", at)
        return int(row.user_id)

    # --- login -------------------------------------------------------------------------------

    def login(
        self,
        engine: sa.Engine,
        *,
        email: str,
        password: str,
        ip: str,
        at: datetime,
        previous_session: str | None = None,
    ) -> NewSession:
        """A fresh session; the session presented before login (if any) is revoked (fixation).

        Raises ``AccountLocked`` (account or address), ``AuthenticationFailed`` or
        ``EmailNotConfirmed``; failures are committed before raising.
        """
        outcome: NewSession | Exception
        with begin_write(engine) as conn:
            outcome = self._attempt_login(conn, email, password, ip, at, previous_session)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    def _attempt_login(
        self, conn: sa.Connection, email: str, password: str, ip: str, at: datetime, previous: str | None
    ) -> NewSession | Exception:
        s = self.settings
        recent = conn.execute(
            sa.select(sa.func.count())
            .select_from(login_failures)
            .where(login_failures.c.ip == ip, login_failures.c.at > at - s.ip_window)
        ).scalar_one()
        if recent >= s.max_failures_per_ip:
            return AccountLocked(
                f"too many failed logins from this address; try again in {_minutes(s.ip_window)} minutes"
            )
        email = email.strip().lower()
        user = conn.execute(
            sa.select(
                users.c.id,
                users.c.tenant_id,
                users.c.password_hash,
                users.c.confirmed_at,
                users.c.failed_logins,
                users.c.locked_until,
                users.c.disabled,
            ).where(users.c.email == email)
        ).first()
        if user is not None and user.locked_until is not None and user.locked_until > at:
            return AccountLocked(
                f"the account is locked until {user.locked_until:%H:%M} UTC after failed logins"
            )
        checked = self.passwords.verify(self._dummy_hash if user is None else user.password_hash, password)
        if user is None or not checked.ok or user.disabled:
            conn.execute(sa.insert(login_failures).values(ip=ip, at=at))
            if user is not None and not user.disabled:
                return self._count_failure(conn, user.id, user.tenant_id, user.failed_logins + 1, at)
            return AuthenticationFailed("wrong e-mail or password")
        if user.confirmed_at is None:
            return EmailNotConfirmed("confirm your e-mail address first: follow the link we sent you")
        values: dict[str, object] = {"failed_logins": 0, "locked_until": None}
        if checked.new_hash is not None:
            values["password_hash"] = checked.new_hash
        conn.execute(sa.update(users).where(users.c.id == user.id).values(**values))
        if previous is not None:
            revoke_session(conn, previous, at=at)
        return create_session(conn, user.id, at=at, ttl=s.session_ttl, ip=ip)

    def _count_failure(
        self, conn: sa.Connection, user_id: int, tenant_id: int, failures: int, at: datetime
    ) -> Exception:
        s = self.settings
        if failures < s.max_failures_per_account:
            conn.execute(sa.update(users).where(users.c.id == user_id).values(failed_logins=failures))
            return AuthenticationFailed("wrong e-mail or password")
        until = at + s.lockout
        conn.execute(
            sa.update(users).where(users.c.id == user_id).values(failed_logins=0, locked_until=until)
        )
        audit.record(
            conn,
            Actor(None, "system"),
            tenant_id=tenant_id,
            action="user.lockout",
            target_type="user",
            target_id=user_id,
            at=at,
            details={"until": until.isoformat(), "failures": failures},
        )
        return AccountLocked(
            f"too many failed logins: the account is locked for {_minutes(s.lockout)} minutes"
        )

    # --- invitations -------------------------------------------------------------------------

    def invite(
        self, conn: sa.Connection, actor: Actor, tenant_id: int, group_id: int, email: str, *, at: datetime
    ) -> int:
        """Invite an address into a group; the inviter must be able to confer the group's rights."""
        email = normalise_email(email)
        group_name = get_group(conn, tenant_id, group_id)
        check_may_add_to_group(conn, actor, tenant_id, group_id)
        other = conn.execute(sa.select(users.c.tenant_id).where(users.c.email == email)).scalar_one_or_none()
        if other is not None and other != tenant_id:
            raise Conflict(f"{email} already has an account with another company")
        invitation_id = int(
            conn.execute(
                sa.insert(invitations)
                .values(
                    tenant_id=tenant_id,
                    group_id=group_id,
                    email=email,
                    invited_by=actor.user_id,
                    created_at=at,
                )
                .returning(invitations.c.id)
            ).scalar_one()
        )
        token = self._issue(conn, INVITE, at, self.settings.invite_ttl, invitation_id=invitation_id)
        audit.record(
            conn,
            actor,
            tenant_id=tenant_id,
            action="invitation.create",
            target_type="invitation",
            target_id=invitation_id,
            at=at,
            details={"email": email, "group_id": group_id},
        )
        self.mailer.send(
            email,
            "Приглашение в Касса-Монитор",
            f"{actor.label} приглашает вас в группу «{group_name}».\n"
            f"Принять приглашение: {self.settings.base_url}/invite?token={token}\n",
        )
        return invitation_id

    def accept_invitation(
        self, conn: sa.Connection, token: str, *, password: str | None, at: datetime, full_name: str = ""
    ) -> int:
        """Join the group; a new address gets a user (confirmed: the link proved the mailbox)."""
        row = self._consume(conn, INVITE, token, at)
        invitation = conn.execute(sa.select(invitations).where(invitations.c.id == row.invitation_id)).one()
        user = conn.execute(
            sa.select(users.c.id, users.c.tenant_id).where(users.c.email == invitation.email)
        ).first()
        if user is not None and user.tenant_id != invitation.tenant_id:
            raise Conflict(f"{invitation.email} already has an account with another company")
        actor = Actor(None, f"invitation:{invitation.email}")
        if user is None:
            if password is None:
                raise InvalidInput("choose a password to create your account")
            user_id = create_user(
                conn,
                self.passwords,
                actor,
                invitation.tenant_id,
                email=invitation.email,
                password=password,
                at=at,
                full_name=full_name,
                confirmed=True,
            )
        else:
            user_id = int(user.id)
        # Checked again as the inviter: the group may have gained rights the inviter cannot confer.
        inviter = actor if invitation.invited_by is None else Actor.user(conn, invitation.invited_by)
        add_member(conn, inviter, invitation.tenant_id, invitation.group_id, user_id, at=at)
        conn.execute(
            sa.update(invitations)
            .where(invitations.c.id == invitation.id)
            .values(accepted_at=at, accepted_user_id=user_id)
        )
        audit.record(
            conn,
            actor,
            tenant_id=invitation.tenant_id,
            action="invitation.accept",
            target_type="invitation",
            target_id=invitation.id,
            at=at,
            details={"user_id": user_id, "group_id": invitation.group_id},
        )
        return user_id

    # --- e-mail tokens -------------------------------------------------------------------------

    def _issue(
        self,
        conn: sa.Connection,
        purpose: str,
        at: datetime,
        ttl: timedelta,
        *,
        user_id: int | None = None,
        invitation_id: int | None = None,
    ) -> str:
        token = new_secret()
        conn.execute(
            sa.insert(email_tokens).values(
                purpose=purpose,
                token_hash=token_hash(token),
                user_id=user_id,
                invitation_id=invitation_id,
                created_at=at,
                expires_at=at + ttl,
            )
        )
        return token

    def _consume(self, conn: sa.Connection, purpose: str, token: str, at: datetime) -> sa.Row[Any, Any]:
        """Mark the token used (once) and return its owner; ``TokenInvalid`` for anything else."""
        hashed = token_hash(token)
        used = conn.execute(
            sa.update(email_tokens)
            .where(
                email_tokens.c.token_hash == hashed,
                email_tokens.c.purpose == purpose,
                email_tokens.c.used_at.is_(None),
                email_tokens.c.expires_at > at,
            )
            .values(used_at=at)
        ).rowcount
        if used != 1:
            raise TokenInvalid("this link is invalid, already used or expired; ask for a new one")
        return conn.execute(
            sa.select(email_tokens.c.user_id, email_tokens.c.invitation_id).where(
                email_tokens.c.token_hash == hashed
            )
        ).one()

    def _audit_user(self, conn: sa.Connection, user_id: int, action: str, at: datetime) -> None:
        tenant = conn.execute(sa.select(users.c.tenant_id).where(users.c.id == user_id)).scalar_one_or_none()
        if tenant is None:
            raise NotFound(f"user {user_id} does not exist")
        audit.record(
            conn,
            Actor.user(conn, user_id),
            tenant_id=tenant,
            action=action,
            target_type="user",
            target_id=user_id,
            at=at,
        )


def _minutes(delta: timedelta) -> int:
    return max(1, int(delta.total_seconds() // 60))
