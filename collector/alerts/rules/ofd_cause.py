"""Why documents do not reach the OFD: the register's exchange state and the agent's own connect
test turned into one cause, with its Russian text and fix (issue 10 §2, specs §6a).

The rules are data: ``CAUSE_RULES`` is read top to bottom and the first row whose test holds
names the cause. The order is the order of certainty: with the agent or the register silent we
cannot tell anything else; autonomous mode explains everything; a server that does not resolve
or is not the contracted OFD's is the register's setting; a connect that fails from the
register's PC is the store's network; connected with no receipts is the OFD's side; a PC that
reaches the OFD beside a register whose transport stays down is the register's own exchange.

A cause is looked for only where there is something to explain: documents waiting for the OFD,
or a register in autonomous mode.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeAlias

import msgspec
from pydantic import BaseModel

from collector.alerts.ofd_operators import operator_by_key, operator_of_host
from collector.alerts.rules.inputs import RuleInput

if TYPE_CHECKING:
    from protocol.kkt import state as model
    from protocol.kkt.vocabulary import AnyRegisterState as RegisterState
    from protocol.mqtt import wire

    OfdState: TypeAlias = model.OfdState | wire.OfdState


@dataclass(frozen=True, slots=True)
class OfdCause:
    cause: str  # stable id for JSON and tests
    text: str  # the cause in Russian
    fix: str  # what to do, in Russian
    details: dict[str, Any]

    def as_json(self) -> dict[str, Any]:
        return {"cause": self.cause, "text": self.text, "fix": self.fix, "details": self.details}


@dataclass(frozen=True, slots=True)
class CauseInput:
    """What the rules read: the alert input plus the OFD the register's contract names."""

    rule_input: RuleInput
    contracted_ofd: str | None = None  # an ``OFD_OPERATORS`` key; None = not known

    @property
    def ofd(self) -> OfdState:
        state = self.rule_input.state
        assert state is not None  # diagnose() looks for a cause only with a state
        return state.ofd


def _agent_silent(inp: CauseInput) -> bool:
    return inp.rule_input.agent_online is False


def _register_silent(inp: CauseInput) -> bool:
    return inp.rule_input.link_up is False


def _autonomous(inp: CauseInput) -> bool:
    return inp.ofd.autonomous is True


def _wrong_host(inp: CauseInput) -> bool:
    check = inp.ofd.link_check
    if check is not None and not check.resolved:
        return True
    contracted = operator_by_key(inp.contracted_ofd)
    host = inp.ofd.server_host
    return contracted is not None and host is not None and host.strip().rstrip(".").lower() not in contracted.hosts


def _no_internet(inp: CauseInput) -> bool:
    check = inp.ofd.link_check
    if check is not None:
        return not check.connected
    return inp.ofd.transport_connected is False  # no check (server unknown): the register's own word


def _ofd_not_acking(inp: CauseInput) -> bool:
    """Sent and waiting for a receipt (b2), or connected while the ФН says the OFD is too slow (b3)."""
    ofd = inp.ofd
    return ofd.awaiting_receipt is True or (ofd.transport_connected is True and ofd.response_timeout is True)


def _stuck_in_register(inp: CauseInput) -> bool:
    """The PC reaches the OFD, the register's own transport stays down."""
    check = inp.ofd.link_check
    return check is not None and check.connected and inp.ofd.transport_connected is False


@dataclass(frozen=True, slots=True)
class CauseRule:
    cause: str
    holds: Callable[[CauseInput], bool]
    text: str
    fix: str


CAUSE_RULES: tuple[CauseRule, ...] = (
    CauseRule(
        "agent_offline",
        _agent_silent,
        "агент не на связи",
        "Причину установить нельзя, пока агент не на связи: проверьте в магазине компьютер с агентом — "
        "он должен быть включён и подключён к интернету.",
    ),
    CauseRule(
        "register_unreachable",
        _register_silent,
        "касса не отвечает",
        "Агент на связи, но касса ему не отвечает: проверьте, что касса включена, а кабель (USB, COM) "
        "или сеть между кассой и компьютером с агентом подключены.",
    ),
    CauseRule(
        "autonomous",
        _autonomous,
        "касса в автономном режиме — обмен с ОФД отключён",
        "Касса зарегистрирована в автономном режиме и документы в ОФД не передаёт. Если магазин не в "
        "местности, отдалённой от сетей связи, перерегистрируйте кассу в ФНС с договором ОФД "
        "(нужна КЭП руководителя) и укажите адрес ОФД в настройках кассы.",
    ),
    CauseRule(
        "wrong_ofd_host",
        _wrong_host,
        "в кассе указан неверный адрес ОФД",
        "Исправьте в настройках кассы адрес сервера ОФД{expected}: сейчас указан {host}. "
        "Адрес и порт — в договоре или в личном кабинете ОФД.",
    ),
    CauseRule(
        "no_internet",
        _no_internet,
        "нет интернета в магазине",
        "Касса не может подключиться к серверу ОФД{target}. Проверьте интернет в магазине: роутер, кабель, "
        "оплату провайдера; если интернет есть — не закрывает ли доступ к порту ОФД сетевой экран.",
    ),
    CauseRule(
        "ofd_not_acking",
        _ofd_not_acking,
        "ОФД не подтверждает документы",
        "Связь с ОФД есть, документы отправляются, но ОФД не присылает квитанции. Проверьте в личном "
        "кабинете ОФД, что договор активирован и оплачен и что касса в нём зарегистрирована "
        "(РНМ и номер ФН совпадают с кассой).",
    ),
    CauseRule(
        "exchange_stuck",
        _stuck_in_register,
        "касса не подключается к ОФД, хотя интернет в магазине есть",
        "Компьютер в магазине до сервера ОФД{target} достаёт, а касса — нет. Проверьте сетевые настройки "
        "кассы (канал обмена с ОФД, шлюз, DNS) и перезагрузите кассу; не помогло — сервисный центр.",
    ),
)


# The ФН's exchange byte b4 (specs §6a): the OFD sent the register new connection settings. Where the
# cause is the connection itself, that is the likeliest reason, and a restart is how a register
# applies them; the fix says so.
SETTINGS_CHANGED_CAUSES = frozenset({"wrong_ofd_host", "no_internet", "exchange_stuck"})
SETTINGS_CHANGED_FIX = (
    " ФН сообщает, что настройки соединения с ОФД изменились: перезагрузите кассу, чтобы она их "
    "применила, и сверьте адрес ОФД в настройках кассы с договором."
)


def diagnose(inp: RuleInput) -> OfdCause | None:
    """The cause documents do not reach the OFD, or None when nothing waits or nothing fits. The
    contracted OFD comes from the input's contract (``OfdContract.ofd_operator``)."""
    state = inp.state
    if state is None or not _needs_cause(state):
        return None
    contracted_ofd = inp.contract.ofd_operator if inp.contract is not None else None
    cause_input = CauseInput(inp, contracted_ofd)
    for rule in CAUSE_RULES:
        if rule.holds(cause_input):
            details = _details(state.ofd, contracted_ofd)
            fix = _fill(rule.fix, details)
            if state.ofd.settings_changed and rule.cause in SETTINGS_CHANGED_CAUSES:
                fix += SETTINGS_CHANGED_FIX
            return OfdCause(rule.cause, rule.text, fix, details)
    return None


def _needs_cause(state: RegisterState) -> bool:
    return bool(state.ofd.unsent_count) or state.ofd.autonomous is True


def _details(ofd: OfdState, contracted_ofd: str | None) -> dict[str, Any]:
    check = ofd.link_check
    configured = operator_of_host(ofd.server_host) if ofd.server_host else None
    contracted = operator_by_key(contracted_ofd)
    return {
        "server_host": ofd.server_host,
        "server_port": ofd.server_port,
        "server_operator": configured.name if configured else None,
        "contracted_operator": contracted.name if contracted else None,
        "contracted_hosts": sorted(contracted.hosts) if contracted else [],
        "transport_connected": ofd.transport_connected,
        "awaiting_receipt": ofd.awaiting_receipt,
        "response_timeout": ofd.response_timeout,
        "ofd_command_pending": ofd.ofd_command_pending,
        "settings_changed": ofd.settings_changed,
        "awaiting_command_answer": ofd.awaiting_command_answer,
        "link_check": None if check is None else json_ready(check),
    }


def json_ready(part: Any) -> dict[str, Any]:
    """A state's part as JSON values, from the model (web) or its msgspec mirror (ingest)."""
    if isinstance(part, BaseModel):
        return part.model_dump(mode="json")
    data: dict[str, Any] = msgspec.to_builtins(part)
    return data


def _fill(fix: str, details: dict[str, Any]) -> str:
    host, port = details["server_host"], details["server_port"]
    target = f" {host}:{port}" if host and port else ""
    hosts = details["contracted_hosts"]
    expected = f" на адрес из договора ({details['contracted_operator']}: {', '.join(hosts)})" if hosts else ""
    return fix.format(target=target, host=f"«{host}»" if host else "неизвестный адрес", expected=expected)
