"""Sign-up, e-mail confirmation, login with throttling, sessions, password reset,
API tokens and invitations — on SQLite and PostgreSQL."""

from __future__ import annotations

import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from collector.accounts.audit import Actor, list_entries
from collector.accounts.errors import (
    AccountLocked,
    AuthenticationFailed,
    Conflict,
    EmailNotConfirmed,
    PermissionDenied,
    TokenInvalid,
)
from collector.accounts.groups import create_group, grant_role
from collector.accounts.inn import InvalidNumber
from collector.accounts.passwords import HashingCost, Passwords
from collector.accounts.rights import Permission, Role, can, scope_for
from collector.accounts.schema import api_tokens, email_tokens, sessions, users
from collector.accounts.secrets_util import token_hash
from collector.accounts.service import AccountService
from collector.accounts.sessions import (
    authenticate_api_token,
    create_api_token,
    revoke_api_token,
    rotate_session,
    validate_session,
)
from collector.storage import Scope

sys.path.insert(0, str(Path(__file__).parent))
import accounts_testkit as kit
from accounts_testkit import *  # noqa: F403  (the shared fixtures: conn, engine, mailer, service, world)

T0 = kit.T0


def mailer_of(service: AccountService) -> kit.RecordingMailer:
    assert isinstance(service.mailer, kit.RecordingMailer)
    return service.mailer


def _signed_up(engine: sa.Engine, service: AccountService, email: str, *, confirm: bool = True) -> int:
    """Sign up in a committed transaction (login commits on its own), optionally confirming."""
    with engine.begin() as c:
        created = service.sign_up(
            c, email=email, password=kit.PASSWORD, company=f"ООО {email}", inn=kit.make_inn(), at=T0
        )
        if confirm:
            service.confirm_email(c, mailer_of(service).last_token(email), at=T0)
    return created.user_id


def test_sign_up_creates_company_owner_and_root_grant_without_kep(conn, service, mailer) -> None:
    made = service.sign_up(
        conn, email=" Anna@Example.TEST ", password=kit.PASSWORD, company="Ромашка", inn="7707083893", at=T0
    )
    user = conn.execute(sa.select(users).where(users.c.id == made.user_id)).one()
    assert user.email == "anna@example.test" and user.confirmed_at is None
    assert user.password_hash.startswith("$argon2id$")
    assert scope_for(conn, made.user_id) == Scope.tenant(made.tenant_id)
    assert can(conn, made.user_id, Permission.MANAGE_COMPANY, None)
    assert [m.to for m in mailer.sent] == ["anna@example.test"]
    assert "https://kassa.test/confirm?token=" in mailer.sent[0].text
    actions = {e.action for e in list_entries(conn, made.tenant_id)}
    assert {"company.create", "user.create", "group.create", "grant.create", "group.add_member"} <= actions


def test_sign_up_refuses_bad_inn_duplicate_inn_and_duplicate_email(conn, service) -> None:
    with pytest.raises(InvalidNumber):
        service.sign_up(conn, email="a@x.test", password=kit.PASSWORD, company="X", inn="7707083894", at=T0)
    service.sign_up(conn, email="a@x.test", password=kit.PASSWORD, company="X", inn="7707083893", at=T0)
    with pytest.raises(Conflict, match="ИНН"):
        service.sign_up(conn, email="b@x.test", password=kit.PASSWORD, company="Y", inn="7707083893", at=T0)
    with pytest.raises(Conflict, match="already has an account"):
        service.sign_up(conn, email="A@x.test", password=kit.PASSWORD, company="Z", inn=kit.make_inn(), at=T0)


def test_sign_up_confirm_login(engine, service, mailer) -> None:
    email = f"flow-{kit.make_inn()}@example.test"
    _signed_up(engine, service, email, confirm=False)
    with pytest.raises(EmailNotConfirmed):
        service.login(engine, email=email, password=kit.PASSWORD, ip="10.0.0.1", at=T0)
    token = mailer.last_token(email)
    with engine.begin() as c:
        service.confirm_email(c, token, at=T0 + timedelta(hours=1))
    with engine.begin() as c, pytest.raises(TokenInvalid):
        service.confirm_email(c, token, at=T0 + timedelta(hours=2))  # single use
    session = service.login(engine, email=email.upper(), password=kit.PASSWORD, ip="10.0.0.1", at=T0)
    with engine.connect() as c:
        info = validate_session(c, session.token, at=T0 + timedelta(minutes=5))
        assert info is not None and info.email == email and info.csrf_ok(session.csrf_secret)
        assert not info.csrf_ok("forged")
        stored = (
            c.execute(sa.select(sessions.c.token_hash).where(sessions.c.user_id == info.user_id))
            .scalars()
            .all()
        )
        assert session.token not in stored and token_hash(session.token) in stored
        assert validate_session(c, session.token, at=session.expires_at + timedelta(seconds=1)) is None


def test_confirmation_link_expires(engine, service, mailer) -> None:
    email = f"late-{kit.make_inn()}@example.test"
    _signed_up(engine, service, email, confirm=False)
    with engine.begin() as c, pytest.raises(TokenInvalid):
        service.confirm_email(
            c, mailer.last_token(email), at=T0 + service.settings.confirm_ttl + timedelta(seconds=1)
        )


def test_a_guessing_pair_waits_exponentially_longer_and_the_owner_never(engine, service) -> None:
    email = f"pair-{kit.make_inn()}@example.test"
    user_id = _signed_up(engine, service, email)
    throttle, ip = service.settings.pair_throttle, "10.1.0.1"
    at, waits = T0, []
    for _ in range(throttle.free_failures - 1):  # free failures: nothing to wait for
        with pytest.raises(AuthenticationFailed):
            service.login(engine, email=email, password="wrong password", ip=ip, at=at)
    for _ in range(12):
        with pytest.raises(AuthenticationFailed):
            service.login(engine, email=email, password="wrong password", ip=ip, at=at)
        try:  # tried again at once: refused without counting, told how long to wait
            service.login(engine, email=email, password=kit.PASSWORD, ip=ip, at=at)
        except AccountLocked as locked:
            waits.append(locked.retry_after_seconds)
            at += timedelta(seconds=locked.retry_after_seconds)
        else:
            raise AssertionError("the guessing pair was let in")
    assert waits[:6] == [1, 2, 4, 8, 16, 32]
    assert waits[-1] == int(throttle.max_delay.total_seconds())
    # The whole time, the owner from another address logs straight in.
    assert service.login(engine, email=email, password=kit.PASSWORD, ip="10.1.9.9", at=at).user_id == user_id
    with engine.connect() as c:
        assert c.execute(sa.select(users.c.failed_logins).where(users.c.id == user_id)).scalar_one() == 0


def test_unknown_e_mails_cost_the_same_password_check(engine) -> None:
    """Unknown e-mails are verified against a dummy hash: at a real argon2 cost both take about as
    long (minimum of several tries: load only ever adds time)."""
    service = AccountService(kit.RecordingMailer(), Passwords(HashingCost(time_cost=2, memory_cost_kib=32768)))
    email = f"timed-{kit.make_inn()}@example.test"
    _signed_up(engine, service, email)

    def fastest(address: str) -> float:
        times = []
        for n in range(6):
            started = time.perf_counter()
            with pytest.raises(AuthenticationFailed):
                service.login(engine, email=address, password="wrong password", ip=f"10.3.{n}.1", at=T0)
            times.append(time.perf_counter() - started)
        return min(times)

    known, unknown = fastest(email), fastest(f"ghost-{kit.make_inn()}@example.test")
    assert unknown > 0.5 * known, (known, unknown)


def test_failures_from_one_address_are_throttled_across_accounts(engine, service) -> None:
    ip = f"192.0.2.{kit.make_inn()[:2]}"
    at = T0 + timedelta(days=30)
    for i in range(service.settings.max_failures_per_ip):
        with pytest.raises(AuthenticationFailed):
            service.login(engine, email=f"nobody-{i}@example.test", password="whatever12", ip=ip, at=at)
    email = f"victim-{kit.make_inn()}@example.test"
    _signed_up(engine, service, email)
    with pytest.raises(AccountLocked, match="this address"):
        service.login(engine, email=email, password=kit.PASSWORD, ip=ip, at=at)
    assert service.login(engine, email=email, password=kit.PASSWORD, ip="198.51.100.1", at=at)
    assert service.login(
        engine, email=email, password=kit.PASSWORD, ip=ip, at=at + service.settings.ip_window
    )


def test_login_rotates_the_session_against_fixation(engine, service) -> None:
    email = f"fix-{kit.make_inn()}@example.test"
    _signed_up(engine, service, email)
    planted = service.login(engine, email=email, password=kit.PASSWORD, ip="10.2.0.1", at=T0)
    fresh = service.login(
        engine, email=email, password=kit.PASSWORD, ip="10.2.0.1", at=T0, previous_session=planted.token
    )
    assert fresh.token != planted.token and fresh.csrf_secret != planted.csrf_secret
    with engine.begin() as c:
        assert validate_session(c, planted.token, at=T0) is None
        assert validate_session(c, fresh.token, at=T0) is not None
        rotated = rotate_session(c, fresh.token, at=T0)
        assert validate_session(c, fresh.token, at=T0) is None
        assert validate_session(c, rotated.token, at=T0) is not None


def test_password_reset_is_single_use_expiring_and_ends_sessions(engine, service, mailer) -> None:
    email = f"reset-{kit.make_inn()}@example.test"
    _signed_up(engine, service, email)
    old_session = service.login(engine, email=email, password=kit.PASSWORD, ip="10.3.0.1", at=T0)
    sent_before = len(mailer.sent)
    with engine.begin() as c:
        service.request_password_reset(c, "unknown@example.test", at=T0)  # silently nothing
        assert len(mailer.sent) == sent_before
        service.request_password_reset(c, email, at=T0)
    token = mailer.last_token(email)
    with engine.begin() as c, pytest.raises(TokenInvalid):
        service.reset_password(c, token, "brand new password", at=T0 + timedelta(hours=2))
    with engine.begin() as c:
        service.reset_password(c, token, "brand new password", at=T0 + timedelta(minutes=10))
        assert validate_session(c, old_session.token, at=T0 + timedelta(minutes=11)) is None
    with engine.begin() as c, pytest.raises(TokenInvalid):
        service.reset_password(c, token, "another password 2", at=T0 + timedelta(minutes=12))
    with pytest.raises(AuthenticationFailed):
        service.login(engine, email=email, password=kit.PASSWORD, ip="10.3.0.2", at=T0)
    assert service.login(engine, email=email, password="brand new password", ip="10.3.0.2", at=T0)


def test_email_tokens_are_stored_hashed(conn, service, mailer) -> None:
    made = service.sign_up(
        conn, email="h@x.test", password=kit.PASSWORD, company="H", inn=kit.make_inn(), at=T0
    )
    stored = conn.execute(
        sa.select(email_tokens.c.token_hash).where(email_tokens.c.user_id == made.user_id)
    ).scalar_one()
    token = mailer.last_token("h@x.test")
    assert stored == token_hash(token) and token not in stored


def test_api_token_is_hashed_at_rest_and_usable_once_looked_up(conn, world) -> None:
    owner = world.a.user_id
    created = create_api_token(conn, owner, "ci", at=T0)
    assert created.token.startswith(f"km_{created.prefix}_")
    row = conn.execute(sa.select(api_tokens).where(api_tokens.c.id == created.token_id)).one()
    assert row.prefix == created.prefix and row.token_hash == token_hash(created.token)
    assert created.token not in {str(v) for v in row}
    assert row.last_used_at is None
    who = authenticate_api_token(conn, created.token, at=T0 + timedelta(minutes=1))
    assert who is not None and (who.user_id, who.tenant_id) == (owner, world.a.tenant_id)
    used = conn.execute(
        sa.select(api_tokens.c.last_used_at).where(api_tokens.c.id == created.token_id)
    ).scalar_one()
    assert used == T0 + timedelta(minutes=1)
    assert authenticate_api_token(conn, created.token + "x", at=T0) is None
    assert authenticate_api_token(conn, "Bearer nonsense", at=T0) is None
    assert revoke_api_token(conn, owner, created.token_id, at=T0)
    assert authenticate_api_token(conn, created.token, at=T0) is None


def test_api_token_expiry(conn, world) -> None:
    created = create_api_token(conn, world.a.user_id, "short", at=T0, expires_at=T0 + timedelta(days=1))
    assert authenticate_api_token(conn, created.token, at=T0 + timedelta(hours=23)) is not None
    assert authenticate_api_token(conn, created.token, at=T0 + timedelta(days=1)) is None


def test_invitation_into_a_city_group(conn, service, mailer, world) -> None:
    owner = Actor.user(conn, world.a.user_id)
    group = create_group(conn, owner, world.a.tenant_id, "Москва — операторы", at=T0)
    grant_role(conn, owner, world.a.tenant_id, group, Role.OPERATOR, world.nodes["moscow"], at=T0)
    service.invite(conn, owner, world.a.tenant_id, group, "ivan@romashka.test", at=T0)
    token = mailer.last_token("ivan@romashka.test")
    user_id = service.accept_invitation(
        conn, token, password=kit.PASSWORD, at=T0 + timedelta(days=1), full_name="Иван"
    )
    assert scope_for(conn, user_id) == Scope.subtrees(world.a.tenant_id, [world.nodes["moscow"]])
    assert can(conn, user_id, Permission.ACKNOWLEDGE, world.registers["arbat"])
    assert not can(conn, user_id, Permission.VIEW, world.registers["nevsky"])
    with pytest.raises(TokenInvalid):
        service.accept_invitation(conn, token, password=kit.PASSWORD, at=T0 + timedelta(days=1))


def test_invitations_cannot_escalate_or_cross_tenants(conn, service, world) -> None:
    viewer = kit.user_with_role(
        conn, world.a.tenant_id, "viewer@romashka.test", Role.VIEWER, world.a.root_node_id
    )
    owners = world.a.owners_group_id
    with pytest.raises(PermissionDenied):
        service.invite(conn, Actor.user(conn, viewer), world.a.tenant_id, owners, "x@romashka.test", at=T0)
    admin = kit.user_with_role(
        conn, world.a.tenant_id, "admin@romashka.test", Role.ADMIN, world.a.root_node_id
    )
    with pytest.raises(PermissionDenied, match="owner"):
        service.invite(conn, Actor.user(conn, admin), world.a.tenant_id, owners, "x@romashka.test", at=T0)
    with pytest.raises(Conflict, match="another company"):
        service.invite(
            conn, Actor.user(conn, world.a.user_id), world.a.tenant_id, owners, "owner@lutik.test", at=T0
        )


def test_accepting_rechecks_the_inviters_rights(conn, service, mailer, world) -> None:
    tenant = world.a.tenant_id
    admin = Actor.user(
        conn, kit.user_with_role(conn, tenant, "adm@romashka.test", Role.ADMIN, world.a.root_node_id)
    )
    group = create_group(conn, admin, tenant, "Помощники", at=T0)
    service.invite(conn, admin, tenant, group, "late@romashka.test", at=T0)
    # Meanwhile the owner gives that group the owner role, which the admin could not have conferred.
    grant_role(
        conn, Actor.user(conn, world.a.user_id), tenant, group, Role.OWNER, world.a.root_node_id, at=T0
    )
    with pytest.raises(PermissionDenied, match="owner"):
        service.accept_invitation(conn, mailer.last_token("late@romashka.test"), password=kit.PASSWORD, at=T0)
