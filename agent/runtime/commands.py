"""Commands the collector sends on ``cmd`` (rebirth, poll-now, the remote actions), handled on
their own thread: paho's network thread only queues them, so a command may publish. (The CLI's
subcommands are ``agent.commands``.)"""

from __future__ import annotations

import logging
import queue

from agent.runtime.actions import ActionRunner
from agent.runtime.host import RuntimeHost
from protocol.mqtt.actions import ActionName
from protocol.mqtt.errors import ContractError
from protocol.mqtt.rules import EventKind
from protocol.mqtt.topics import cmd_topic
from protocol.mqtt.wire import CommandPayload, decode

log = logging.getLogger(__name__)
_ACTION_NAMES = frozenset(ActionName)


class CommandHandler:
    def __init__(self, host: RuntimeHost, actions: ActionRunner) -> None:
        self.host = host
        self.actions = actions
        self.topic = cmd_topic(host.config.agent_id)
        self.stopping = host.stopping
        self._commands: queue.Queue[bytes] = queue.Queue()

    def put(self, raw: bytes) -> None:
        """Cheap: called on paho's network thread."""
        self._commands.put(raw)

    def stop(self) -> None:
        """Wake the loop so it sees ``stopping`` (set it first)."""
        self._commands.put(b"")

    def run(self) -> None:
        self.actions.recover_interrupted()
        while not self.stopping.is_set():
            raw = self._commands.get()
            if self.stopping.is_set():
                return
            try:
                self.handle_command(self.topic, raw)
            except Exception:
                log.exception("command handling failed")

    def handle_command(self, topic: str, raw: bytes) -> None:
        try:
            command = decode(topic, raw)
        except ContractError as exc:
            log.warning("malformed command: %s", exc)
            self.host.emit_event(
                None,
                EventKind.COMMAND_ERROR,
                f"Некорректная команда: {exc}",
                {"reason": exc.reason, "error": str(exc)},
            )
            return
        if not isinstance(command, CommandPayload):
            return
        log.info("command %s (%s)", command.cmd, command.id, extra={"command": command.cmd})
        if command.cmd == "rebirth":
            self.host.publish_birth()
        elif command.cmd == "poll-now":
            for worker in self.host.workers:
                worker.request_poll()
        elif command.cmd in _ACTION_NAMES:
            self.actions.handle(command, ActionName(command.cmd))
        else:
            self.host.emit_event(
                None,
                EventKind.COMMAND_ERROR,
                f"Неизвестная команда: {command.cmd}",
                {"id": command.id, "cmd": command.cmd, "reason": "unknown_command"},
            )
