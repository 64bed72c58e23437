"""Message bodies: Russian e-mail (subject, plain text, HTML) and the webhook JSON document.

Trust rules from the complaints in market-and-alerts.md §4 (users cannot tell real messages from
phishing): a message links only into our own web UI (``base_url``); any other link a notice
carries is dropped, and no message ever carries a payment link or asks for credentials.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from collector.notify.notice import AlertNotice, NotificationGroup, blocks_in

WEBHOOK_SCHEMA_VERSION = 1
TEMPLATES = Path(__file__).parent / "templates"

SEVERITY_LABELS_RU = {
    "info": "Информация",
    "warning": "Предупреждение",
    "major": "Важно",
    "critical": "Критично",
    "blocked": "Касса заблокирована",
}
REASON_PREFIX_RU = {"first": "", "update": "Обновление: ", "repeat": "Напоминание: "}


def plural_ru(n: int, one: str, few: str, many: str) -> str:
    """Russian noun form for ``n``: 1 касса, 2 кассы, 5 касс, 11 касс, 21 касса."""
    if n % 10 == 1 and n % 100 != 11:
        return one
    if 2 <= n % 10 <= 4 and not 12 <= n % 100 <= 14:
        return few
    return many


def countdown_ru(left: timedelta | None) -> str:
    if left is None:
        return ""
    if left <= timedelta(0):
        return "касса сейчас не может продавать"
    minutes = int(left.total_seconds() // 60)
    days, rest = divmod(minutes, 24 * 60)
    hours, mins = divmod(rest, 60)
    if days:
        return f"касса остановится через {days} д {hours} ч"
    if hours:
        return f"касса остановится через {hours} ч {mins} мин"
    return f"касса остановится через {max(mins, 1)} мин"


@dataclass(frozen=True)
class EmailContent:
    subject: str
    text: str
    html: str


@dataclass(frozen=True)
class _Line:
    """One alert as the templates show it."""

    severity: str
    severity_label: str
    register_serial: str
    rule: str
    message: str
    fix: str
    countdown: str
    blocks_at_local: str
    link: str | None
    is_new: bool


class Renderer:
    def __init__(self, base_url: str, product_name: str = "Касса-Монитор") -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"base_url must be an absolute http(s) URL, got {base_url!r}")
        self._base = base_url.rstrip("/") + "/"
        self._product = product_name
        self._env = Environment(
            loader=FileSystemLoader(TEMPLATES),
            autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=False),
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
        )

    def trusted_link(self, url: str | None) -> str | None:
        """An absolute link inside our UI, or None for anything pointing elsewhere.

        ``url`` is an app-relative path (``/registers/7`` or ``registers/7``, both under
        ``base_url``) or an absolute URL that must already lie under ``base_url``.
        """
        if not url:
            return None
        parts = urlsplit(url)
        relative = not parts.scheme and not parts.netloc and not url.startswith("//")
        absolute = urljoin(self._base, url.lstrip("/")) if relative else url
        base = urlsplit(self._base)
        parts = urlsplit(absolute)
        if (parts.scheme, parts.netloc) != (base.scheme, base.netloc) or not parts.path.startswith(base.path):
            return None
        return absolute

    def email(self, group: NotificationGroup) -> EmailContent:
        context = self._context(group)
        subject = self._env.get_template("subject.txt").render(context)
        return EmailContent(
            subject=_one_line(subject),
            text=self._env.get_template("email.txt").render(context),
            html=self._env.get_template("email.html").render(context),
        )

    def webhook_payload(self, group: NotificationGroup) -> dict[str, Any]:
        by_severity: dict[str, int] = {}
        for notice in group.firing:
            by_severity[notice.severity] = by_severity.get(notice.severity, 0) + 1
        return {
            "schema_version": WEBHOOK_SCHEMA_VERSION,
            "kind": "kassa.alert_group",
            "group_key": str(group.key),
            "reason": group.reason,
            "sent_at": group.at.isoformat(),
            "tenant_id": group.key.tenant_id,
            "store": {"node_id": group.key.store_node_id, "name": group.store_name},
            "highest_severity": group.highest_severity,
            "counts": {
                "firing": len(group.firing),
                "resolved": len(group.resolved),
                "registers": group.register_count,
                "firing_by_severity": by_severity,
            },
            "alerts": [self._alert_json(n, group) for n in (*group.firing, *group.resolved)],
        }

    def webhook_body(self, group: NotificationGroup) -> bytes:
        """The exact bytes that are signed and sent: compact UTF-8 JSON with sorted keys."""
        payload = self.webhook_payload(group)
        return json.dumps(payload, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode()

    def _alert_json(self, notice: AlertNotice, group: NotificationGroup) -> dict[str, Any]:
        return {
            "register_id": notice.register_id,
            "register_serial": notice.register_serial,
            "rule": notice.rule,
            "severity": notice.severity,
            "status": notice.status,
            "new": notice.alert_key in group.new,
            "message": notice.message,
            "fix": notice.fix if notice.status == "firing" else None,
            "blocks_at": notice.blocks_at.isoformat() if notice.blocks_at else None,
            "url": self.trusted_link(notice.url),
        }

    def _line(self, notice: AlertNotice, group: NotificationGroup) -> _Line:
        local = notice.blocks_at.astimezone(group.receiver.zone) if notice.blocks_at else None
        return _Line(
            severity=notice.severity,
            severity_label=SEVERITY_LABELS_RU[notice.severity],
            register_serial=notice.register_serial,
            rule=notice.rule,
            message=notice.message,
            fix=(notice.fix or "") if notice.status == "firing" else "",
            countdown=countdown_ru(blocks_in(notice, group.at)) if notice.status == "firing" else "",
            blocks_at_local=local.strftime("%d.%m.%Y %H:%M") if local else "",
            link=self.trusted_link(notice.url),
            is_new=notice.alert_key in group.new,
        )

    def _context(self, group: NotificationGroup) -> dict[str, Any]:
        firing, resolved = len(group.firing), len(group.resolved)
        # "N проблем на M кассах" counts open ones; a company-level alert is on no register
        registers = len({n.register_id for n in group.firing if not n.about_company})
        local_at: datetime = group.at.astimezone(group.receiver.zone)
        return {
            "product": self._product,
            "base_url": self._base,
            "store_name": group.store_name,
            "reason_prefix": REASON_PREFIX_RU[group.reason],
            "top_label": SEVERITY_LABELS_RU[group.highest_severity] if firing else "Решено",
            "firing": [self._line(n, group) for n in group.firing],
            "resolved": [self._line(n, group) for n in group.resolved],
            "firing_count": firing,
            "resolved_count": resolved,
            "firing_word": plural_ru(firing, "проблема", "проблемы", "проблем"),
            "registers_count": registers,
            "registers_word": plural_ru(registers, "кассе", "кассах", "кассах"),  # after «на»
            "sent_at_local": local_at.strftime("%d.%m.%Y %H:%M"),
            "timezone": group.receiver.timezone,
        }


def _one_line(text: str) -> str:
    # A store name typed by a user must not break the Subject header into two.
    return re.sub(r"\s+", " ", text).strip()
