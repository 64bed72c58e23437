"""E-mail channel: one multipart (plain text + HTML) message per group over SMTP.

``aiosmtplib`` is not installed, so stdlib ``smtplib`` runs in a worker thread
(``asyncio.to_thread``) and the event loop never blocks on a slow mail server. Security modes:
``starttls`` (submission port 587, the default), ``ssl`` (implicit TLS, port 465) and ``none``
(a relay on a trusted network or a test server).
"""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid, parseaddr
from typing import Literal

from collector.notify.delivery import (
    DeadLetterSink,
    PermanentDeliveryError,
    RetryingChannel,
    RetryPolicy,
    TransientDeliveryError,
)
from collector.notify.notice import Receiver
from collector.notify.render import EmailContent

SmtpSecurity = Literal["none", "starttls", "ssl"]


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int = 587
    security: SmtpSecurity = "starttls"
    username: str | None = None
    password: str | None = None
    sender: str = "Касса-Монитор <noreply@localhost>"
    timeout: float = 15.0
    ssl_context: ssl.SSLContext | None = None  # None: the system's default verification

    def __post_init__(self) -> None:
        if self.security not in ("none", "starttls", "ssl"):
            raise ValueError(f"unknown SMTP security mode {self.security!r}")
        if (self.username is None) != (self.password is None):
            raise ValueError("SMTP login needs both username and password")


def build_message(
    settings: SmtpSettings, receiver: Receiver, content: EmailContent, group_key: str
) -> EmailMessage:
    message = EmailMessage()
    message["From"] = settings.sender
    message["To"] = receiver.address
    message["Subject"] = content.subject
    message["Date"] = format_datetime(datetime.now(UTC))
    _, sender_address = parseaddr(settings.sender)
    # The same Message-ID on every retry lets mail clients drop a duplicate.
    message["Message-ID"] = make_msgid(
        domain=sender_address.split("@")[-1] if "@" in sender_address else None
    )
    # Tell auto-responders and vacation replies to stay quiet.
    message["Auto-Submitted"] = "auto-generated"
    message["X-Kassa-Group"] = group_key
    message.set_content(content.text)
    message.add_alternative(content.html, subtype="html")
    return message


def _classify(exc: Exception) -> Exception:
    """Map an smtplib/socket failure to transient (retry) or permanent (dead-letter now)."""
    text = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _ in exc.recipients.values()]
        return (
            TransientDeliveryError(text)
            if all(400 <= c < 500 for c in codes)
            else PermanentDeliveryError(text)
        )
    if isinstance(exc, smtplib.SMTPServerDisconnected | smtplib.SMTPConnectError):
        return TransientDeliveryError(text)
    if isinstance(exc, smtplib.SMTPResponseException):
        return PermanentDeliveryError(text) if exc.smtp_code >= 500 else TransientDeliveryError(text)
    if isinstance(exc, smtplib.SMTPNotSupportedError | ssl.SSLCertVerificationError):
        return PermanentDeliveryError(text)  # configuration, not the weather: retrying will not help
    return TransientDeliveryError(text)  # other SMTPException, refused connection, timeout


class EmailSender(RetryingChannel):
    channel = "email"

    def __init__(
        self,
        settings: SmtpSettings,
        policy: RetryPolicy | None = None,
        dead_letters: DeadLetterSink | None = None,
    ) -> None:
        super().__init__(policy, dead_letters)
        self.settings = settings

    async def send(self, receiver: Receiver, content: EmailContent, group_key: str) -> bool:
        """Deliver one message; False when it ended in the dead-letter sink."""
        if receiver.channel != "email":
            raise ValueError(f"receiver {receiver.receiver_id} is not an e-mail receiver")
        message = build_message(self.settings, receiver, content, group_key)

        async def attempt() -> None:
            try:
                await asyncio.to_thread(self._send_blocking, message)
            except (smtplib.SMTPException, OSError) as exc:
                raise _classify(exc) from exc

        return await self._deliver(receiver.receiver_id, group_key, attempt)

    def _send_blocking(self, message: EmailMessage) -> None:
        s = self.settings
        context = s.ssl_context or ssl.create_default_context()
        smtp: smtplib.SMTP
        if s.security == "ssl":
            smtp = smtplib.SMTP_SSL(s.host, s.port, timeout=s.timeout, context=context)
        else:
            smtp = smtplib.SMTP(s.host, s.port, timeout=s.timeout)
        with smtp:
            if s.security == "starttls":
                smtp.starttls(context=context)
            if s.username is not None and s.password is not None:
                smtp.login(s.username, s.password)
            smtp.send_message(message)
