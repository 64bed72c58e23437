"""Agent death and shutdown as the collector sees them on the retained ``status`` topic."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from typing import Any

from protocol.mqtt.models import StatusPayload, decode

AGENT = "agent-lwt"
STATUS = f"kassa/v1/{AGENT}/status"


def statuses(messages: list[Any]) -> list[StatusPayload]:
    out = []
    for m in messages:
        if m.topic == STATUS and m.payload:
            payload = decode(m.topic, m.payload)
            assert isinstance(payload, StatusPayload)
            out.append(payload)
    return out


def online(messages: list[Any]) -> list[StatusPayload]:
    return [s for s in statuses(messages) if s.status == "online"]


def test_killed_agent_leaves_a_retained_offline_of_its_session(
    agent_process: Callable[..., Any], mqtt_recorder: Callable[..., Any]
) -> None:
    recorder = mqtt_recorder([STATUS])
    agent = agent_process(AGENT)
    agent.start()
    first = recorder.wait_for(lambda m: online(m), timeout=15)
    session = online(first)[0].session
    agent.kill()  # SIGKILL: no goodbye, the broker fires the Last Will
    messages = recorder.wait_for(lambda m: any(s.status == "offline" for s in statuses(m)))
    dead = next(s for s in statuses(messages) if s.status == "offline")
    assert (dead.session, dead.reason, dead.agent) == (session, "lwt", AGENT)
    # It is retained: a collector that starts later still learns the agent is dead, and which session.
    late = mqtt_recorder([STATUS], client_id="late-collector")
    retained = late.wait_for(lambda m: len(m) >= 1)[0]
    assert retained.retain and statuses([retained])[0].session == session
    assert statuses([retained])[0].status == "offline"


def test_graceful_stop_publishes_shutdown_and_no_lwt(
    agent_process: Callable[..., Any], mqtt_recorder: Callable[..., Any]
) -> None:
    recorder = mqtt_recorder([STATUS])
    agent = agent_process(AGENT)
    agent.start()
    session = online(recorder.wait_for(lambda m: online(m), timeout=15))[0].session
    assert agent.terminate() == 0
    recorder.wait_for(lambda m: any(s.status == "offline" for s in statuses(m)))
    threading_pause(0.5)  # a (wrong) LWT would follow the clean disconnect at once
    offline = [s for s in statuses(recorder.messages) if s.status == "offline"]
    assert [(s.session, s.reason) for s in offline] == [(session, "shutdown")]


def test_stale_lwt_of_an_older_session_is_told_apart_by_its_session(
    agent_process: Callable[..., Any], mqtt_recorder: Callable[..., Any]
) -> None:
    """A hung agent is replaced (same client id, same outbox): the broker then fires the old
    connection's will *after* the new online status. Its lower session number marks it stale."""
    recorder = mqtt_recorder([STATUS])
    # A quiet register, so the frozen process holds no SQLite write lock on the shared outbox.
    old = agent_process(AGENT, toggle=False, poll=30)
    old.start()
    old_session = online(recorder.wait_for(lambda m: online(m), timeout=15))[0].session
    assert old.process is not None
    threading_pause(0.3)  # its first state is committed
    os.kill(old.process.pid, signal.SIGSTOP)  # hung: its TCP connection stays open
    try:
        new = agent_process(AGENT, toggle=False, poll=30)
        new.config_path.write_text(old.config_path.read_text())  # same outbox → next session number
        new.start()
        messages = recorder.wait_for(
            lambda m: any(s.session > old_session for s in online(m))
            and any(s.status == "offline" and s.session == old_session for s in statuses(m)),
            timeout=15,
        )
    finally:
        os.kill(old.process.pid, signal.SIGKILL)
    new_session = max(s.session for s in online(messages))
    stale = [s for s in statuses(messages) if s.status == "offline"][-1]
    assert stale.session == old_session < new_session
    # The collector rule: a death whose session is older than the current online one is ignored.
    current = max(statuses(messages), key=lambda s: s.session)
    assert current.status == "online" and current.session == new_session


def threading_pause(seconds: float) -> None:
    import threading

    threading.Event().wait(seconds)
