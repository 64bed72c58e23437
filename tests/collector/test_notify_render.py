"""Renderer: Russian subjects and bodies, HTML escaping, trusted links only, webhook JSON."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest

from collector.notify.notice import AlertNotice, GroupKey, GroupReason, NotificationGroup, Receiver
from collector.notify.render import Renderer, countdown_ru, plural_ru

AT = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)  # 12:00 MSK
BASE = "https://kassa.example.ru/app"
RECEIVER = Receiver("ops", "t1", "email", "ops@example.ru", timezone="Asia/Yekaterinburg")  # UTC+5


def alert(register: str, severity: str, status: str = "firing", **kw: object) -> AlertNotice:
    fields: dict[str, object] = {
        "tenant_id": "t1",
        "store_node_id": "s1",
        "store_name": "Пятёрочка, Ленина 5",
        "register_id": register,
        "register_serial": f"0001{register}",
        "rule": "ofd_backlog",
        "severity": severity,
        "status": status,
        "message": f"Документы не передаются в ОФД ({register})",
    }
    fields.update(kw)
    return AlertNotice(**fields)  # type: ignore[arg-type]


def group(
    firing: Sequence[AlertNotice],
    resolved: Sequence[AlertNotice] = (),
    reason: GroupReason = "first",
    store_name: str = "Пятёрочка, Ленина 5",
) -> NotificationGroup:
    return NotificationGroup(
        key=GroupKey("t1", "s1", RECEIVER.receiver_id),
        receiver=RECEIVER,
        store_name=store_name,
        reason=reason,
        at=AT,
        firing=tuple(firing),
        resolved=tuple(resolved),
        new=frozenset(n.alert_key for n in firing),
    )


@pytest.fixture
def renderer() -> Renderer:
    return Renderer(BASE)


def test_russian_plurals_and_countdown() -> None:
    forms = [plural_ru(n, "касса", "кассы", "касс") for n in (1, 2, 4, 5, 11, 12, 14, 21, 22, 25, 101, 111)]
    assert forms == [
        "касса",
        "кассы",
        "кассы",
        "касс",
        "касс",
        "касс",
        "касс",
        "касса",
        "кассы",
        "касс",
        "касса",
        "касс",
    ]
    assert countdown_ru(timedelta(days=2, hours=5, minutes=7)) == "касса остановится через 2 д 5 ч"
    assert countdown_ru(timedelta(hours=3, minutes=20)) == "касса остановится через 3 ч 20 мин"
    assert countdown_ru(timedelta(seconds=20)) == "касса остановится через 1 мин"
    assert countdown_ru(timedelta(0)) == "касса сейчас не может продавать"
    assert countdown_ru(None) == ""


def test_subject_names_store_top_severity_and_counts(renderer: Renderer) -> None:
    g = group([alert("1", "critical"), alert("1", "warning", rule="paper"), alert("2", "major")])
    assert renderer.email(g).subject == "[Критично] Пятёрочка, Ленина 5: 3 проблемы на 2 кассах"
    reminder = group([alert("1", "warning")], [alert("2", "major", status="resolved")], reason="repeat")
    assert renderer.email(reminder).subject == (
        "Напоминание: [Предупреждение] Пятёрочка, Ленина 5: 1 проблема на 1 кассе, решено 1"
    )
    done = group([], [alert("1", "major", status="resolved")], reason="update")
    assert renderer.email(done).subject == "Обновление: [Решено] Пятёрочка, Ленина 5: все проблемы решены (1)"


def test_subject_stays_on_one_line_whatever_the_store_is_called(renderer: Renderer) -> None:
    g = group([alert("1", "major")], store_name="Склад\r\nBcc: victim@example.com")
    subject = renderer.email(g).subject
    assert "\n" not in subject and "\r" not in subject


def test_text_body_lists_alerts_with_countdown_in_receivers_zone_and_links(renderer: Renderer) -> None:
    blocks = AT + timedelta(days=3, hours=2)
    g = group(
        [alert("1", "critical", blocks_at=blocks, url="/registers/1"), alert("2", "warning")],
        [alert("3", "major", status="resolved")],
    )
    text = renderer.email(g).text
    assert "Активные проблемы:" in text and "Решено:" in text
    assert "[Критично] НОВОЕ касса 00011: Документы не передаются в ОФД (1)" in text
    assert "касса остановится через 3 д 2 ч (30.11.2026 16:00)" in text  # 11:00 UTC = 16:00 in Yekaterinburg
    assert "https://kassa.example.ru/app/registers/1" in text
    assert "касса 00013: Документы не передаются в ОФД (3)" in text
    assert text.index("00011") < text.index("00012")  # most severe first, as the grouper ordered them
    assert "14:00 (Asia/Yekaterinburg)" in text


def test_html_body_escapes_user_text_and_links_only_into_our_ui(renderer: Renderer) -> None:
    g = group(
        [
            alert(
                "1",
                "major",
                message="<script>alert(1)</script>",
                url="https://kassa.example.ru/app/registers/1",
            ),
            alert("2", "major", url="https://pay-ofd.example.com/invoice?sum=5000"),
            alert("3", "major", url="https://kassa.example.ru/elsewhere"),
        ],
        store_name="Кафе <b>«Уют»</b>",
    )
    html = renderer.email(g).html
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "Кафе &lt;b&gt;«Уют»&lt;/b&gt;" in html
    assert 'href="https://kassa.example.ru/app/registers/1"' in html
    assert "pay-ofd" not in html and "elsewhere" not in html
    assert html.count("<tr class=") == 3


def test_trusted_link_rules(renderer: Renderer) -> None:
    assert renderer.trusted_link("registers/9") == "https://kassa.example.ru/app/registers/9"
    assert renderer.trusted_link("//evil.example.com/app/x") is None
    assert renderer.trusted_link("http://kassa.example.ru/app/x") is None  # downgraded scheme
    assert renderer.trusted_link("javascript:alert(1)") is None
    assert renderer.trusted_link(None) is None
    with pytest.raises(ValueError):
        Renderer("kassa.example.ru")


def test_webhook_body_is_compact_sorted_json_with_counts_and_no_foreign_links(renderer: Renderer) -> None:
    blocks = AT + timedelta(hours=5)
    g = group(
        [
            alert("1", "critical", blocks_at=blocks, url="/registers/1"),
            alert("2", "warning", url="https://evil.example/"),
        ],
        [alert("3", "major", status="resolved")],
        reason="update",
    )
    body = renderer.webhook_body(g)
    assert (
        body
        == json.dumps(json.loads(body), ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode()
    )
    doc = json.loads(body)
    assert doc["schema_version"] == 1 and doc["kind"] == "kassa.alert_group"
    assert doc["reason"] == "update" and doc["group_key"] == "t1/s1/ops"
    assert doc["store"] == {"node_id": "s1", "name": "Пятёрочка, Ленина 5"}
    assert doc["highest_severity"] == "critical"
    assert doc["counts"] == {
        "firing": 2,
        "resolved": 1,
        "registers": 3,
        "firing_by_severity": {"critical": 1, "warning": 1},
    }
    first, second, third = doc["alerts"]
    assert first["url"] == "https://kassa.example.ru/app/registers/1"
    assert first["blocks_at"] == "2026-11-27T14:00:00+00:00" and first["new"] is True
    assert second["url"] is None
    assert third["status"] == "resolved" and third["new"] is False


def test_every_firing_alert_says_what_to_do_in_mail_and_webhook(renderer: Renderer) -> None:
    fix = "Проверьте интернет в магазине: касса не может передать документы в ОФД с 12.11.2026."
    g = group([alert("1", "critical", fix=fix)], [alert("3", "major", status="resolved", fix="Закройте смену")])
    mail = renderer.email(g)
    assert f"Что делать: {fix}" in mail.text and "Закройте смену" not in mail.text  # solved needs nothing
    assert "<th align=\"left\">Что делать</th>" in mail.html and fix in mail.html
    alerts = {a["register_id"]: a for a in renderer.webhook_payload(g)["alerts"]}
    assert alerts["1"]["fix"] == fix and alerts["3"]["fix"] is None
