"""КЭП: certificate files parsed with ``cryptography`` (serial, owner, ИНН, validity) and checked
against the company's ИНН; the customer's document uploads (type by content, size, only what was
requested, only while requested); the issuer's side as the operator CLI (``kassa-collector kep``)."""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from collector.accounts import kep, kep_documents
from collector.accounts.audit import Actor
from collector.accounts.certificates import parse_certificate
from collector.accounts.errors import Conflict, InvalidInput
from collector.accounts.schema import kep_certificates, kep_orders, tenant_profiles
from collector.cli import main
from collector.storage import begin_write, create_engine_from_url, migrate

sys.path.insert(0, str(Path(__file__).parent))
import accounts_testkit as kit
import ingest_testkit
import kep_certs
from accounts_testkit import *  # noqa: F403  (the shared fixtures: conn, engine, mailer, service, world)

T0 = kit.T0
CLI = Actor.cli()
HEAD = kep.KepApplicant(kep.KepSubject.HEAD, "Иванов Иван Иванович", "Генеральный директор", "500100732259",
                        None, "head@romashka.test")


def company_inn(conn: sa.Connection, tenant_id: int) -> str:
    return conn.execute(sa.select(tenant_profiles.c.inn).where(tenant_profiles.c.tenant_id == tenant_id)).scalar_one()


@pytest.mark.parametrize("pem", [False, True])
def test_a_certificate_file_gives_serial_owner_inn_and_validity(pem: bool) -> None:
    data = kep_certs.make_certificate(company_inn="7707083893", not_before=T0, days=365, serial=0xABCDEF, pem=pem)
    info = parse_certificate(data)
    assert info.serial == "ABCDEF" and info.owner_name == "Иванов Иван Иванович"
    assert info.inns == {"7707083893", "500100732259"}
    assert info.valid_from == T0 and info.valid_until == T0 + timedelta(days=365)


def test_an_old_certificate_with_the_company_inn_padded_in_the_inn_field() -> None:
    data = kep_certs.make_certificate(company_inn=None, person_inn="007707083893", surname="", not_before=T0)
    info = parse_certificate(data)
    assert info.inns == {"7707083893"} and info.owner_name == "ООО Ромашка"  # no surname: the common name


@pytest.mark.parametrize(("data", "says"), [(b"", "пустой"), (b"hello", "Это не файл сертификата"),
                                            (b"0" * 70_000, "это не сертификат")])
def test_what_is_not_a_certificate_is_refused_in_russian(data: bytes, says: str) -> None:
    with pytest.raises(InvalidInput, match=says):
        parse_certificate(data)


def test_an_existing_certificate_is_entered_only_for_the_companys_inn(conn, world) -> None:
    tenant = world.a.tenant_id
    owner = Actor.user(conn, world.a.user_id)
    other = parse_certificate(kep_certs.make_certificate(company_inn=kit.make_inn(), not_before=T0 - timedelta(days=1)))
    with pytest.raises(InvalidInput, match="а ИНН компании"):
        kep.enter_certificate(conn, owner, tenant, other, at=T0)
    expired = parse_certificate(kep_certs.make_certificate(
        company_inn=company_inn(conn, tenant), not_before=T0 - timedelta(days=400), days=365))
    with pytest.raises(InvalidInput, match="истёк"):
        kep.enter_certificate(conn, owner, tenant, expired, at=T0)
    assert not kep.has_valid_kep(conn, tenant, T0).ok
    own = parse_certificate(kep_certs.make_certificate(company_inn=company_inn(conn, tenant), not_before=T0 - timedelta(days=1)))
    kep.enter_certificate(conn, owner, tenant, own, at=T0)
    check = kep.has_valid_kep(conn, tenant, T0)
    assert check.ok and check.serial == own.serial and check.valid_until == own.valid_until
    with pytest.raises(Conflict, match="already entered"):
        kep.enter_certificate(conn, owner, tenant, own, at=T0)


def test_document_uploads_are_checked_before_they_are_stored(conn, world) -> None:
    tenant = world.a.tenant_id
    owner = Actor.user(conn, world.a.user_id)
    order = kep.create_order(conn, owner, tenant, HEAD, at=T0)
    with pytest.raises(InvalidInput, match="не запрошены"):
        kep_documents.add_document(conn, owner, tenant, order, "passport", "p.pdf", b"%PDF-1.4", at=T0)
    kep.advance(conn, CLI, tenant, order, kep.KepState.DOCUMENTS_REQUESTED, at=T0, documents=["passport"])
    with pytest.raises(InvalidInput, match="из списка запрошенных"):
        kep_documents.add_document(conn, owner, tenant, order, "snils", "s.pdf", b"%PDF-1.4", at=T0)
    with pytest.raises(InvalidInput, match="PDF, JPEG или PNG"):
        kep_documents.add_document(conn, owner, tenant, order, "passport", "p.pdf", b"MZ\x90\x00 an exe", at=T0)
    too_big = b"%PDF-" + b"0" * kep_documents.MAX_DOCUMENT_BYTES
    with pytest.raises(InvalidInput, match="больше 5 МБ"):
        kep_documents.add_document(conn, owner, tenant, order, "passport", "p.pdf", too_big, at=T0)
    assert kep_documents.documents(conn, tenant, [order]) == {order: []}  # nothing refused was stored
    kep_documents.add_document(conn, owner, tenant, order, "passport", "скан.jpg", b"\xff\xd8\xff\xe0 jpeg", at=T0)
    [stored] = kep_documents.documents(conn, tenant, [order])[order]
    assert (stored.kind, stored.filename, stored.content_type) == ("passport", "скан.jpg", "image/jpeg")
    assert kep_documents.missing(conn, tenant, order) == []


@pytest.fixture(params=kit.BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path):
    with ingest_testkit.database_url(request.param, tmp_path) as url:
        migrate(url)
        yield url


def test_the_issuer_cli_requests_documents_and_issues_from_the_cer_file(
    db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    engine = create_engine_from_url(db_url)
    try:
        with begin_write(engine) as conn:
            company = kit.build_world(conn, kit.AccountService(kit.RecordingMailer(), kit.FAST_PASSWORDS,
                                                               kit.AccountSettings())).a
            order = kep.create_order(conn, Actor.user(conn, company.user_id), company.tenant_id, HEAD, at=T0)
        assert main(["kep", "request-documents", "--db", db_url, str(order), "--document", "passport"]) == 0
        assert main(["kep", "list", "--db", db_url, "--state", "documents_requested"]) == 0
        assert f"{order}\t" in capsys.readouterr().out
        assert main(["kep", "documents", "--db", db_url, str(order), "--out", str(tmp_path / "docs")]) == 0
        assert "no documents uploaded yet" in capsys.readouterr().out
        with begin_write(engine) as conn:
            owner = Actor.user(conn, company.user_id)
            kep_documents.add_document(conn, owner, company.tenant_id, order, "passport", "../../evil.pdf", b"%PDF-1",
                                       at=T0)
            kep.advance(conn, owner, company.tenant_id, order, kep.KepState.DOCUMENTS_RECEIVED, at=T0)
        assert main(["kep", "documents", "--db", db_url, str(order), "--out", str(tmp_path / "docs")]) == 0
        [saved] = list((tmp_path / "docs").iterdir())  # the customer's name cannot climb out of --out
        assert saved.name.endswith("-passport-evil.pdf") and saved.read_bytes() == b"%PDF-1"
        capsys.readouterr()
        now = datetime.now(UTC)
        wrong = tmp_path / "wrong.cer"
        wrong.write_bytes(kep_certs.make_certificate(company_inn=None, person_inn="771234567891", not_before=now))
        assert main(["kep", "issue", "--db", db_url, str(order), "--cer", str(wrong)]) == 1
        assert "the order's applicant has ИНН 500100732259" in capsys.readouterr().err
        right = tmp_path / "issued.cer"
        right.write_bytes(kep_certs.make_certificate(company_inn=None, not_before=now, serial=0x5EED))
        assert main(["kep", "issue", "--db", db_url, str(order), "--cer", str(right)]) == 0
        assert "certificate 5EED" in capsys.readouterr().out
        with engine.connect() as conn:
            assert conn.execute(sa.select(kep_orders.c.state).where(kep_orders.c.id == order)).scalar_one() == "issued"
            assert conn.execute(sa.select(kep_certificates.c.serial)).scalars().all() == ["5EED"]
    finally:
        engine.dispose()


def test_the_issuer_api_answers_the_operator_credential_only(db_url: str) -> None:
    """``POST /api/v1/kep-orders/{id}/transition``: the issuer's integration, with the collector
    operator's token (``web_auth = token``); nobody else gets through."""
    import asyncio

    from aiohttp.test_utils import TestClient, TestServer

    from collector.config import load_config
    from collector.web import create_app

    operator_token = "issuer-integration-token-0123456789"
    engine = create_engine_from_url(db_url)
    with begin_write(engine) as conn:
        company = kit.build_world(conn, kit.AccountService(kit.RecordingMailer(), kit.FAST_PASSWORDS,
                                                           kit.AccountSettings())).a
        order = kep.create_order(conn, Actor.user(conn, company.user_id), company.tenant_id, HEAD, at=T0)
    config = load_config(None, env={}, overrides={"db_url": db_url, "web_auth": "token", "api_token": operator_token})
    app = create_app(config, engine=engine, pages=False)

    async def scenario() -> list[tuple[int, Any]]:
        async with TestClient(TestServer(app, host="127.0.0.1")) as client:
            found = []
            for token, body in (("wrong-token-0123456789", {"to": "documents_requested", "documents": ["passport"]}),
                                (operator_token, {"to": "documents_requested", "documents": ["galaxy"]}),
                                (operator_token, {"to": "documents_requested", "documents": ["passport", "inn"]})):
                response = await client.post(f"/api/v1/kep-orders/{order}/transition", json=body,
                                             headers={"Authorization": f"Bearer {token}"})
                found.append((response.status, await response.json()))
            return found

    try:
        (wrong, unknown, asked) = asyncio.run(scenario())
        assert wrong[0] == 401 and unknown[0] == 422 and "galaxy" in unknown[1]["detail"]
        assert asked[0] == 200 and asked[1]["state"] == "documents_requested"
        with engine.connect() as conn:
            assert kep_documents.requested(conn, company.tenant_id, order) == ["passport", "inn"]
    finally:
        engine.dispose()
