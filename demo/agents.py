"""The simulated registers and their agents.

Each register is a ``RegisterModel`` from its profile's scenario on a ``SimClock`` running
``speed`` times real time, registered in this process as ``sim://demo-<register>``; each gets its
own in-process ``AgentRuntime`` (own agent id, MQTT connection, session counter and outbox file),
exactly what ``kassa-agent run`` would run, minus 50 interpreters on a 2-core machine.

The register whose agent goes offline is the exception: its agent is a real ``kassa-agent run``
subprocess (with its own in-process ``sim://`` register, from a scenario file written for it),
which is killed with SIGKILL once the collector has its state — no farewell, so the broker
publishes the agent's last will and the agent never comes back.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from datetime import time as dt_time
from pathlib import Path
from typing import Any
from urllib.parse import quote

from agent.config import validate
from agent.runtime import AgentRuntime
from demo.fleet import DemoRegister
from firmware_sim.clock import SimClock
from firmware_sim.devices import make_device
from firmware_sim.hosts import SimRegistration, install_sim_url_handler, register_sim
from firmware_sim.scenario import SCENARIO_DIR, Scenario, ScenarioRunner, load_scenario

log = logging.getLogger(__name__)

POLL_INTERVAL = 5.0  # seconds (real) between polls of one register
HEARTBEAT = 10.0  # seconds (real) between publishes of an unchanged state
STORE_OPENS, STORE_CLOSES = dt_time(8), dt_time(22)  # the demo stores' day, on each register's clock
PARALLEL = 8  # agents started/stopped at once: connects and farewells overlap
STOP_TIMEOUT = 3.0
Progress = Callable[[int, int], None]


def demo_scenario(register: DemoRegister) -> Scenario:
    """The profile's scenario with this register's identity and the profile's tweaks applied."""
    base = load_scenario(register.profile.scenario)
    timeline = tuple(a for a in base.timeline if a.action not in register.profile.drop_actions)
    # Stores trade on a daily timetable in the demo; the shipped scenarios stay free of one, so what
    # a developer or a test reads from them does not depend on the time of day it runs.
    opens, closes = (STORE_OPENS, STORE_CLOSES) if register.profile.cashier_day else (None, None)
    life = dataclasses.replace(base.life, opens=opens, closes=closes)
    return dataclasses.replace(base, state={**base.state, **register.scenario_state()}, timeline=timeline, life=life)


def start_register(register: DemoRegister, speed: float) -> SimRegistration:
    scenario = demo_scenario(register)
    model = scenario.build(SimClock(datetime.now().replace(microsecond=0), speed))
    device = ScenarioRunner(scenario, model).guard(make_device(register.protocol, model))
    return register_sim(f"demo-{register.register_id}", device)


def agent_settings(register: DemoRegister, device_url: str, broker_url: str, outbox: Path) -> dict[str, Any]:
    """The agent's configuration as its TOML file would hold it."""
    return {
        "agent_id": register.agent_id,
        "heartbeat": HEARTBEAT,
        "broker": {"url": broker_url, "keepalive": 10, "reconnect_min": 0.2, "reconnect_max": 5.0},
        "outbox": {"path": str(outbox)},
        "devices": [
            {
                "protocol": register.protocol,
                "url": device_url,
                "register_id": register.register_id,
                "poll_interval": POLL_INTERVAL,
            }
        ],
    }


class InProcessAgents:
    """One ``AgentRuntime`` per register, each polling its ``sim://demo-…`` register."""

    def __init__(self, registers: list[DemoRegister], *, broker_url: str, speed: float, data_dir: Path) -> None:
        self.registers = registers
        self.broker_url = broker_url
        self.speed = speed
        self.outbox_dir = data_dir / "agents"
        self.runtimes: list[AgentRuntime] = []
        self._sims: list[SimRegistration] = []

    def start(self, progress: Progress) -> None:
        install_sim_url_handler()
        self.outbox_dir.mkdir(parents=True, exist_ok=True)
        for register in self.registers:
            registration = start_register(register, self.speed)
            self._sims.append(registration)
            settings = agent_settings(
                register, registration.address, self.broker_url, self.outbox_dir / f"{register.agent_id}.sqlite"
            )
            self.runtimes.append(AgentRuntime(validate(settings)))
        started = 0
        progress(started, len(self.runtimes))
        with ThreadPoolExecutor(PARALLEL, thread_name_prefix="agent-start") as pool:
            for _ in pool.map(AgentRuntime.start, self.runtimes):
                started += 1
                progress(started, len(self.runtimes))

    def stop(self) -> None:
        """Every agent publishes ``offline`` (reason shutdown) and disconnects; in parallel."""
        with ThreadPoolExecutor(PARALLEL * 2, thread_name_prefix="agent-stop") as pool:
            list(pool.map(_stop_quietly, self.runtimes))
        for registration in self._sims:
            registration.close()
        self._sims.clear()


def _stop_quietly(runtime: AgentRuntime) -> None:
    try:
        runtime.stop(timeout=STOP_TIMEOUT)
    except Exception:  # one agent failing to stop must not keep the others running
        log.exception("stopping agent %s", runtime.agent_id)


def scenario_file(register: DemoRegister, directory: Path) -> Path:
    """The profile's shipped scenario with this register's identity added to ``[state]``."""
    text = (SCENARIO_DIR / f"{register.profile.scenario}.toml").read_text(encoding="utf-8")
    identity = "".join(f"{key} = {json.dumps(value)}\n" for key, value in register.scenario_state().items())
    if "\n[state]\n" not in text:
        raise ValueError(f"scenario {register.profile.scenario!r} has no [state] table to extend")
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{register.register_id}.toml"
    path.write_text(text.replace("\n[state]\n", "\n[state]\n" + identity, 1), encoding="utf-8")
    return path


def write_agent_toml(settings: dict[str, Any], path: Path) -> None:
    """A minimal TOML writer for the agent settings above (strings, numbers, tables, one array)."""
    lines = [f"{k} = {json.dumps(v)}" for k, v in settings.items() if not isinstance(v, dict | list)]
    for key, value in settings.items():
        if isinstance(value, dict):
            lines += [f"\n[{key}]", *(f"{k} = {json.dumps(v)}" for k, v in value.items())]
        elif isinstance(value, list):
            for item in value:
                lines += [f"\n[[{key}]]", *(f"{k} = {json.dumps(v)}" for k, v in item.items())]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


class DoomedAgent:
    """A ``kassa-agent run`` subprocess that reports once and is then killed for good."""

    def __init__(self, register: DemoRegister, *, broker_url: str, speed: float, data_dir: Path) -> None:
        self.register = register
        work = data_dir / "offline-agent"
        scenario = scenario_file(register, work)
        url = f"sim://{register.protocol}?scenario={quote(str(scenario))}&speed={speed:g}"
        settings = agent_settings(register, url, broker_url, work / f"{register.agent_id}.sqlite")
        validate(settings)  # fail here, with the key named, rather than inside the subprocess
        self.config_path = work / "agent.toml"
        write_agent_toml(settings, self.config_path)
        self.log_path = work / "agent.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log_path.open("ab") as log_file:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "agent", "run", "--config", str(self.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )

    def kill_when(self, reported: Callable[[], bool], timeout: float) -> bool:
        """Wait until ``reported()`` (the collector has its state), then SIGKILL; False on timeout."""
        deadline = time.monotonic() + timeout
        ok = False
        while time.monotonic() < deadline and self.process is not None and self.process.poll() is None:
            if reported():
                ok = True
                break
            time.sleep(0.2)
        self.kill()
        return ok

    def kill(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(5)
