"""The alert vocabulary shared by rules, time to block and the lifecycle: severities and rule ids."""

from __future__ import annotations

from enum import IntEnum, StrEnum


class Severity(IntEnum):
    """Ordered so that ``max()`` and ``<`` work; ``BLOCKED`` = the register already cannot make fiscal
    documents (or a deadline that blocks it has passed)."""

    INFO = 1
    WARNING = 2
    MAJOR = 3
    CRITICAL = 4
    BLOCKED = 5

    @property
    def label(self) -> str:
        """Stable lowercase id for storage, JSON and URLs (``"major"``)."""
        return self.name.lower()

    @property
    def title_ru(self) -> str:
        return _TITLES_RU[self]

    @classmethod
    def parse(cls, text: str) -> Severity:
        """``"major"``/``"MAJOR"`` → ``Severity.MAJOR``; unknown text raises ``ValueError`` naming it."""
        found = _PARSED.get(text)  # every stored alert and rule ladder parses a label: remembered
        if found is not None:
            return found
        try:
            found = cls[text.strip().upper()]
        except KeyError:
            known = ", ".join(s.label for s in cls)
            raise ValueError(f"unknown severity {text!r}; expected one of: {known}") from None
        if len(_PARSED) < _PARSED_LIMIT:  # the labels in use are a handful; odd spellings are not kept
            _PARSED[text] = found
        return found


_PARSED: dict[str, Severity] = {}
_PARSED_LIMIT = 64


_TITLES_RU: dict[Severity, str] = {
    Severity.INFO: "информация",
    Severity.WARNING: "предупреждение",
    Severity.MAJOR: "важно",
    Severity.CRITICAL: "критично",
    Severity.BLOCKED: "заблокирована",
}


class RuleId(StrEnum):
    """Stable ids of the alert catalogue (DESIGN §5); the storage keys one alert per (register, rule)."""

    AGENT_OFFLINE = "agent_offline"
    REGISTER_UNREACHABLE = "register_unreachable"
    OFD_BACKLOG = "ofd_backlog"
    FN_VALIDITY = "fn_validity"
    FN_MEMORY = "fn_memory"
    FN_CRITICAL = "fn_critical"
    FN_NOT_FISCAL = "fn_not_fiscal"
    SHIFT_TOO_LONG = "shift_too_long"
    OFD_CONTRACT = "ofd_contract"
    PAPER_OUT = "paper_out"
    COVER_OPEN = "cover_open"
    CLOCK_SKEW = "clock_skew"
    AGENT_CLOCK = "agent_clock"
    KEP_VALIDITY = "kep_validity"
