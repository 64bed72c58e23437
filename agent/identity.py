"""The agent's installation identity, and which collector acks belong to this outbox.

A reinstalled agent (new outbox file) restarts its sessions at 1 under a new random epoch (see
``protocol.mqtt.models``). An ack is a licence to delete records, so one meant for another
installation — a late ack for the lost outbox's session 3 — must never delete this one's session 3.
"""

from __future__ import annotations

import threading

from protocol.mqtt.wire import AckPayload


class AckFilter:
    """Decides whether an ack is about this outbox's records.

    * An ack naming an epoch applies exactly when it is ours.
    * An ack naming none comes from a collector that predates epochs, or is about records made
      before this outbox had an epoch (sessions below ``since_session``). Those older sessions
      always take it; newer ones only until a collector has shown it knows epochs (by acking with
      one): from then on an epoch-less ack for them can only be another installation's.
    """

    def __init__(self, epoch: str, since_session: int) -> None:
        self.epoch = epoch
        self.since_session = since_session
        self._collector_knows_epochs = False
        self._lock = threading.Lock()

    def owns(self, ack: AckPayload) -> bool:
        with self._lock:
            if isinstance(ack.epoch, str):  # absent or null: an ack without one
                if ack.epoch == self.epoch:
                    self._collector_knows_epochs = True
                    return True
                return False
            return ack.session < self.since_session or not self._collector_knows_epochs
