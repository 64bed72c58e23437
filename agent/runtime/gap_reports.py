"""Housekeeping: records the outbox dropped become ``outbox_gap`` events, at most one report per
``outbox.gap_report_interval`` (a full outbox keeps dropping, and a report per second would mostly
report itself)."""

from __future__ import annotations

import logging
import time

from agent.outbox import Outbox
from agent.runtime.host import RuntimeHost
from protocol.mqtt.rules import EventKind

log = logging.getLogger(__name__)

HOUSEKEEPING_INTERVAL = 1.0  # seconds between checks for outbox drops to report


class GapReporter:
    def __init__(self, host: RuntimeHost, outbox: Outbox) -> None:
        self.host = host
        self.outbox = outbox
        self.interval = host.config.outbox.gap_report_interval
        self.stopping = host.stopping

    def run(self) -> None:
        # The outbox group-commits on its own thread; here only drops are turned into events.
        next_report = 0.0
        while not self.stopping.wait(HOUSEKEEPING_INTERVAL):
            if time.monotonic() < next_report:
                continue
            try:
                attempted = self._report_gap()
            except Exception as exc:
                log.error("outbox gap report failed, retrying in %.0f s: %s", self.interval, exc)
                attempted = True
            if attempted:
                next_report = time.monotonic() + self.interval

    def _report_gap(self) -> bool:
        """Write one ``outbox_gap`` event for the pending drops; False when nothing is pending."""
        gap = self.outbox.take_gap()
        if gap is None:
            return False
        log.warning("outbox dropped records", extra=gap.as_data())
        try:
            self.host.emit_event(None, EventKind.OUTBOX_GAP, gap.describe(), gap.as_data(), resolves_gap=gap)
        except Exception:
            self.outbox.release_gap()  # stays pending: reported on the next round
            raise
        return True
