"""Alert engine wiring: stored state → ``RuleInput`` → rules → lifecycle → stored alerts, history,
time to block and worst severity, and notices for the notification dispatcher.

Two triggers, one code path (:meth:`AlertEngine.evaluate`):

* after each committed ingest batch, for the registers whose state/link changed and every register
  of an agent whose online status changed (:class:`EvaluationWorker` coalesces them, so the ingest
  writer never waits for rules);
* a **periodic sweep** of every register (default 15 s), because time-driven rules must fire with
  no message arriving: a shift crossing 24 h, a backlog crossing 30 days, an agent gone silent
  without an LWT. A register in its quiet period (nothing found, no threat, none of its stored
  inputs moved: ``collector.alerts.quiet``) is passed over but at every tenth sweep.

An evaluation whose outcome is the stored one (verdict, severity, stop, inputs digest) writes
nothing back (``write_back.same_outcome``): the stored row keeps the evaluation time it had.

Pending alerts (a condition inside its rule's flapping guard) were never raised and the storage
has no status for them, so they live in memory; a restart merely restarts their pending period.
"""

from collector.ingest.engine.evaluator import CHUNK, AlertEngine, EvaluationReport, Notify
from collector.ingest.engine.worker import EvaluationWorker
from collector.ingest.engine.write_back import register_evaluation

__all__ = ["CHUNK", "AlertEngine", "EvaluationReport", "EvaluationWorker", "Notify", "register_evaluation"]
