"""Account flows: sign-up (no КЭП needed), e-mail confirmation, password reset, login with
throttling (per address, and per e-mail and address: ``login_throttle``; never a lock anyone could
set off) and a notice to the owner of repeated failures, invitations into groups, and users
created by the operator.

Links in e-mails carry single-use, expiring tokens (stored hashed); using one is a single
conditional UPDATE, so two clicks racing each other cannot both succeed. Password reset never
says whether an address is registered.

``login`` takes an engine, not a connection: a failed attempt must be counted (committed) even
though the call then raises, which a caller's rolled-back transaction would undo.
"""

from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

import sqlalchemy as sa

from collector.accounts import audit, login_throttle
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
from collector.accounts.login_throttle import PairThrottle
from collector.accounts.passwords import Passwords
from collector.accounts.rights import Role
from collector.accounts.schema import email_tokens, invitations, login_failures, users
from collector.accounts.secrets_util import new_secret, token_hash
from collector.accounts.sessions import NewSession, create_session, revoke_session, revoke_user_sessions
from collector.accounts.tree import create_company
from collector.storage.engine import begin_write

log = logging.getLogger(__name__)
_Mail = tuple[str, str, str]  # to, subject, text

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
    pair_throttle: PairThrottle = field(default_factory=PairThrottle)
    max_failures_per_ip: int = 20
    ip_window: timedelta = timedelta(minutes=15)
    notify_after_failures: int = 5  # consecutive failed logins of an account, from anywhere
    failure_notice_window: timedelta = timedelta(hours=1)  # at most one notice per account per window


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
        raise Conflict(f"{email} already has an account", ru=f"У {email} уже есть учётная запись.")
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
        """Set the new password, forget failed logins and end every session of the user."""
        new_hash = self.passwords.hash(new_password)
        row = self._consume(conn, RESET, token, at)
        conn.execute(
            sa.update(users)
            .where(users.c.id == row.user_id)
            .values(
                password_hash=new_hash,
                failed_logins=0,
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

        Raises ``AccountLocked`` (this address, or this e-mail from this address, must wait),
        ``AuthenticationFailed`` or ``EmailNotConfirmed``; failures are committed before raising.
        An unknown e-mail gets the same answers, in about the same time, as a known one.
        """
        outcome: NewSession | Exception
        with begin_write(engine) as conn:
            outcome, notice = self._attempt_login(conn, email, password, ip, at, previous_session)
        if notice is not None:
            # Off the login's path: neither its time nor an SMTP failure shows in the answer.
            threading.Thread(target=self._send_quietly, args=notice, name="login-failure-notice", daemon=True).start()
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    def _attempt_login(
        self, conn: sa.Connection, email: str, password: str, ip: str, at: datetime, previous: str | None
    ) -> tuple[NewSession | Exception, _Mail | None]:
        s = self.settings
        recent = conn.execute(
            sa.select(sa.func.count())
            .select_from(login_failures)
            .where(login_failures.c.ip == ip, login_failures.c.at > at - s.ip_window)
        ).scalar_one()
        if recent >= s.max_failures_per_ip:
            wait = int(s.ip_window.total_seconds())
            return AccountLocked(
                f"too many failed logins from this address; try again in {_minutes(s.ip_window)} minutes",
                retry_after_seconds=wait,
            ), None
        email = email.strip().lower()[:254]
        wait = login_throttle.seconds_to_wait(conn, email, ip, at)
        if wait:
            return AccountLocked(
                f"too many failed logins for this e-mail from your address; try again in {wait} s",
                retry_after_seconds=wait,
            ), None
        user = conn.execute(
            sa.select(
                users.c.id,
                users.c.tenant_id,
                users.c.email,
                users.c.password_hash,
                users.c.confirmed_at,
                users.c.failed_logins,
                users.c.failure_notice_at,
                users.c.disabled,
            ).where(users.c.email == email)
        ).first()
        # Verified against a dummy hash when the e-mail is unknown, so both answers take the same time.
        checked = self.passwords.verify(self._dummy_hash if user is None else user.password_hash, password)
        if user is None or not checked.ok or user.disabled:
            conn.execute(sa.insert(login_failures).values(ip=ip, at=at))
            login_throttle.record_failure(conn, s.pair_throttle, email, ip, at)
            notice = None if user is None or user.disabled else self._count_failure(conn, user, ip, at)
            return AuthenticationFailed("wrong e-mail or password"), notice
        if user.confirmed_at is None:
            return EmailNotConfirmed("confirm your e-mail address first: follow the link we sent you"), None
        login_throttle.clear(conn, email, ip)
        values: dict[str, object] = {"failed_logins": 0}
        if checked.new_hash is not None:
            values["password_hash"] = checked.new_hash
        conn.execute(sa.update(users).where(users.c.id == user.id).values(**values))
        if previous is not None:
            revoke_session(conn, previous, at=at)
        return create_session(conn, user.id, at=at, ttl=s.session_ttl, ip=ip), None

    def _count_failure(self, conn: sa.Connection, user: sa.Row[Any], ip: str, at: datetime) -> _Mail | None:
        """One more failed login of the account; past the threshold, the notice to send (once per window)."""
        s = self.settings
        failures = user.failed_logins + 1
        told = user.failure_notice_at
        due = failures >= s.notify_after_failures and (told is None or told <= at - s.failure_notice_window)
        values: dict[str, object] = {"failed_logins": failures}
        if due:
            values["failure_notice_at"] = at
        conn.execute(sa.update(users).where(users.c.id == user.id).values(**values))
        if not due:
            return None
        audit.record(
            conn,
            Actor(None, "system"),
            tenant_id=user.tenant_id,
            action="user.login_failures",
            target_type="user",
            target_id=user.id,
            at=at,
            details={"failures": failures, "last_ip": ip},
        )
        return (
            user.email,
            "Неудачные попытки входа",
            f"Подряд не удалось войти в ваш аккаунт {user.email} {failures} раз(а); последняя попытка — "
            f"{at:%d.%m.%Y %H:%M} UTC с адреса {ip}.\n"
            "Если это были вы и вы забыли пароль, задайте новый:\n"
            f"{self.settings.base_url}/password-reset\n"
            "Если это были не вы, ваш пароль никто не узнал: попытки с каждого адреса замедляются, "
            "а вы можете входить как обычно. Надёжный пароль, которого нет на других сайтах, защитит лучше всего.\n",
        )

    def _send_quietly(self, to: str, subject: str, text: str) -> None:
        try:
            self.mailer.send(to, subject, text)
        except Exception:
            log.exception("the notice of failed logins to %s was not sent", to)

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
            raise Conflict(f"{email} already has an account with another company",
                           ru=f"{email} уже работает в другой компании: пригласить его нельзя.")
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
