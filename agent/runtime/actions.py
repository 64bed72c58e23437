"""Remote actions from the collector (``protocol.mqtt.actions``): decided on the command thread,
carried out on the device worker's thread, answered as ``action_result`` events.

Before anything touches a register, in this order: a command id already in the outbox's ledger is
answered with its stored result and never run again; the local policy (``[actions]`` in the agent
config) may refuse it; the register must be one of this agent's; a command without a deadline or
past it is not run. What passes is recorded in the ledger (committed) *before* it is handed to the
worker, answered ``accepted``, and re-checked against its deadline when the worker reaches it.
After the action the worker polls at once, so the state the collector sees reflects it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Final

from agent.drivers.actions import ActionOutcome, OutcomeKind
from agent.outbox import ActionRecord, Outbox
from agent.runtime.host import DeviceAccess, Pollable, RuntimeHost
from protocol.mqtt.actions import ActionName, ActionStatus
from protocol.mqtt.rules import EventKind
from protocol.mqtt.wire import ActionResult, CommandPayload, decode_as, encode, to_builtins

log = logging.getLogger(__name__)

LEDGER_KEEP: Final = timedelta(days=7)
MEANING_LIMIT: Final = 500  # ActionResult.meaning

ACTION_LABELS: Final[dict[ActionName, str]] = {
    ActionName.CLOSE_SHIFT: "Закрытие смены (Z-отчёт)",
    ActionName.X_REPORT: "X-отчёт",
    ActionName.OPEN_SHIFT: "Открытие смены",
    ActionName.SET_DATETIME: "Установка даты и времени",
    ActionName.CHECK_NOW: "Проверка сейчас",
    ActionName.REBOOT: "Перезагрузка ККТ",
}
_STATUS_TEXT: Final[dict[str, str]] = {
    "accepted": "принято агентом",
    "done": "выполнено",
    "failed": "не выполнено",
    "refused": "отклонено агентом",
    "expired": "срок истёк, не выполнялось",
}
_LINK_LOST = "связь с ККТ прервалась во время действия; выполнено ли оно, покажет состояние кассы"
_NO_ANSWER = "ККТ не отвечает"
_INTERRUPTED = "агент остановился во время действия; выполнено ли оно, покажет состояние кассы"


class ActionRunner:
    def __init__(self, host: RuntimeHost, outbox: Outbox) -> None:
        self.host = host
        self.outbox = outbox

    # ------------------------------------------------------------------ command thread

    def recover_interrupted(self) -> None:
        """Actions a previous run started and never finished are answered ``failed``, never rerun."""
        for record in self.outbox.unfinished_actions():
            started = decode_as(ActionResult, record.result.encode())
            self._finish(record.register_id, _result(started.id, started.action, "failed", reason="interrupted",
                                                     meaning=_INTERRUPTED))  # fmt: skip

    def handle(self, command: CommandPayload, action: ActionName) -> None:
        now = self.host.now()
        verdict = self._verdict(command, action, now)
        first = verdict or _result(command.id, action, "accepted")
        record = ActionRecord(
            command.id, action, command.register, encode(first).decode(), final=verdict is not None, received_at=now
        )
        known = self.outbox.claim_action(record, keep=LEDGER_KEEP)
        if known is not None:
            log.info("action %s (%s) was delivered again: answering its first outcome", action, command.id)
            self._emit(known.register_id, decode_as(ActionResult, known.result.encode()))
            return
        self._emit(command.register, first)
        if verdict is None:
            worker = self._worker(command.register)
            assert worker is not None  # _verdict refuses unknown registers
            worker.submit(lambda device: self._execute(device, command, action))

    def _verdict(self, command: CommandPayload, action: ActionName, now: datetime) -> ActionResult | None:
        """The answer when the action must not run, or None to run it."""
        policy = self.host.config.actions
        if not policy.enabled:
            return _result(command.id, action, "refused", reason="policy", meaning=(
                "Удалённые действия отключены на компьютере кассы: в конфигурации агента "
                "[actions] enabled = false (или KASSA_AGENT_ACTIONS_ENABLED)"))  # fmt: skip
        if not policy.allows(action):
            return _result(command.id, action, "refused", reason="policy", meaning=(
                f"Действие «{ACTION_LABELS[action]}» не разрешено на компьютере кассы: добавьте \"{action}\" "
                "в [actions] allow конфигурации агента (или в KASSA_AGENT_ACTIONS_ALLOW)"))  # fmt: skip
        if self._worker(command.register) is None:
            return _result(command.id, action, "refused", reason="unknown_register",
                           meaning=f"Касса «{command.register}» не подключена к этому агенту")  # fmt: skip
        if command.deadline is None:
            return _result(command.id, action, "refused", reason="deadline_missing",
                           meaning="Команда без срока действия не выполняется")  # fmt: skip
        if now > command.deadline:
            return _expired(command, action)
        return None

    def _worker(self, register: str | None) -> Pollable | None:
        workers: Sequence[Pollable] = self.host.workers
        return next((w for w in workers if register is not None and w.register_id == register), None)

    # ------------------------------------------------------------------ device worker thread

    def _execute(self, device: DeviceAccess, command: CommandPayload, action: ActionName) -> None:
        now = self.host.now()
        if command.deadline is not None and now > command.deadline:  # it waited behind a slow poll
            self._finish(command.register, _expired(command, action))
            return
        if action is ActionName.CHECK_NOW:
            error = device.poll_now()
            outcome = ActionOutcome(OutcomeKind.LINK_LOST, meaning=error) if error else ActionOutcome(OutcomeKind.DONE)
            self._finish(command.register, _from_outcome(command.id, action, outcome))
            return
        log.info("running action %s (%s) on %s", action, command.id, command.register)
        outcome = device.perform(action, now.astimezone().replace(tzinfo=None))  # registers keep local time
        self._finish(command.register, _from_outcome(command.id, action, outcome))
        device.poll_now()  # the state after the action (or after the link came back)

    def _finish(self, register: str | None, result: ActionResult) -> None:
        self.outbox.finish_action(result.id, encode(result).decode())
        self._emit(register, result)

    def _emit(self, register: str | None, result: ActionResult) -> None:
        text = f"{ACTION_LABELS[result.action]}: {_STATUS_TEXT[result.status]}"
        if result.meaning and result.status != "accepted":
            text += f" — {result.meaning}"
        # A register that is not this agent's is answered on the agent's own event topic, so no
        # result ever appears under a register id the agent does not report.
        ours = register if self._worker(register) is not None else None
        self.host.emit_event(ours, EventKind.ACTION_RESULT, text, to_builtins(result))


def _result(
    command_id: str,
    action: ActionName,
    status: ActionStatus,
    *,
    reason: str | None = None,
    code: int | None = None,
    meaning: str | None = None,
) -> ActionResult:
    if meaning is not None and len(meaning) > MEANING_LIMIT:
        meaning = meaning[: MEANING_LIMIT - 1] + "…"
    return ActionResult(id=command_id, action=action, status=status, reason=reason, code=code, meaning=meaning)


def _expired(command: CommandPayload, action: ActionName) -> ActionResult:
    deadline = command.deadline.isoformat() if command.deadline else "?"
    return _result(command.id, action, "expired", reason="deadline_passed",
                   meaning=f"Команда дошла до агента после срока ({deadline}) и не выполнялась")  # fmt: skip


def _from_outcome(command_id: str, action: ActionName, outcome: ActionOutcome) -> ActionResult:
    if outcome.kind is OutcomeKind.DONE:
        return _result(command_id, action, "done")
    meaning = outcome.meaning
    if outcome.kind is OutcomeKind.LINK_LOST:
        # A poll changes nothing on the register: only an action leaves its outcome in doubt.
        lead = _NO_ANSWER if action is ActionName.CHECK_NOW else _LINK_LOST
        meaning = f"{lead} ({outcome.meaning})" if outcome.meaning else lead
    return _result(command_id, action, "failed", reason=str(outcome.kind), code=outcome.code, meaning=meaning)
