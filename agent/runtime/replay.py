"""Replay of the backlog: older sessions' unacked outbox records go out on ``hist``, oldest first,
rate-limited, once the collector is known to be online (or with puback acks, at once)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta

from agent.config import AgentConfig
from agent.outbox import Outbox, OutboxRecord
from agent.publisher import MqttPublisher
from protocol.mqtt.errors import ContractError
from protocol.mqtt.topics import hist_topic
from protocol.mqtt.wire import CollectorStatusPayload, decode_as, pack_hist_batches

log = logging.getLogger(__name__)

# The replay also re-checks on a timer, not only after a connect: a live publish whose PUBACK
# never came (connection dropped after the send) becomes backlog once the outbox's grace ends.
REPLAY_RECHECK_INTERVAL = 2.0


class BacklogReplay:
    """Runs on its own thread; ``wake`` is set after a connect and when the collector comes online."""

    def __init__(
        self,
        config: AgentConfig,
        outbox: Outbox,
        publisher: MqttPublisher,
        *,
        live_session: Callable[[], int | None],
        now: Callable[[], datetime],
        stopping: threading.Event,
    ) -> None:
        self.config = config
        self.agent_id = config.agent_id
        self.outbox = outbox
        self.publisher = publisher
        self._live_session = live_session
        self.now = now
        self.stopping = stopping
        self.wake = threading.Event()
        self._collector_online: bool | None = None  # None: never seen its retained status
        self.replayed = 0
        self.unacked_resent = 0
        # Per connection: the (session, seq)s sent again on it, and when each replayed batch (up to
        # its last key) got its PUBACK — so a replayed batch the broker lost is sent once more too.
        self._connection: int | None = None
        self._resent: set[tuple[int, int]] = set()
        self._replayed_through: list[tuple[float, tuple[int, int]]] = []

    def on_collector_status(self, raw: bytes) -> None:
        if not raw:  # retained status cleared
            self._collector_online = None
            return
        try:
            status = decode_as(CollectorStatusPayload, raw)
        except ContractError as exc:
            log.warning("ignoring malformed collector status: %s", exc)
            return
        self._collector_online = status.status == "online"
        log.info("collector is %s", status.status)
        if self._collector_online:
            self.wake.set()

    def replay_allowed(self) -> bool:
        if self._collector_online is None:
            return self.config.ack_mode == "puback"
        return self._collector_online

    def run(self) -> None:
        while not self.stopping.is_set():
            self.wake.wait(REPLAY_RECHECK_INTERVAL)
            self.wake.clear()
            try:
                self._replay_backlog()
                self._resend_unacked()
            except Exception:
                log.exception("backlog replay failed; retrying later")

    def _replay_backlog(self) -> None:
        """Send older sessions' rows on ``hist`` oldest first, at most ``replay.rate`` records/s."""
        interval_per_record = 1.0 / self.config.replay.rate
        cursor: tuple[int, int] | None = None
        connection = self._live_session()
        while not self.stopping.is_set():
            live = self._live_session()
            if live is None or live != connection or not self.replay_allowed():
                return
            rows: list[OutboxRecord] = self.outbox.backlog(
                self.config.replay.batch, exclude_session=live, after=cursor
            )
            if not rows:
                return
            cursor = (rows[-1].session, rows[-1].seq)
            started = time.monotonic()
            batches = pack_hist_batches(self.agent_id, self.now(), [(row.kind, row.payload) for row in rows])
            for raw in batches:
                done = threading.Event()
                if not self.publisher.publish(hist_topic(self.agent_id), raw, on_ack=done.set):
                    return
                if not done.wait(10.0):
                    return  # connection trouble; the next connect replays again
            self.outbox.mark_published_many((row.session, row.seq) for row in rows)
            self._on_connection(connection).append((time.monotonic(), cursor))
            self.replayed += len(rows)
            pause = len(rows) * interval_per_record - (time.monotonic() - started)
            if pause > 0 and self.stopping.wait(pause):
                return

    def _on_connection(self, connection: int | None) -> list[tuple[float, tuple[int, int]]]:
        """This connection's replay marks; a new connection starts both bookkeeping sets afresh."""
        if connection != self._connection:
            self._connection, self._resent, self._replayed_through = connection, set(), []
        return self._replayed_through

    def _resend_unacked(self) -> None:
        """Collectors sharing the stream ack exactly what they committed: a record published on this
        connection (live, or replayed from an older session) and left unacked for ``unacked_grace``
        never reached a database (lost by a broker node that died, by a stream electing a leader, or
        by a collector). Send it again on ``hist``, once per connection — a record a collector
        refuses stays for the next connection's replay instead of looping."""
        live = self._live_session()
        if live is None or not self.replay_allowed():
            return
        marks = self._on_connection(live)
        grace = self.config.replay.unacked_grace
        limit = self.config.replay.batch
        rows = self.outbox.unacked(live, timedelta(seconds=grace), limit)
        matured = [key for at, key in marks if time.monotonic() - at >= grace]
        if matured:  # each replayed batch is looked at once, after its grace
            del marks[: len(matured)]
            rows += self.outbox.unacked_replayed(live, max(matured), limit)
        rows = [row for row in rows if (row.session, row.seq) not in self._resent]
        if not rows:
            return
        for session in sorted({row.session for row in rows}):
            mine = [row.seq for row in rows if row.session == session]
            log.warning(
                "sending again %d records of session %d that no collector acked (first seq %d)", len(mine), session, mine[0]
            )
        for raw in pack_hist_batches(self.agent_id, self.now(), [(row.kind, row.payload) for row in rows]):
            done = threading.Event()
            if not self.publisher.publish(hist_topic(self.agent_id), raw, on_ack=done.set) or not done.wait(10.0):
                return  # connection trouble: the next connect replays them anyway
        self._resent.update((row.session, row.seq) for row in rows)
        self.unacked_resent += len(rows)
