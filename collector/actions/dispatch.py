"""The collector-process side of remote actions: publish what was requested, expire what was not answered.

The web tier only writes ``requested`` rows, so it needs no broker connection and any number of
web processes may run. This loop (one per collector process, beside the MQTT consumer) publishes
each requested action as a :class:`~protocol.mqtt.models.CommandPayload` on its agent's ``cmd``
topic — QoS 1, never retained (a retained Z-report would run on every reconnect) — and then marks
it ``sent``. Publishing comes first: a crash between the two publishes the command again, which
the agent answers from its record of executed ids, so nothing runs twice; several collectors
under ``$share`` may do the same for the same reason.

The command's deadline is expressed on the agent's clock: the row's deadline plus the agent's
measured clock error (``agents.clock_offset``, + = ahead; see ``collector/ingest/agent_clock.py``),
so an agent whose clock is an hour behind still refuses a command two minutes late.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Collection
from datetime import UTC, datetime

import sqlalchemy as sa

from collector.actions import store
from collector.storage.engine import begin_write
from protocol.mqtt.models import CommandPayload, encode
from protocol.mqtt.topics import cmd_topic

log = logging.getLogger(__name__)

Publish = Callable[[str, bytes], bool]
Changed = Callable[[Collection[str]], None]
Count = Callable[[str, int], None]  # (outcome, how many): "sent" or "expired"


def command_for(outgoing: store.Outgoing) -> CommandPayload:
    row = outgoing.row
    return CommandPayload(
        id=row.id, cmd=row.action, args=row.args, register=row.register_id,
        deadline=row.deadline + outgoing.clock_offset,
    )


class ActionDispatcher:
    """``send_due`` and ``expire`` on a thread every ``period`` seconds, or at once on :meth:`wake`."""

    def __init__(
        self,
        engine: sa.Engine,
        publish: Publish,
        *,
        period: float = 1.0,
        on_changed: Changed | None = None,
        count: Count | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.engine = engine
        self.publish = publish
        self.period = period
        self.on_changed = on_changed
        self.count = count
        self.clock = clock
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def send_due(self) -> int:
        """Publish every requested action still in time; returns how many were published."""
        now = self.clock()
        with self.engine.connect() as conn:
            due = store.due_for_sending(conn, now)
        sent: list[str] = []
        for outgoing in due:
            row = outgoing.row
            if row.agent_id is None:  # never: a requested action always names its agent
                continue
            if not self.publish(cmd_topic(row.agent_id), encode(command_for(outgoing))):
                log.warning("action %s for %s not published (no broker connection); retrying", row.id, row.register_id)
                break  # the broker is gone: the rest would fail the same way
            with begin_write(self.engine) as conn:
                if store.mark_sent(conn, row.id, self.clock()):
                    sent.append(row.register_id)
            log.info("action %s (%s) sent to %s for %s", row.id, row.action, row.agent_id, row.register_id)
        self._announce(sent)
        self._count("sent", len(sent))
        return len(sent)

    def expire(self) -> int:
        now = self.clock()
        with self.engine.connect() as conn:
            if not store.any_overdue(conn, now):
                return 0
        with begin_write(self.engine) as conn:
            expired = store.expire_overdue(conn, now)
        for row in expired:
            log.warning("action %s (%s) on %s expired without an answer", row.id, row.action, row.register_id)
        self._announce([row.register_id for row in expired])
        self._count("expired", len(expired))
        return len(expired)

    def _count(self, outcome: str, how_many: int) -> None:
        if how_many and self.count is not None:
            self.count(outcome, how_many)

    def _announce(self, register_ids: list[str]) -> None:
        if register_ids and self.on_changed is not None:
            try:
                self.on_changed(register_ids)
            except Exception:
                log.exception("announcing action changes failed")

    def wake(self) -> None:
        self._wake.set()

    def run_once(self) -> None:
        for step in (self.send_due, self.expire):
            try:
                step()
            except Exception:  # a database hiccup must not end the loop
                log.exception("action dispatch step %s failed", step.__name__)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="action-dispatcher", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.run_once()
            self._wake.wait(self.period)
            self._wake.clear()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(10)
