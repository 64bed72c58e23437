"""The evaluation thread: ingest-triggered evaluations as they come, and the periodic sweep."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection, Mapping, Sequence

from collector.ingest.engine.evaluator import CHUNK, AlertEngine, EvaluationReport
from collector.ingest.engine.leadership import SweepLeadership
from collector.ingest.thread_names import name_os_thread
from collector.ingest.writes import FreshState

log = logging.getLogger(__name__)

# A sweep re-evaluates every register: ~160 µs of CPU each, 8–10 s for 50 000 — more than half a core
# at a 15 s period, which left ingest behind in bench/fleet.py. The next sweep waits until this thread
# has spent at most this share of its time sweeping, so time-driven alerts (an agent gone silent, a
# shift past 24 h) come up to ``last sweep / SWEEP_SHARE`` late on a big fleet: ~40 s at 50 000.
SWEEP_SHARE = 0.25
# Sweeps in between pass over the registers that nothing can have changed for (``AlertEngine.evaluate``,
# ``skip_quiet``); this one in every FULL_SWEEP_EVERY evaluates them all, for what that does not see
# (an OFD contract or a company's thresholds edited on the web).
FULL_SWEEP_EVERY = 10


class EvaluationWorker:
    """One thread: evaluates registers changed by ingest as they come, and sweeps all periodically."""

    def __init__(
        self,
        engine: AlertEngine,
        *,
        period: float = 15.0,
        also_sweep: Sequence[Callable[[], object]] = (),
        leadership: SweepLeadership | None = None,
        full_every: int = FULL_SWEEP_EVERY,
    ) -> None:
        self.engine = engine
        self.leadership = leadership  # None: this collector is alone and always sweeps
        self.period = period
        self.full_every = max(1, full_every)
        self.also_sweep = tuple(also_sweep)  # other periodic rules (company alerts), after the registers
        self._lock = threading.Lock()
        self._changed: set[str] = set()
        self._agents: set[str] = set()
        self._states: dict[str, FreshState] = {}
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.sweeps = 0
        self.last_sweep_seconds = 0.0  # the register part of the last sweep, wall time
        self.sweep_seconds_total = 0.0

    def changed(
        self,
        register_ids: Collection[str],
        agent_ids: Collection[str] = (),
        states: Mapping[str, FreshState] | None = None,
    ) -> None:
        """Called by the ingest writer after a commit (cheap: just records the ids and states)."""
        with self._lock:
            self._changed.update(register_ids)
            self._agents.update(agent_ids)
            if states:
                self._states.update(states)  # the writer reports in commit order: later versions win
        self._wake.set()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="alert-evaluator", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        if self.leadership is not None:
            self.leadership.release()  # another collector takes the sweep over at its next period

    def _run(self) -> None:
        name_os_thread()
        next_sweep = time.monotonic() + self.period
        while not self._stop.is_set():
            self._wake.wait(max(0.0, next_sweep - time.monotonic()))
            self._wake.clear()
            try:
                self.run_changed()
                if time.monotonic() >= next_sweep:
                    if self.leadership is None or self.leadership.leading():
                        self.sweep()
                    else:
                        self.engine.update_open_alert_gauge()  # the leader sweeps; the gauge is per process
                    next_sweep = time.monotonic() + self.sweep_interval()
            except Exception:  # the loop must survive a failed evaluation (database away, a bad row)
                log.exception("alert evaluation failed; retrying on the next trigger")
                time.sleep(min(self.period, 1.0))
        self.run_changed()

    def sweep_interval(self) -> float:
        """Seconds from the end of one sweep to the next: the configured period, stretched on a
        fleet big enough that sweeping would take more than ``SWEEP_SHARE`` of this thread."""
        return max(self.period, self.last_sweep_seconds / SWEEP_SHARE)

    def sweep(self) -> None:
        """Re-evaluate every register (but those still quiet, except at every ``full_every``-th
        sweep), chunk by chunk, serving ingest-triggered evaluations between chunks so a long
        sweep over a big fleet never delays a fresh alert by more than one chunk."""
        ids = self.engine.all_registers()
        stretched_before = self.sweep_interval() > self.period
        sweeping = 0.0
        quiet_ok = self.sweeps % self.full_every != 0
        for start in range(0, len(ids), CHUNK):
            if self._stop.is_set():
                return
            started = time.monotonic()
            self.engine.evaluate(ids[start : start + CHUNK], skip_quiet=quiet_ok)
            sweeping += time.monotonic() - started
            self.run_changed()
        self.last_sweep_seconds = sweeping
        self.sweep_seconds_total += sweeping
        if (self.sweep_interval() > self.period) != stretched_before:
            log.info(
                "sweeping %d registers took %.1f s: the next sweeps come every %.0f s (configured %.0f s)",
                len(ids), sweeping, self.sweep_interval(), self.period,
            )
        for extra in self.also_sweep:
            try:
                extra()
            except Exception:  # its own failure must not stop the register sweep from counting
                log.exception("periodic sweep %r failed", extra)
        self.engine.update_open_alert_gauge()
        self.sweeps += 1

    def run_changed(self) -> EvaluationReport | None:
        with self._lock:
            changed, self._changed = self._changed, set()
            agent_ids, self._agents = self._agents, set()
            states, self._states = self._states, {}
        if agent_ids:
            of_agents = self.engine.registers_of_agents(agent_ids)
            self.engine.forget(of_agents)  # their agent's status or clock moved: not in memory any more
            changed.update(of_agents)
        if not changed:
            return None
        try:
            return self.engine.evaluate(changed, skip_unchanged=True, states=states)
        except Exception:
            with self._lock:  # evaluate them again next time rather than lose the trigger
                self._changed.update(changed)
                for register_id, state in states.items():
                    self._states.setdefault(register_id, state)  # never over a version reported since
            raise
