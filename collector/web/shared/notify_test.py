"""The test message to one notification receiver, shared by the API and the notification page:
what it is sent with (the service's renderer and SMTP relay, ``NOTIFY_CHANNELS_KEY``, set by the
collector service) and one attempt at sending it, whose outcome is answered, not retried."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from aiohttp import web

from collector.notify import (
    AlertNotice,
    DeadLetterList,
    EmailSender,
    NotificationGroup,
    Renderer,
    RetryPolicy,
    SmtpSettings,
    WebhookSender,
)
from collector.notify.notice import GroupKey, Receiver

NO_SMTP = "no SMTP relay is configured ([notify] smtp_host)"


@dataclass(frozen=True)
class SendChannels:
    """What a test message is rendered and sent with: the service's renderer and SMTP relay."""

    renderer: Renderer
    smtp: SmtpSettings | None


NOTIFY_CHANNELS_KEY = web.AppKey("notify_channels", SendChannels)


# --- the test message ----------------------------------------------------------------------------


def sample_group(receiver: Receiver, at: datetime) -> NotificationGroup:
    """A message shaped like a real one, so the receiver sees exactly what alerts will look like."""
    notice = AlertNotice(
        tenant_id=receiver.tenant_id,
        store_node_id="test",
        store_name="Проверка уведомлений",
        register_id="test",
        register_serial="0000000000",
        rule="test",
        severity="info",
        status="firing",
        message="Проверочное сообщение: канал уведомлений работает",
    )
    key = GroupKey(receiver.tenant_id, "test", receiver.receiver_id)
    return NotificationGroup(key, receiver, notice.store_name, "first", at, (notice,), (), frozenset({notice.alert_key}))


async def send_test(channels: SendChannels, receiver: Receiver, at: datetime) -> tuple[bool, str | None]:
    """One attempt, no retries; the error is answered to the caller, not stored as a dead letter."""
    group = sample_group(receiver, at.astimezone(UTC))
    failures = DeadLetterList()
    once = RetryPolicy(attempts=1)
    key = f"test/{receiver.receiver_id}"
    if receiver.channel == "webhook":
        async with WebhookSender(once, failures) as webhook:
            delivered = await webhook.send(receiver, channels.renderer.webhook_body(group), key)
    elif channels.smtp is None:
        return False, NO_SMTP
    else:
        delivered = await EmailSender(channels.smtp, once, failures).send(receiver, channels.renderer.email(group), key)
    return delivered, failures.letters[-1].last_error if failures.letters else None


