"""Account mail (confirmation, password reset, invitation) over the notifier's SMTP channel.

``SmtpMailer`` is the ``service.Mailer`` for production: it reuses ``collector.notify``'s
``EmailSender`` (TLS modes, retries, classification of SMTP failures) through its public API.
``send`` is synchronous like the account flows; call those from a worker thread (the web layer
already does), never on the event loop's own thread.
"""

from __future__ import annotations

import asyncio
import html

from collector.notify.email import EmailSender
from collector.notify.notice import Receiver
from collector.notify.render import EmailContent

GROUP_KEY = "accounts"


class MailNotSent(RuntimeError):
    """The SMTP server refused the message or stayed unreachable through every retry."""


class SmtpMailer:
    def __init__(self, sender: EmailSender) -> None:
        self._sender = sender

    def send(self, to: str, subject: str, text: str) -> None:
        receiver = Receiver(receiver_id=f"account:{to}", tenant_id=GROUP_KEY, channel="email", address=to)
        content = EmailContent(subject=subject, text=text, html=f"<pre>{html.escape(text)}</pre>")
        if not asyncio.run(self._sender.send(receiver, content, GROUP_KEY)):
            raise MailNotSent(f"the message to {to} could not be delivered; try again later")
