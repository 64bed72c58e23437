"""SupervisedThread: restarted with backoff after an error, fatal once a streak is used up.

The process-level behaviour (disk full at reconnect, exit code, health file) is in
test_agent_disk_full.py; the JSON form of uncaught tracebacks is checked here on a real process.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading

from agent.config import SupervisionConfig
from agent.supervision import SupervisedThread

FAST = SupervisionConfig(max_restarts=3, backoff_initial=0.01, backoff_max=0.05, healthy_after=60)


class Fatal:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self.done = threading.Event()

    def __call__(self, thread: str, reason: str) -> None:
        self.calls.append((thread, reason))
        self.done.set()


def test_a_target_that_fails_twice_then_runs_is_restarted_and_not_fatal() -> None:
    stopping, fatal, runs = threading.Event(), Fatal(), []
    running = threading.Event()

    def target() -> None:
        runs.append(1)
        if len(runs) <= 2:
            raise OSError(f"database or disk is full ({len(runs)})")
        running.set()
        stopping.wait()

    thread = SupervisedThread("worker", target, stopping=stopping, on_fatal=fatal, policy=FAST)
    thread.start()
    assert running.wait(10)
    assert (thread.restarts, thread.last_error) == (2, "OSError: database or disk is full (2)")
    stopping.set()
    thread.join(5)
    assert not thread.is_alive() and fatal.calls == []


def test_a_target_that_keeps_failing_is_fatal_once_with_its_reason() -> None:
    stopping, fatal = threading.Event(), Fatal()

    def target() -> None:
        raise RuntimeError("broken for good")

    thread = SupervisedThread("mqtt-supervisor", target, stopping=stopping, on_fatal=fatal, policy=FAST)
    thread.start()
    assert fatal.done.wait(10)
    thread.join(5)
    assert fatal.calls == [("mqtt-supervisor", "RuntimeError: broken for good")]
    assert thread.restarts == FAST.max_restarts and not thread.is_alive()


def test_a_target_that_returns_while_running_counts_as_a_failure() -> None:
    stopping, fatal = threading.Event(), Fatal()
    thread = SupervisedThread("replay", lambda: None, stopping=stopping, on_fatal=fatal, policy=FAST)
    thread.start()
    assert fatal.done.wait(10)
    assert fatal.calls[0][0] == "replay" and "ThreadExited" in fatal.calls[0][1]


def test_uncaught_tracebacks_are_one_json_object_per_line() -> None:
    script = (
        "import threading\n"
        "from agent.logging_setup import configure_logging\n"
        "configure_logging('json')\n"
        "def boom():\n"
        "    raise ValueError('in a thread')\n"
        "t = threading.Thread(target=boom, name='worker'); t.start(); t.join()\n"
        "raise KeyError('in main')\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30)
    assert result.returncode == 1
    lines = [json.loads(line) for line in result.stderr.splitlines()]  # every line parses
    assert [(line["level"], line.get("agent_thread")) for line in lines] == [("critical", "worker"), ("critical", None)]
    assert "ValueError: in a thread" in lines[0]["exc"] and "KeyError: 'in main'" in lines[1]["exc"]
