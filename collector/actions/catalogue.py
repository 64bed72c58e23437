"""What each remote action is, in the words a manager reads, and whether the register's stored
state allows it. The agent checks again on the register itself (the stored state may be minutes
old); these checks only spare a command that is certain to be refused."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from protocol.kkt.state import RegisterState, ShiftStatus
from protocol.mqtt.actions import ActionName

OPEN_SHIFT_STATES: Final = frozenset({ShiftStatus.OPEN, ShiftStatus.EXPIRED})


@dataclass(frozen=True, slots=True)
class ActionInfo:
    name: ActionName
    title: str  # the button
    consequence: str  # the confirmation's «what will happen», before the shift number is known


ACTIONS: Final[dict[ActionName, ActionInfo]] = {
    ActionName.CHECK_NOW: ActionInfo(
        ActionName.CHECK_NOW, "Проверить сейчас",
        "Агент сразу опросит кассу и проверит связь с ОФД. Касса ничего не печатает.",
    ),
    ActionName.X_REPORT: ActionInfo(
        ActionName.X_REPORT, "Снять X-отчёт",
        "Касса напечатает X-отчёт (без гашения): смена останется открытой.",
    ),
    ActionName.CLOSE_SHIFT: ActionInfo(
        ActionName.CLOSE_SHIFT, "Закрыть смену (Z-отчёт)",
        "Будет снят Z-отчёт: смена закроется, касса напечатает отчёт. Продажи до открытия новой смены невозможны.",
    ),
    ActionName.OPEN_SHIFT: ActionInfo(
        ActionName.OPEN_SHIFT, "Открыть смену",
        "Касса откроет новую смену и напечатает отчёт об открытии.",
    ),
    ActionName.SET_DATETIME: ActionInfo(
        ActionName.SET_DATETIME, "Установить дату и время",
        "Часы кассы будут выставлены по часам компьютера, на котором работает агент. Только при закрытой смене.",
    ),
    ActionName.REBOOT: ActionInfo(
        ActionName.REBOOT, "Перезагрузить кассу",
        "Касса перезагрузится (только АТОЛ); около минуты она не будет отвечать.",
    ),
}


def consequence(action: ActionName, state: RegisterState | None) -> str:
    """The confirmation text, naming the shift where it is known."""
    number = state.shift.number if state is not None else None
    if action is ActionName.CLOSE_SHIFT and number is not None:
        return (f"Будет снят Z-отчёт: смена № {number} закроется, касса напечатает отчёт. "
                "Продажи до открытия новой смены невозможны.")
    return ACTIONS[action].consequence


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why the collector will not send an action; ``ru`` for the pages, ``message`` for the API."""

    message: str
    ru: str


def precondition(action: ActionName, state: RegisterState | None, protocol: str) -> Refusal | None:
    """None when the action may be sent given the stored state (an unknown shift state is left to the agent)."""
    if action is ActionName.REBOOT and protocol != "atol":
        return Refusal("reboot exists only on ATOL registers", "Перезагрузка доступна только на кассах АТОЛ.")
    shift = state.shift.status if state is not None else ShiftStatus.UNKNOWN
    if shift is ShiftStatus.UNKNOWN:
        return None
    if action is ActionName.CLOSE_SHIFT and shift is ShiftStatus.CLOSED:
        return Refusal("the shift is already closed: there is nothing to close",
                       "Смена на кассе уже закрыта — закрывать нечего.")
    if action is ActionName.OPEN_SHIFT and shift in OPEN_SHIFT_STATES:
        return Refusal("a shift is already open", "Смена на кассе уже открыта.")
    if action is ActionName.SET_DATETIME and shift in OPEN_SHIFT_STATES:
        return Refusal("the register's date and time can only be set with the shift closed: close the shift first",
                       "Дату и время кассы можно менять только при закрытой смене: сначала закройте смену.")
    return None


def available(state: RegisterState | None, protocol: str) -> list[ActionName]:
    """The actions the register's stored state allows, in the catalogue's order."""
    return [name for name in ACTIONS if precondition(name, state, protocol) is None]
