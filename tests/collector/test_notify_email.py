"""EmailSender and the dispatcher against a real local SMTP server (aiosmtpd) on 127.0.0.1."""

from __future__ import annotations

import asyncio
import shutil
import socket
import ssl
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from collector.notify.delivery import DeadLetterList, RetryPolicy
from collector.notify.dispatcher import NotificationDispatcher
from collector.notify.email import EmailSender, SmtpSettings
from collector.notify.grouping import NotificationGrouper
from collector.notify.notice import AlertNotice, Receiver
from collector.notify.render import EmailContent, Renderer

FAST = RetryPolicy(attempts=3, initial_backoff=0.01, max_backoff=0.02, jitter=0.005)
T0 = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
CONTENT = EmailContent(subject="[Важно] Тест: 1 проблема", text="Текст письма", html="<p>Текст письма</p>")
USER = Receiver("u1", "t1", "email", "manager@example.ru")


@dataclass
class Mailbox:
    """aiosmtpd handler: answers DATA from a script and keeps every accepted message."""

    replies: list[str] = field(default_factory=lambda: ["250 OK"])
    messages: list[tuple[list[str], EmailMessage, bool]] = field(default_factory=list)
    attempts: int = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.attempts += 1
        reply = self.replies.pop(0) if len(self.replies) > 1 else self.replies[0]
        if reply.startswith("250"):
            parsed = message_from_bytes(envelope.content, policy=policy.default)
            assert isinstance(parsed, EmailMessage)
            self.messages.append((list(envelope.rcpt_tos), parsed, bool(session.authenticated)))
        return reply


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def smtp_server() -> Iterator[tuple[Mailbox, int]]:
    box = Mailbox()
    controller = Controller(box, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield box, controller.port
    finally:
        controller.stop()


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl binary needed to make a throwaway certificate")
    d = tmp_path_factory.mktemp("tls")
    cert, key = d / "cert.pem", d / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


def server_tls(cert: Path, key: Path) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    return ctx


def authenticator(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (b"notify", b"pw")
    return AuthResult(success=ok, handled=False)


def send(settings: SmtpSettings, policy: RetryPolicy = FAST) -> tuple[bool, DeadLetterList]:
    letters = DeadLetterList()
    ok = asyncio.run(EmailSender(settings, policy, letters).send(USER, CONTENT, "t1/s1/u1"))
    return ok, letters


def test_message_has_subject_parts_recipient_and_headers(smtp_server: tuple[Mailbox, int]) -> None:
    box, port = smtp_server
    ok, letters = send(
        SmtpSettings("127.0.0.1", port, security="none", sender="Касса-Монитор <alerts@kassa.example.ru>")
    )
    assert ok and letters.letters == []
    ((rcpt, msg, authed),) = box.messages
    assert rcpt == ["manager@example.ru"] and not authed
    assert msg["Subject"] == "[Важно] Тест: 1 проблема"
    assert msg["To"] == "manager@example.ru"
    assert msg["From"].addresses[0].addr_spec == "alerts@kassa.example.ru"
    assert msg["Auto-Submitted"] == "auto-generated" and msg["X-Kassa-Group"] == "t1/s1/u1"
    assert msg["Message-ID"].endswith("@kassa.example.ru>")
    assert msg.get_body(("plain",)).get_content().strip() == "Текст письма"  # type: ignore[union-attr]
    assert msg.get_body(("html",)).get_content().strip() == "<p>Текст письма</p>"  # type: ignore[union-attr]


def test_temporary_refusal_is_retried(smtp_server: tuple[Mailbox, int]) -> None:
    box, port = smtp_server
    box.replies = ["451 4.3.0 try again later", "250 OK"]
    ok, letters = send(SmtpSettings("127.0.0.1", port, security="none"))
    assert ok and letters.letters == [] and box.attempts == 2 and len(box.messages) == 1


def test_permanent_refusal_is_dead_lettered_without_retry(smtp_server: tuple[Mailbox, int]) -> None:
    box, port = smtp_server
    box.replies = ["550 5.7.1 message rejected"]
    ok, letters = send(SmtpSettings("127.0.0.1", port, security="none"))
    assert not ok and box.attempts == 1
    (letter,) = letters.letters
    assert letter.channel == "email" and letter.attempts == 1 and "550" in letter.last_error


def test_repeated_temporary_refusal_is_dead_lettered_after_all_attempts(
    smtp_server: tuple[Mailbox, int],
) -> None:
    box, port = smtp_server
    box.replies = ["421 4.7.0 busy"]
    ok, letters = send(SmtpSettings("127.0.0.1", port, security="none"))
    assert not ok and box.attempts == 3 and letters.letters[0].attempts == 3


def test_no_server_is_dead_lettered() -> None:
    ok, letters = send(SmtpSettings("127.0.0.1", free_port(), security="none", timeout=1.0))
    assert not ok and letters.letters[0].attempts == 3
    assert "Connection" in letters.letters[0].last_error


def test_starttls_and_login(tls_files: tuple[Path, Path]) -> None:
    cert, key = tls_files
    box = Mailbox()
    controller = Controller(
        box, hostname="127.0.0.1", port=free_port(), tls_context=server_tls(cert, key),
        require_starttls=True, authenticator=authenticator, auth_require_tls=True,
    )  # fmt: skip
    controller.start()
    try:
        client = ssl.create_default_context(cafile=str(cert))
        base = SmtpSettings("127.0.0.1", controller.port, security="starttls", ssl_context=client,
                            username="notify", password="pw")  # fmt: skip
        ok, _ = send(base)
        assert ok and box.messages[0][2]  # authenticated over TLS
        ok, letters = send(replace(base, password="wrong"))
        assert not ok and letters.letters[0].attempts == 1 and "535" in letters.letters[0].last_error
    finally:
        controller.stop()


def test_implicit_tls(tls_files: tuple[Path, Path]) -> None:
    cert, key = tls_files
    box = Mailbox()
    controller = Controller(box, hostname="127.0.0.1", port=free_port(), ssl_context=server_tls(cert, key))
    controller.start()
    try:
        client = ssl.create_default_context(cafile=str(cert))
        ok, _ = send(SmtpSettings("127.0.0.1", controller.port, security="ssl", ssl_context=client))
        assert ok and len(box.messages) == 1
        # Without our CA the server's certificate must be refused, and that is not worth retrying.
        ok, letters = send(SmtpSettings("127.0.0.1", controller.port, security="ssl"))
        assert not ok and letters.letters[0].attempts == 1
    finally:
        controller.stop()


def test_dispatcher_groups_per_store_and_respects_grants(smtp_server: tuple[Mailbox, int]) -> None:
    box, port = smtp_server
    boss = Receiver("boss", "t1", "email", "boss@example.ru", principal_id="boss")
    manager = Receiver("mgr", "t1", "email", "mgr@example.ru", principal_id="mgr")
    grants = {"boss": {"s1", "s2"}, "mgr": {"s2"}}
    names = {"s1": "Ленина 5", "s2": "Мира 12"}

    def notice(register: str, store: str, status: str = "firing") -> AlertNotice:
        return AlertNotice("t1", store, names[store], register, f"00010{register}", "ofd_backlog", "major",
                           status, f"Касса {register}: документы не уходят в ОФД",  # type: ignore[arg-type]
                           blocks_at=T0 + timedelta(days=2), url=f"/registers/{register}")  # fmt: skip

    dispatcher = NotificationDispatcher(
        NotificationGrouper(
            lambda tenant: [boss, manager],
            can_see=lambda r, n: n.store_node_id in grants[r.principal_id or ""],
        ),
        Renderer("https://kassa.example.ru"),
        email=EmailSender(SmtpSettings("127.0.0.1", port, security="none"), FAST),
    )

    async def scenario() -> list[int]:
        for register in ("1", "2", "3"):
            dispatcher.submit(notice(register, "s2"), T0)
        dispatcher.submit(notice("4", "s1"), T0)
        first = await dispatcher.run_once(T0 + timedelta(seconds=30))
        dispatcher.submit(notice("2", "s2", status="resolved"), T0 + timedelta(minutes=1))
        second = await dispatcher.run_once(T0 + timedelta(minutes=6))
        return [first.delivered, second.delivered]

    assert asyncio.run(scenario()) == [3, 2]  # boss: s1 + s2, mgr: s2; then s2 update to both
    by_rcpt: dict[str, list[EmailMessage]] = {}
    for rcpt, msg, _ in box.messages:
        by_rcpt.setdefault(rcpt[0], []).append(msg)
    assert sorted(m["Subject"] for m in by_rcpt["boss@example.ru"][:2]) == [
        "[Важно] Ленина 5: 1 проблема на 1 кассе",
        "[Важно] Мира 12: 3 проблемы на 3 кассах",
    ]
    mgr_first, mgr_update = by_rcpt["mgr@example.ru"]
    assert mgr_first["Subject"] == "[Важно] Мира 12: 3 проблемы на 3 кассах"
    text = mgr_first.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert all(f"касса 00010{r}" in text for r in ("1", "2", "3")) and "000104" not in text
    assert "https://kassa.example.ru/registers/1" in text
    assert mgr_update["Subject"] == "Обновление: [Важно] Мира 12: 2 проблемы на 2 кассах, решено 1"
    assert "Решено:" in mgr_update.get_body(("plain",)).get_content()  # type: ignore[union-attr]
