"""``collector.alerts.rules.ofd_cause``: one test per row of the cause table, the order between rows,
when no cause is looked for, and the OFD operators table."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from collector.alerts import Thresholds, fix_text
from collector.alerts.ofd_operators import OFD_OPERATORS, operator_by_key, operator_of_host
from collector.alerts.rules.inputs import OfdContract, RuleInput
from collector.alerts.rules.ofd import ofd_backlog
from collector.alerts.rules.ofd_cause import CAUSE_RULES, diagnose
from protocol.kkt.state import OfdLinkCheck, OfdState, RegisterState, Vendor

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


def link(*, resolved: bool = True, connected: bool = True, host: str = "f1.taxcom.ru") -> OfdLinkCheck:
    error = None if connected else ("DNS: Name or service not known" if not resolved else "TCP: Connection refused")
    return OfdLinkCheck(host=host, port=7777, resolved=resolved, connected=connected, error=error, checked_at=NOW)


def inp(
    *, agent_online: bool | None = True, link_up: bool | None = True, contracted: str | None = None, **ofd: Any
) -> RuleInput:
    ofd.setdefault("unsent_count", 12)
    ofd.setdefault("server_host", "f1.taxcom.ru")
    ofd.setdefault("server_port", 7777)
    state = RegisterState(vendor=Vendor.SHTRIH, protocol="shtrih", serial="1", ofd=OfdState(**ofd))
    contract = None if contracted is None else OfdContract(activated=True, ofd_operator=contracted)
    return RuleInput(register_id="r1", now=NOW, state=state, agent_online=agent_online, link_up=link_up, contract=contract)


def cause_of(rule_input: RuleInput) -> str | None:
    found = diagnose(rule_input)
    return None if found is None else found.cause


def test_agent_offline_means_we_cannot_tell() -> None:
    found = diagnose(inp(agent_online=False, transport_connected=False, link_check=link(connected=False)))
    assert found is not None and found.cause == "agent_offline"
    assert found.text == "агент не на связи"


def test_register_not_answering() -> None:
    found = diagnose(inp(link_up=False, transport_connected=False))
    assert found is not None and (found.cause, found.text) == ("register_unreachable", "касса не отвечает")


def test_autonomous_mode_even_without_a_backlog() -> None:
    found = diagnose(inp(unsent_count=0, autonomous=True, transport_connected=False))
    assert found is not None and found.text == "касса в автономном режиме — обмен с ОФД отключён"
    assert "перерегистрируйте" in found.fix


def test_host_that_does_not_resolve_is_a_wrong_address() -> None:
    bad = "ofd.kassa-monitor.invalid"
    found = diagnose(
        inp(server_host=bad, transport_connected=False, link_check=link(resolved=False, connected=False, host=bad))
    )
    assert found is not None and found.text == "в кассе указан неверный адрес ОФД"
    assert f"«{bad}»" in found.fix


def test_another_operators_host_than_the_contracted_one_is_a_wrong_address() -> None:
    settings = {"server_host": "kkt.sbis.ru", "transport_connected": True, "link_check": link(host="kkt.sbis.ru")}
    found = diagnose(inp(contracted="taxcom", **settings))
    assert found is not None and found.cause == "wrong_ofd_host"
    assert "Такском: f1.taxcom.ru" in found.fix
    assert found.details["server_operator"] == "Тензор (СБИС ОФД)"
    assert cause_of(inp(contracted="sbis", **settings)) is None  # the right operator: nothing wrong with the address


def test_failed_connect_from_the_pc_is_no_internet() -> None:
    found = diagnose(inp(transport_connected=False, link_check=link(connected=False)))
    assert found is not None and found.text == "нет интернета в магазине"
    assert "f1.taxcom.ru:7777" in found.fix


def test_new_settings_from_the_ofd_add_a_restart_to_the_connection_fixes() -> None:
    """ФН exchange b4: the OFD sent new connection settings; the fix of a connection cause says to apply them."""
    changed = diagnose(inp(transport_connected=False, link_check=link(connected=False), settings_changed=True))
    assert changed is not None and changed.cause == "no_internet"
    assert "настройки соединения с ОФД изменились" in changed.fix and changed.details["settings_changed"] is True
    unchanged = diagnose(inp(transport_connected=False, link_check=link(connected=False), settings_changed=False))
    assert unchanged is not None and "настройки соединения" not in unchanged.fix
    acking = diagnose(inp(transport_connected=True, awaiting_receipt=True, link_check=link(), settings_changed=True))
    assert acking is not None and acking.cause == "ofd_not_acking" and "настройки соединения" not in acking.fix


def test_without_a_connect_test_the_registers_transport_decides() -> None:
    # ATOL: the server address is unknown, so there is no check; the register's b0 speaks.
    assert cause_of(inp(server_host=None, server_port=None, transport_connected=False)) == "no_internet"


def test_connected_with_no_receipts_is_the_ofd_not_acknowledging() -> None:
    found = diagnose(inp(transport_connected=True, message_waiting=True, awaiting_receipt=True, link_check=link()))
    assert found is not None and found.text == "ОФД не подтверждает документы"
    assert "договор" in found.fix
    assert cause_of(inp(transport_connected=True, response_timeout=True)) == "ofd_not_acking"


def test_pc_reaches_the_ofd_but_the_register_does_not() -> None:
    assert cause_of(inp(transport_connected=False, link_check=link())) == "exchange_stuck"


def test_old_backlog_without_a_link_is_not_blamed_on_the_ofd() -> None:
    # The ФН raises b3 after long waits whatever the reason: with the transport down it is not the OFD.
    rule_input = inp(transport_connected=False, response_timeout=True, link_check=link(connected=False))
    assert cause_of(rule_input) == "no_internet"


@pytest.mark.parametrize(
    ("first", "second", "kwargs"),
    [
        ("agent_offline", "register_unreachable", {"agent_online": False, "link_up": False}),
        ("register_unreachable", "autonomous", {"link_up": False, "autonomous": True}),
        ("autonomous", "no_internet", {"autonomous": True, "transport_connected": False}),
        ("wrong_ofd_host", "no_internet", {"link_check": link(resolved=False, connected=False)}),
    ],
)
def test_rows_are_read_in_order_of_certainty(first: str, second: str, kwargs: dict[str, Any]) -> None:
    order = [rule.cause for rule in CAUSE_RULES]
    assert order.index(first) < order.index(second)
    assert cause_of(inp(**kwargs)) == first


def test_nothing_to_explain_means_no_cause() -> None:
    assert diagnose(inp(unsent_count=0, transport_connected=False)) is None
    assert diagnose(RuleInput(register_id="r1", now=NOW, agent_online=False)) is None  # no state at all


def test_a_backlog_with_everything_fine_has_no_cause_yet() -> None:
    assert diagnose(inp(transport_connected=True, message_waiting=True, link_check=link())) is None


def test_every_row_has_russian_text_and_a_fix() -> None:
    for rule in CAUSE_RULES:
        assert rule.text and rule.fix and any("а" <= ch <= "я" for ch in rule.text)


def test_operator_table_hosts_are_unique_and_found_case_insensitively() -> None:
    hosts = [host for operator in OFD_OPERATORS for host in operator.hosts]
    assert len(hosts) == len(set(hosts))
    found = operator_of_host("K-Server.1-OFD.ru.")
    assert found is not None and found.name == "Первый ОФД"
    assert operator_of_host("ofd.example.org") is None
    assert operator_by_key(None) is None
    yandex = operator_by_key("yandex")
    assert yandex is not None and yandex.port == 12345


def test_the_backlog_alert_carries_the_cause_and_its_fix_names_it() -> None:
    rule_input = inp(transport_connected=False, link_check=link(connected=False))
    state = rule_input.state
    assert state is not None
    aged = state.model_copy(update={
        "register_clock": datetime(2026, 12, 6, 15, 0),
        "ofd": state.ofd.model_copy(update={"first_unsent_at": datetime(2026, 11, 20, 15, 0)}),
    })  # fmt: skip
    rule_input = replace(rule_input, polled_at=NOW)  # the register clock is read at NOW
    condition = ofd_backlog(replace(rule_input, state=aged), Thresholds())
    assert condition is not None
    assert (condition.details["cause"], condition.details["cause_text"]) == ("no_internet", "нет интернета в магазине")
    fix = fix_text(condition.rule, condition.details)
    assert fix is not None and fix.startswith("Причина: нет интернета в магазине. Касса не может подключиться")
    plain = ofd_backlog(replace(rule_input, state=aged.model_copy(update={"ofd": OfdState(
        unsent_count=12, first_unsent_at=datetime(2026, 11, 20, 15, 0))})), Thresholds())  # fmt: skip
    assert plain is not None and "cause" not in plain.details
    assert (fix_text(plain.rule, plain.details) or "").startswith("Проверьте интернет в магазине")
