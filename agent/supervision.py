"""Supervised threads: no agent thread dies silently.

A supervised thread runs its target; when the target raises (or returns while the agent is
still running), the error is logged with its traceback and the target is started again after
an exponential backoff with jitter. A failure after a long healthy run starts a fresh streak.
(A dozen lines here rather than tenacity: importing it costs the agent 2 MB of its 35 MB.) When a streak uses up its restarts the thread *cannot recover*: ``on_fatal(name, reason)``
is called once, and the runtime exits non-zero so systemd restarts the whole process.
"""

from __future__ import annotations

import enum
import logging
import random
import threading
import time
from collections.abc import Callable

from agent.config import SupervisionConfig

log = logging.getLogger(__name__)


class ThreadExited(RuntimeError):
    """The target returned although nobody asked it to stop."""


class _Ended(enum.Enum):
    STOPPED = "stopped"
    AFTER_HEALTHY_RUN = "after a healthy run"


FatalHook = Callable[[str, str], None]


def describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


class SupervisedThread:
    """A daemon thread running ``target`` under a :class:`SupervisionConfig`."""

    def __init__(
        self,
        name: str,
        target: Callable[[], None],
        *,
        stopping: threading.Event,
        on_fatal: FatalHook,
        policy: SupervisionConfig | None = None,
    ) -> None:
        self.name = name
        self._target = target
        self._stopping = stopping
        self._on_fatal = on_fatal
        self.policy = policy or SupervisionConfig()
        self.restarts = 0
        self.last_error: str | None = None
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self.thread.start()

    def is_alive(self) -> bool:
        return self.thread.is_alive()

    def join(self, timeout: float | None = None) -> None:
        if self.thread.ident is not None:
            self.thread.join(timeout)

    def backoff(self, failures: int) -> float:
        """Seconds to wait after the ``failures``-th failure of a streak: exponential, capped, plus jitter."""
        policy = self.policy
        exponential = min(policy.backoff_initial * 2 ** (failures - 1), policy.backoff_max)
        return exponential + random.uniform(0, policy.backoff_initial)

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                ended = self._streak()
            except Exception as exc:
                reason = describe(exc)
                log.critical(
                    "thread %s cannot recover after %d restart(s): %s",
                    self.name, self.policy.max_restarts, reason, extra={"agent_thread": self.name},
                )
                self._on_fatal(self.name, reason)
                return
            if ended is _Ended.STOPPED:
                return

    def _streak(self) -> _Ended:
        """Run the target, restarting it after failures until it ends or the restarts run out (raises)."""
        failures = 0
        while True:
            try:
                return self._run_target()
            except Exception:
                failures += 1
                if failures > self.policy.max_restarts:
                    raise
            delay = self.backoff(failures)
            self._before_restart(failures, delay)
            self._stopping.wait(delay)  # a stop request ends the backoff at once

    def _run_target(self) -> _Ended:
        started = time.monotonic()
        try:
            self._target()
        except Exception as exc:
            if self._stopping.is_set():
                return _Ended.STOPPED
            self.last_error = describe(exc)
            log.exception("thread %s failed", self.name, extra={"agent_thread": self.name})
            if time.monotonic() - started >= self.policy.healthy_after:
                return _Ended.AFTER_HEALTHY_RUN
            raise
        if self._stopping.is_set():
            return _Ended.STOPPED
        self.last_error = f"{ThreadExited.__name__}: the thread ended while the agent was running"
        log.error("thread %s ended while the agent was running", self.name, extra={"agent_thread": self.name})
        raise ThreadExited(f"thread {self.name} ended while the agent was running")

    def _before_restart(self, failures: int, delay: float) -> None:
        self.restarts += 1
        log.warning(
            "restarting thread %s in %.1f s (restart %d of %d)",
            self.name, delay, failures, self.policy.max_restarts,
            extra={"agent_thread": self.name, "delay": round(delay, 2)},
        )
