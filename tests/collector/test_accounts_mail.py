"""Account mail through the notifier's SMTP sender, against a real local SMTP server (aiosmtpd)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from email import message_from_bytes, policy
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from collector.accounts.mail import MailNotSent, SmtpMailer
from collector.notify.delivery import RetryPolicy
from collector.notify.email import EmailSender, SmtpSettings


class Inbox:
    def __init__(self, reply: str = "250 OK") -> None:
        self.reply = reply
        self.messages: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.reply.startswith("250"):
            self.messages.append(message_from_bytes(envelope.content, policy=policy.default))
        return self.reply


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def inbox() -> Iterator[tuple[Inbox, SmtpMailer]]:
    box = Inbox()
    controller = Controller(box, hostname="127.0.0.1", port=_free_port())
    controller.start()
    sender = EmailSender(
        SmtpSettings(host="127.0.0.1", port=controller.port, security="none"),
        RetryPolicy(attempts=1, initial_backoff=0, jitter=0),
    )
    try:
        yield box, SmtpMailer(sender)
    finally:
        controller.stop()


def test_account_mail_is_delivered_as_text_and_escaped_html(inbox: tuple[Inbox, SmtpMailer]) -> None:
    box, mailer = inbox
    mailer.send(
        "anna@example.test", "Подтвердите адрес e-mail", "Ссылка: https://k.test/confirm?token=a<b>&c\n"
    )
    (message,) = box.messages
    assert message["To"] == "anna@example.test" and message["Subject"] == "Подтвердите адрес e-mail"
    assert "token=a<b>&c" in message.get_body(("plain",)).get_content()
    assert "token=a&lt;b&gt;&amp;c" in message.get_body(("html",)).get_content()


def test_a_refused_message_raises(inbox: tuple[Inbox, SmtpMailer]) -> None:
    box, mailer = inbox
    box.reply = "550 mailbox unavailable"
    with pytest.raises(MailNotSent, match="could not be delivered"):
        mailer.send("anna@example.test", "x", "y")
