"""Remote actions end to end: a command on the agent's ``cmd`` topic (real Mosquitto) → the agent
runtime → the real driver → the simulated register over ``sim://``, and the ``action_result``
events and states that come back — on every protocol and link layer, with expiry, duplicate
delivery, the local policy, a register in the wrong shift state and a link that drops mid-action.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from agent.config import load_config
from agent.outbox import ActionRecord, Outbox
from agent.runtime import AgentRuntime
from firmware_sim.action_faults import SimAction
from firmware_sim.clock import ManualClock
from firmware_sim.devices import make_device
from firmware_sim.hosts import SimRegistration, install_sim_url_handler, register_sim, unregister_sim
from firmware_sim.model import RegisterModel
from protocol.kkt.state import ShiftStatus
from protocol.mqtt.actions import FINAL_STATUSES, ActionName
from protocol.mqtt.models import (
    ActionResult,
    CommandPayload,
    EventKind,
    EventPayload,
    HistBatch,
    StatePayload,
    decode,
    encode,
)
from protocol.mqtt.topics import TOPIC_ROOT, cmd_topic

pytestmark = [pytest.mark.mosquitto, pytest.mark.slow]

AGENT = "store-act"
REGISTER = "kkt-1"
EVERY_ACTION = [str(action) for action in ActionName]


@dataclass
class Rig:
    model: RegisterModel
    device: Any
    recorder: Any
    agent: AgentRuntime
    protocol: str
    registration: SimRegistration

    def send(self, action: str, *, command_id: str | None = None, deadline: datetime | None = None,
             register: str | None = REGISTER) -> str:  # fmt: skip
        command_id = command_id or f"cmd-{uuid.uuid4().hex[:10]}"
        deadline = deadline or datetime.now(UTC) + timedelta(minutes=2)
        payload = CommandPayload(id=command_id, cmd=action, register=register, deadline=deadline)
        self.recorder.publish(cmd_topic(AGENT), encode(payload))
        return command_id

    def results(self, command_id: str) -> list[ActionResult]:
        return [ActionResult.model_validate(e.data) for e in self.events(EventKind.ACTION_RESULT)
                if e.data.get("id") == command_id]  # fmt: skip

    def events(self, kind: EventKind) -> list[EventPayload]:
        return [p for p in self._payloads() if isinstance(p, EventPayload) and p.kind == kind]

    def states(self) -> list[StatePayload]:
        return [p for p in self._payloads() if isinstance(p, StatePayload)]

    def final(self, command_id: str, timeout: float = 30.0, count: int = 1) -> ActionResult:
        """The final result, once ``count`` final answers to ``command_id`` have arrived."""
        self.recorder.wait_for(
            lambda _: sum(r.status in FINAL_STATUSES for r in self.results(command_id)) >= count, timeout
        )
        return [r for r in self.results(command_id) if r.status in FINAL_STATUSES][-1]

    def seq_of(self, command_id: str, status: str) -> int:
        return next(e.seq for e in self.events(EventKind.ACTION_RESULT)
                    if e.data.get("id") == command_id and e.data["status"] == status)  # fmt: skip

    def _payloads(self) -> list[Any]:
        """States and events, live or replayed on ``hist`` (what was recorded before a connect)."""
        out = []
        for message in list(self.recorder.messages):
            if "/event/" in message.topic or "/state/" in message.topic:
                out.append(decode(message.topic, message.payload))
            elif message.topic.endswith("/hist"):
                batch = decode(message.topic, message.payload)
                assert isinstance(batch, HistBatch)
                out.extend(record.payload for record in batch.records)
        return out


@pytest.fixture
def make_rig(mqtt_broker: Any, mqtt_recorder: Callable[..., Any], tmp_path: Path) -> Iterator[Callable[..., Rig]]:
    made: list[tuple[AgentRuntime, str]] = []
    install_sim_url_handler()

    def make(protocol: str = "shtrih", *, actions: dict[str, Any] | None = None,
             model: RegisterModel | None = None, outbox: Path | None = None,
             register_passwords: dict[str, int] | None = None, device_settings: dict[str, Any] | None = None,
             **extra: Any) -> Rig:  # fmt: skip
        """``register_passwords`` set the simulated register's own (attribute → value) before the
        agent starts; ``device_settings`` go into the agent's ``[[devices]]`` table."""
        model = model or RegisterModel(clock=ManualClock(datetime.now().replace(microsecond=0)))
        device = make_device(protocol, model)
        for attribute, value in (register_passwords or {}).items():
            setattr(device, attribute, value)
        name = f"act-{uuid.uuid4().hex[:8]}"
        registration = register_sim(name, device)
        recorder = mqtt_recorder([f"{TOPIC_ROOT}/{AGENT}/#"], client_id=f"rec-{name}")
        config = load_config(None, env={}, overrides={
            "agent_id": AGENT,
            "heartbeat": 5,
            "broker": {"url": mqtt_broker.url, "keepalive": 5, "reconnect_min": 0.05, "reconnect_max": 0.3},
            "outbox": {"path": str(outbox or tmp_path / f"{name}.sqlite"), "commit_interval": 0.02},
            "devices": [{"protocol": protocol, "url": f"sim://{name}", "poll_interval": 0.3, "register_id": REGISTER,
                         **(device_settings or {})}],
            **({"actions": actions} if actions is not None else {}),
            **extra,
        })  # fmt: skip
        agent = AgentRuntime(config)
        agent.start()
        made.append((agent, name))
        rig = Rig(model, device, recorder, agent, protocol, registration)
        recorder.wait_for(lambda _: rig.states(), 15)  # the register is polled: commands find it known
        return rig

    yield make
    for agent, name in made:
        agent.stop(timeout=2)
        unregister_sim(name)


def _shift_open(model: RegisterModel) -> None:
    model.open_shift()
    model.sell()


@pytest.mark.parametrize("protocol", ["shtrih", "shtrih-alt", "atol", "atol2"])
def test_every_action_runs_once_and_is_answered_accepted_then_final(make_rig: Callable[..., Rig], protocol: str) -> None:
    rig = make_rig(protocol, actions={"allow": EVERY_ACTION})
    model = rig.model
    _shift_open(model)

    check = rig.send("check_now")
    assert rig.final(check).status == "done"
    assert [r.status for r in rig.results(check)] == ["accepted", "done"]
    accepted_at, done_at = rig.seq_of(check, "accepted"), rig.seq_of(check, "done")
    assert any(accepted_at < s.seq < done_at for s in rig.states())  # the fresh state goes out first

    x_report = rig.send("x_report")
    assert rig.final(x_report).status == "done"
    assert model.x_reports == 1 and model.shift_open

    fd_before = model.last_fd_number
    close = rig.send("close_shift")
    assert rig.final(close).status == "done"
    assert not model.shift_open and model.last_fd_number == fd_before + 1
    rig.recorder.wait_for(lambda _: any(
        s.seq > rig.seq_of(close, "done") and s.state.shift.status is ShiftStatus.CLOSED for s in rig.states()
    ))  # fmt: skip — the re-poll after the action shows the closed shift

    model.clock.set(datetime(2026, 1, 1, 12, 0, 0))  # type: ignore[attr-defined]  # a register clock far off
    set_clock = rig.send("set_datetime")
    assert rig.final(set_clock).status == "done"
    assert abs((model.now() - datetime.now()).total_seconds()) < 5  # the agent host's local time

    shift_number = model.shift_number
    reopen = rig.send("open_shift")
    assert rig.final(reopen).status == "done"
    assert model.shift_open and model.shift_number == shift_number + 1

    reboot = rig.send("reboot")
    result = rig.final(reboot)
    if protocol.startswith("atol"):
        assert result.status == "done" and rig.device.reboots == 1
    else:
        assert (result.status, result.reason) == ("failed", "unsupported") and result.meaning


def test_a_command_past_its_deadline_is_expired_and_never_touches_the_register(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig("atol", actions={"allow": EVERY_ACTION})
    _shift_open(rig.model)
    fd = rig.model.last_fd_number

    late = rig.send("close_shift", deadline=datetime.now(UTC) - timedelta(seconds=1))

    result = rig.final(late)
    assert (result.status, result.reason) == ("expired", "deadline_passed")
    assert [r.status for r in rig.results(late)] == ["expired"]  # never accepted
    assert rig.model.shift_open and rig.model.last_fd_number == fd


def test_the_same_command_delivered_twice_runs_once_and_both_are_answered(
    make_rig: Callable[..., Rig], tmp_path: Path
) -> None:
    outbox = tmp_path / "dup.sqlite"
    rig = make_rig("shtrih", actions={"allow": EVERY_ACTION}, outbox=outbox)
    _shift_open(rig.model)
    fd = rig.model.last_fd_number

    command_id = rig.send("close_shift")
    first = rig.final(command_id)
    rig.send("close_shift", command_id=command_id)
    second = rig.final(command_id, count=2)

    assert first == second and first.status == "done"
    assert rig.model.last_fd_number == fd + 1  # one Z-report

    # A replay after the agent restarts (same outbox) still finds the id: answered, not run.
    rig.agent.stop(timeout=2)
    rig.model.open_shift()
    again = make_rig("shtrih", actions={"allow": EVERY_ACTION}, model=rig.model, outbox=outbox)
    again.send("close_shift", command_id=command_id)
    assert again.final(command_id) == first
    assert rig.model.shift_open and rig.model.last_fd_number == fd + 2  # only the shift opened above


def test_a_repeat_arriving_while_the_first_runs_is_answered_and_not_run(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig("atol", actions={"allow": EVERY_ACTION})
    _shift_open(rig.model)
    fd = rig.model.last_fd_number

    command_id = rig.send("close_shift")
    rig.send("close_shift", command_id=command_id)  # back to back: the broker delivered it twice

    assert rig.final(command_id).status == "done"
    rig.recorder.wait_for(lambda _: len(rig.results(command_id)) >= 3)  # accepted, the repeat's answer, done
    assert {r.status for r in rig.results(command_id)} == {"accepted", "done"}
    assert rig.model.last_fd_number == fd + 1


def test_the_local_policy_refuses_with_the_setting_to_change(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig("shtrih")  # no [actions]: only the read-only ones
    _shift_open(rig.model)

    close = rig.send("close_shift")
    refused = rig.final(close)
    assert (refused.status, refused.reason) == ("refused", "policy")
    assert refused.meaning and '"close_shift"' in refused.meaning and "[actions] allow" in refused.meaning
    assert rig.model.shift_open

    x_report = rig.send("x_report")  # read-only: allowed by default
    assert rig.final(x_report).status == "done"


def test_remote_actions_switched_off_refuse_even_check_now(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig("atol", actions={"enabled": False})

    refused = rig.final(rig.send("check_now"))

    assert (refused.status, refused.reason) == ("refused", "policy")
    assert refused.meaning and "enabled = false" in refused.meaning


def test_check_now_on_a_register_that_does_not_answer_fails(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig("shtrih")
    rig.registration.unplug()

    result = rig.final(rig.send("check_now"))

    assert (result.status, result.reason) == ("failed", "link_lost")
    assert result.meaning and result.meaning.startswith("ККТ не отвечает")


def test_an_unknown_register_is_refused(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig("shtrih", actions={"allow": EVERY_ACTION})

    command_id = rig.send("x_report", register="kkt-elsewhere")
    refused = rig.final(command_id)

    assert (refused.status, refused.reason) == ("refused", "unknown_register")
    assert rig.model.x_reports == 0
    answer = next(e for e in rig.events(EventKind.ACTION_RESULT) if e.data["id"] == command_id)
    assert answer.register is None  # on the agent's topic, not under a register it does not report


@pytest.mark.parametrize("protocol", ["shtrih", "atol"])
def test_actions_in_the_wrong_shift_state_fail_with_the_register_code(
    make_rig: Callable[..., Rig], protocol: str
) -> None:
    rig = make_rig(protocol, actions={"allow": EVERY_ACTION})
    _shift_open(rig.model)
    clock_before, shift = rig.model.now(), rig.model.shift_number

    set_clock = rig.final(rig.send("set_datetime"))
    reopen = rig.final(rig.send("open_shift"))

    for result in (set_clock, reopen):
        assert (result.status, result.reason) == ("failed", "wrong_shift_state")
        assert result.code is not None and result.meaning
    assert rig.model.now() == clock_before and rig.model.shift_number == shift


# A store that changed its register's passwords: the simulated register's, and the agent's settings.
CHANGED_PASSWORDS = {
    "shtrih": ({"admin_password": 2929, "sysadmin_password": 3030}, {"access_password": 3030}),
    "atol": ({"access_password": 42, "mode_password": 2929}, {"access_password": 42}),
}


@pytest.mark.parametrize("protocol", ["shtrih", "atol"])
def test_actions_run_with_the_passwords_from_the_agent_config_and_a_wrong_one_fails_with_its_code(
    make_rig: Callable[..., Rig], protocol: str
) -> None:
    register, settings = CHANGED_PASSWORDS[protocol]
    wrong = make_rig(protocol, actions={"allow": EVERY_ACTION}, register_passwords=register,
                     device_settings={**settings, "action_password": 1234})  # fmt: skip
    _shift_open(wrong.model)

    refused = wrong.final(wrong.send("close_shift"))

    assert refused.status == "failed" and refused.code == (140 if protocol == "atol" else 0x4F)
    assert refused.meaning and "action_password" in refused.meaning
    assert wrong.model.shift_open
    wrong.agent.stop(timeout=2)

    right = make_rig(protocol, actions={"allow": EVERY_ACTION}, register_passwords=register,
                     device_settings={**settings, "action_password": 2929})  # fmt: skip
    _shift_open(right.model)
    assert right.final(right.send("close_shift")).status == "done"
    assert not right.model.shift_open


@pytest.mark.parametrize("protocol", ["shtrih", "atol"])
def test_a_link_lost_mid_action_fails_and_the_register_is_polled_again(
    make_rig: Callable[..., Rig], protocol: str
) -> None:
    rig = make_rig(protocol, actions={"allow": EVERY_ACTION})
    _shift_open(rig.model)
    rig.device.action_faults.drop_link_during(SimAction.Z_REPORT, seconds=6.0, execute=True)  # past the driver's ~4 s of retries

    close = rig.send("close_shift")
    result = rig.final(close, timeout=60)

    assert (result.status, result.reason) == ("failed", "link_lost")
    assert result.meaning and "состояние кассы" in result.meaning
    failed_at = rig.seq_of(close, "failed")
    # Polled again at once: when the register is back, the state shows what the action did.
    rig.recorder.wait_for(lambda _: any(
        s.seq > failed_at and s.state.shift.status is ShiftStatus.CLOSED for s in rig.states()), 30)  # fmt: skip
    assert [r.status for r in rig.results(close)] == ["accepted", "failed"]


def test_an_action_waiting_behind_a_slow_one_expires_before_it_runs(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig("atol", actions={"allow": EVERY_ACTION})
    _shift_open(rig.model)
    rig.device.action_faults.drop_link_during(SimAction.Z_REPORT, seconds=6.0, execute=False)
    slow = rig.send("close_shift")  # the worker retries a silent register for ~4 s
    rig.recorder.wait_for(lambda _: rig.results(slow))

    queued = rig.send("x_report", deadline=datetime.now(UTC) + timedelta(seconds=1.5))

    result = rig.final(queued, timeout=30)
    assert [r.status for r in rig.results(queued)] == ["accepted", "expired"]  # in time when received
    assert result.reason == "deadline_passed" and rig.model.x_reports == 0
    assert rig.final(slow, timeout=30).reason == "link_lost" and rig.model.shift_open


def test_an_action_interrupted_by_a_stop_is_answered_failed_at_the_next_start(
    make_rig: Callable[..., Rig], tmp_path: Path
) -> None:
    outbox_path = tmp_path / "interrupted.sqlite"
    started = ActionResult(id="cmd-interrupted", action=ActionName.CLOSE_SHIFT, status="accepted")
    with Outbox(outbox_path) as outbox:  # what a run killed in the middle of a Z-report leaves behind
        record = ActionRecord(started.id, started.action, REGISTER, started.model_dump_json(), False, datetime.now(UTC))
        assert outbox.claim_action(record, keep=timedelta(days=7)) is None

    # Answered at startup, before the first connect: it goes out as backlog (puback: replayed at once).
    rig = make_rig("shtrih", actions={"allow": EVERY_ACTION}, outbox=outbox_path, ack_mode="puback")

    result = rig.final("cmd-interrupted")
    assert (result.status, result.reason) == ("failed", "interrupted")
    rig.send("close_shift", command_id="cmd-interrupted")  # a late redelivery does not run it
    assert rig.final("cmd-interrupted", count=2) == result
    assert rig.model.shift_number == 0
