"""Interface labels for the monitoring pages: rules, severities, shift states, block causes, events.

Russian is the interface language; English labels exist for the same keys so a language switch
can be added without touching templates (``labels("en")``). An unknown key falls back to the key
itself, so a rule added to the catalogue shows up as its id instead of breaking a page.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from collector.alerts.severity import Severity

DEFAULT_LANGUAGE = "ru"

_RULES: dict[str, dict[str, str]] = {
    "ru": {
        "agent_offline": "Агент не на связи",
        "register_unreachable": "Нет связи с кассой",
        "ofd_backlog": "Документы не переданы в ОФД",
        "fn_validity": "Срок ФН истекает",
        "fn_memory": "Память ФН заполнена",
        "fn_critical": "Критическая ошибка ФН",
        "fn_not_fiscal": "ФН не в фискальном режиме",
        "shift_too_long": "Смена открыта слишком долго",
        "ofd_contract": "Услуга ОФД не оплачена",
        "paper_out": "Нет бумаги",
        "cover_open": "Открыта крышка",
        "clock_skew": "Часы кассы расходятся",
        "agent_clock": "Часы компьютера с агентом неверны",
        "kep_validity": "Срок КЭП истекает",
    },
    "en": {
        "agent_offline": "Agent offline",
        "register_unreachable": "Register unreachable",
        "ofd_backlog": "Documents not sent to the OFD",
        "fn_validity": "ФН validity running out",
        "fn_memory": "ФН memory full",
        "fn_critical": "ФН critical error",
        "fn_not_fiscal": "ФН not in fiscal mode",
        "shift_too_long": "Shift open too long",
        "ofd_contract": "OFD service not paid",
        "paper_out": "Paper out",
        "cover_open": "Cover open",
        "clock_skew": "Register clock skew",
        "agent_clock": "Agent computer clock wrong",
        "kep_validity": "КЭП expiring",
    },
}

_SEVERITIES: dict[str, dict[str, str]] = {
    "ru": {severity.label: severity.title_ru for severity in Severity},
    "en": {severity.label: severity.label for severity in Severity},
}

_SHIFT: dict[str, dict[str, str]] = {
    "ru": {"open": "открыта", "expired": "открыта больше 24 ч", "closed": "закрыта", "unknown": "неизвестно"},
    "en": {"open": "open", "expired": "open over 24 h", "closed": "closed", "unknown": "unknown"},
}

_BLOCK_CAUSES: dict[str, dict[str, str]] = {
    "ru": {
        "ofd_backlog": "30 дней без передачи в ОФД",
        "fn_validity": "истекает срок ФН",
        "fn_memory": "исчерпана память ФН",
        "ofd_contract": "30 дней без ОФД после окончания оплаты",
        "shift_too_long": "смена 24 ч",
        "fn_not_fiscal": "касса не зарегистрирована в ФНС",
        "fn_refusal": "ФН отказывает",
        "no_data": "нет данных",
    },
    "en": {
        "ofd_backlog": "30 days without OFD transfer",
        "fn_validity": "ФН validity ends",
        "fn_memory": "ФН memory exhausted",
        "ofd_contract": "30 days without OFD after its payment ends",
        "shift_too_long": "24 h shift",
        "fn_not_fiscal": "not registered with the tax service",
        "fn_refusal": "ФН refuses",
        "no_data": "no data",
    },
}

_CONNECTIVITY: dict[str, dict[str, str]] = {
    "ru": {"online": "на связи", "offline": "агент не на связи", "unreachable": "касса не отвечает"},
    "en": {"online": "online", "offline": "agent offline", "unreachable": "register unreachable"},
}

_EVENTS: dict[str, dict[str, str]] = {
    "ru": {
        "shift_opened": "Смена открыта",
        "shift_closed": "Смена закрыта",
        "fn_replaced": "ФН заменён",
        "link_lost": "Связь с кассой потеряна",
        "link_restored": "Связь с кассой восстановлена",
        "link_regained": "Связь с кассой восстановлена",
        "ofd_backlog_started": "Появились непереданные документы",
        "ofd_backlog_cleared": "Все документы переданы в ОФД",
        "gap": "Пропуск данных агента",
        "fn_warning_raised": "ФН сообщил о проблеме",
        "fn_warning_cleared": "Предупреждение ФН снято",
        "outbox_gap": "Агент потерял часть данных (буфер переполнен)",
        "command_error": "Агент не выполнил команду",
        "action_result": "Ответ агента на удалённое действие",
        "agent_reinstalled": "Агент переустановлен",
    },
    "en": {
        "shift_opened": "Shift opened",
        "shift_closed": "Shift closed",
        "fn_replaced": "ФН replaced",
        "link_lost": "Link to register lost",
        "link_restored": "Link to register restored",
        "link_regained": "Link to register restored",
        "ofd_backlog_started": "Unsent documents appeared",
        "ofd_backlog_cleared": "All documents sent to the OFD",
        "gap": "Agent data gap",
        "fn_warning_raised": "ФН raised a warning",
        "fn_warning_cleared": "ФН warning cleared",
        "outbox_gap": "Agent dropped data (outbox full)",
        "command_error": "Agent could not run a command",
        "action_result": "Agent's answer to a remote action",
        "agent_reinstalled": "Agent reinstalled",
    },
}

_ALERT_ACTIONS: dict[str, dict[str, str]] = {
    "ru": {
        "raised": "поднят",
        "escalated": "повышена важность",
        "deescalated": "понижена важность",
        "cleared": "снят",
        "acknowledged": "подтверждён",
        "commented": "комментарий",
        "assigned": "назначен",
        "silenced": "уведомления отключены",
        "unsilenced": "уведомления снова включены",
    },
    "en": {
        "raised": "raised",
        "escalated": "escalated",
        "deescalated": "de-escalated",
        "cleared": "cleared",
        "acknowledged": "acknowledged",
        "commented": "comment",
        "assigned": "assigned",
        "silenced": "silenced",
        "unsilenced": "silence lifted",
    },
}


# The ФН's warning bits (``protocol.kkt.fn.FnWarning`` names), said so a shop manager knows what it means.
_FN_WARNINGS: dict[str, dict[str, str]] = {
    "ru": {
        "URGENT_REPLACEMENT": "ФН нужно заменить срочно: осталось 3 дня или меньше",
        "REPLACE_SOON": "ФН скоро закончится: осталось 30 дней или меньше",
        "MEMORY_ALMOST_FULL": "память ФН почти заполнена (90 %)",
        "OFD_TIMEOUT": "ОФД долго не подтверждает документы",
        "FLC_REJECTION": "ОФД отклонил данные чека (ошибка форматно-логического контроля)",
        "KKT_SETUP_REQUIRED": "ОФД просит перенастроить кассу",
        "OFD_ANNULLED": "ОФД аннулирован: нужен договор с другим ОФД",
        "CRITICAL_ERROR": "критическая ошибка ФН: обратитесь в сервисный центр",
    },
    "en": {
        "URGENT_REPLACEMENT": "replace the ФН now: 3 days or less left",
        "REPLACE_SOON": "the ФН ends within 30 days",
        "MEMORY_ALMOST_FULL": "ФН memory 90 % full",
        "OFD_TIMEOUT": "the OFD is slow to confirm documents",
        "FLC_REJECTION": "the OFD rejected receipt data (format check)",
        "KKT_SETUP_REQUIRED": "the OFD asks to reconfigure the register",
        "OFD_ANNULLED": "the OFD was annulled: a contract with another OFD is needed",
        "CRITICAL_ERROR": "ФН critical error: call the service centre",
    },
}

_PROTOCOLS: dict[str, dict[str, str]] = {
    "ru": {"shtrih": "Штрих-М", "atol": "АТОЛ"},
    "en": {"shtrih": "Shtrih-M", "atol": "ATOL"},
}


def _pick(table: Mapping[str, Mapping[str, str]], language: str) -> Mapping[str, str]:
    return table.get(language) or table[DEFAULT_LANGUAGE]


@dataclass(frozen=True, slots=True)
class Labels:
    """Label lookups for one language; templates call ``labels.rule("ofd_backlog")`` and so on."""

    language: str

    def rule(self, key: str | None) -> str:
        return self._lookup(_RULES, key)

    def severity(self, key: str | None) -> str:
        return self._lookup(_SEVERITIES, key)

    def shift(self, key: str | None) -> str:
        return self._lookup(_SHIFT, key or "unknown")

    def block_cause(self, key: str | None) -> str:
        return self._lookup(_BLOCK_CAUSES, key)

    def connectivity(self, key: str | None) -> str:
        return self._lookup(_CONNECTIVITY, key)

    def event(self, key: str | None) -> str:
        return self._lookup(_EVENTS, key)

    def alert_action(self, key: str | None) -> str:
        return self._lookup(_ALERT_ACTIONS, key)

    def fn_warning(self, key: str | None) -> str:
        return self._lookup(_FN_WARNINGS, key)

    def protocol(self, key: str | None) -> str:
        return self._lookup(_PROTOCOLS, key)

    def rules(self) -> Mapping[str, str]:
        return _pick(_RULES, self.language)

    def severities(self) -> Mapping[str, str]:
        return _pick(_SEVERITIES, self.language)

    def _lookup(self, table: Mapping[str, Mapping[str, str]], key: str | None) -> str:
        if key is None:
            return "—"
        return _pick(table, self.language).get(key, key)


def labels(language: str = DEFAULT_LANGUAGE) -> Labels:
    """Labels for ``language``; an unsupported language gets Russian."""
    return Labels(language if language in _RULES else DEFAULT_LANGUAGE)
