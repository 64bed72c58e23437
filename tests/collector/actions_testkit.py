"""Helpers of the remote-action tests (loaded by path: pytest runs with --import-mode=importlib).

* ``serve_register`` — a register served by an agent, with a stored state whose shift has been
  open for a given time (what the rights, preconditions and bulk tests start from);
* ``StandInAgent`` — a test-only agent over a real MQTT broker: it reports one register's state,
  takes commands on its ``cmd`` topic and answers each with ``action_result`` events on the
  ordinary event topic, as the contract (``protocol.mqtt.actions``) says a real agent does. A Z-report
  also closes the shift in the state it reports next. The collector's own MQTT tests use it for
  answers a real agent gives only in particular conditions (silence, a scripted refusal); the whole
  chain with the real agent and the simulator is ``tests/e2e/test_remote_actions_collector.py``.
"""

from __future__ import annotations

import itertools
import json
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from collector.storage import repository as repo
from collector.storage.schema import agents, register_state, registers
from protocol.kkt.state import RegisterState, ShiftState, ShiftStatus
from protocol.mqtt.actions import ActionName, ActionStatus
from protocol.mqtt.models import ActionResult, CommandPayload, EventKind, EventPayload, StatePayload, encode
from protocol.mqtt.topics import cmd_topic, event_topic, state_topic

sys.path.insert(0, str(Path(__file__).parent))
import ingest_testkit


def state_with_shift(now: datetime, status: ShiftStatus, open_for: timedelta = timedelta(hours=2),
                     number: int = 7, serial: str = "0001", zone: tzinfo = UTC) -> RegisterState:
    """A register state read at ``now`` (the register clock: wall time in ``zone``) with the shift as given."""
    clock = now.astimezone(zone).replace(tzinfo=None)
    base = ingest_testkit.register_state(serial, clock=clock, read_at=now)
    opened = clock - open_for if status in (ShiftStatus.OPEN, ShiftStatus.EXPIRED) else None
    return base.model_copy(update={"shift": ShiftState(status=status, number=number, receipts=3, opened_at=opened)})


def serve_register(
    conn: sa.Connection, tenant_id: int, register_id: str, agent_id: str, now: datetime, *,
    shift: ShiftStatus = ShiftStatus.OPEN, open_for: timedelta = timedelta(hours=2), protocol: str = "shtrih",
    clock_offset: float | None = None,
) -> None:
    """Attach ``agent_id`` (enrolled if new) to the existing register and store its state."""
    node_id = conn.execute(sa.select(registers.c.node_id).where(registers.c.register_id == register_id)).scalar_one()
    if conn.execute(sa.select(agents.c.agent_id).where(agents.c.agent_id == agent_id)).first() is None:
        repo.enroll_agent(conn, agent_id, tenant_id=tenant_id, node_id=node_id, enrolled_at=now)
    if clock_offset is not None:
        conn.execute(sa.update(agents).where(agents.c.agent_id == agent_id).values(clock_offset=clock_offset))
    conn.execute(sa.update(registers).where(registers.c.register_id == register_id)
                 .values(agent_id=agent_id, protocol=protocol, serial=register_id[-6:]))
    state = state_with_shift(now, shift, open_for)
    conn.execute(sa.delete(register_state).where(register_state.c.register_id == register_id))
    conn.execute(sa.insert(register_state).values(
        register_id=register_id, agent_id=agent_id, session=1, seq=1, agent_ts=now, received_at=now,
        state=json.loads(state.model_dump_json()), shift_status=shift.value,
    ))  # fmt: skip


@dataclass
class StandInAgent:
    """A test-only agent for one register on a real broker (see the module docstring).

    ``answers``: the statuses it reports for every command, in order (default accepted, done);
    ``silent``: take commands and never answer (for expiry); ``delay``: seconds before carrying one
    out (so a page can show it in progress); ``zone``: the register clock's time zone.
    """

    broker_host: str
    broker_port: int
    agent_id: str
    register_id: str
    answers: tuple[ActionStatus, ...] = ("accepted", "done")
    silent: bool = False
    shift_open_for: timedelta = timedelta(hours=30)
    delay: float = 0.0
    zone: tzinfo = UTC
    commands: list[CommandPayload] = field(default_factory=list)
    _seq: Any = field(default_factory=lambda: itertools.count(0))
    _shift: ShiftStatus = ShiftStatus.OPEN

    def start(self) -> None:
        import paho.mqtt.client as mqtt

        self._connected = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"stand-in-{self.agent_id}")
        self.client.on_connect = lambda c, *_: (c.subscribe(cmd_topic(self.agent_id), qos=1), self._connected.set())
        self.client.on_message = self._on_command
        self.client.connect(self.broker_host, self.broker_port)
        self.client.loop_start()
        if not self._connected.wait(10):
            raise RuntimeError("the stand-in agent could not connect to the broker")
        self.report_state()

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()

    def _publish(self, topic: str, payload: bytes) -> None:
        self.client.publish(topic, payload, qos=1).wait_for_publish(5)

    def report_state(self) -> None:
        now = datetime.now(UTC)
        state = state_with_shift(now, self._shift, self.shift_open_for, serial=self.register_id[-6:], zone=self.zone)
        self._publish(state_topic(self.agent_id, self.register_id), encode(StatePayload(
            agent=self.agent_id, session=1, seq=next(self._seq), ts=now, register=self.register_id,
            reason="change", state=state,
        )))  # fmt: skip

    def _answer(self, command: CommandPayload, status: ActionStatus) -> None:
        result = ActionResult(id=command.id, action=ActionName(command.cmd), status=status,
                              meaning=None if status in ("accepted", "done") else "Отказ по тесту",
                              reason=None if status in ("accepted", "done") else "policy")
        self._publish(event_topic(self.agent_id, self.register_id), encode(EventPayload(
            agent=self.agent_id, session=1, seq=next(self._seq), ts=datetime.now(UTC), register=self.register_id,
            kind=EventKind.ACTION_RESULT, message=f"{command.cmd}: {status}", data=result.model_dump(mode="json"),
        )))  # fmt: skip

    def _on_command(self, client: Any, userdata: Any, message: Any) -> None:
        command = CommandPayload.model_validate_json(message.payload)
        self.commands.append(command)
        if self.silent or command.register != self.register_id:
            return
        # Answered on a thread of its own: paho's callback thread must stay free to deliver our acks.
        threading.Thread(target=self._carry_out, args=(command,), daemon=True).start()

    def _carry_out(self, command: CommandPayload) -> None:
        time.sleep(self.delay)
        for status in self.answers:
            if status == "done" and command.cmd == ActionName.CLOSE_SHIFT:
                self._shift = ShiftStatus.CLOSED
                self.report_state()
            self._answer(command, status)
