"""Notifications: group alert notices per store and receiver, render them, deliver by webhook or e-mail.

Flow: the alert engine calls ``NotificationDispatcher.submit(AlertNotice, now)``; the dispatcher's
loop asks ``NotificationGrouper.flush(now)`` for due ``NotificationGroup``s, the ``Renderer``
turns each into an e-mail or a signed webhook JSON body, and ``EmailSender``/``WebhookSender``
deliver with retries, ending in a dead-letter sink when a receiver stays unreachable.
"""

from collector.notify.delivery import DeadLetter, DeadLetterList, RetryPolicy
from collector.notify.dispatcher import DispatchReport, NotificationDispatcher
from collector.notify.email import EmailSender, SmtpSettings
from collector.notify.grouping import GroupTimings, NotificationGrouper
from collector.notify.notice import AlertNotice, NotificationGroup, QuietHours, Receiver
from collector.notify.render import EmailContent, Renderer
from collector.notify.webhook import WebhookSender, verify_signature

__all__ = [
    "AlertNotice",
    "DeadLetter",
    "DeadLetterList",
    "DispatchReport",
    "EmailContent",
    "EmailSender",
    "GroupTimings",
    "NotificationDispatcher",
    "NotificationGroup",
    "NotificationGrouper",
    "QuietHours",
    "Receiver",
    "Renderer",
    "RetryPolicy",
    "SmtpSettings",
    "WebhookSender",
    "verify_signature",
]
