"""The outbox's installation epoch and which acks an agent lets delete its records."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

from agent.identity import AckFilter
from agent.outbox import Outbox
from protocol.mqtt.models import EPOCH_PATTERN, AckPayload

MINE, OTHER = "1" * 32, "2" * 32


def test_an_outbox_keeps_its_epoch_and_a_new_file_gets_another(tmp_path: Path) -> None:
    with Outbox(tmp_path / "a.sqlite") as outbox:
        outbox.next_session()
        first = outbox.epoch()
    with Outbox(tmp_path / "a.sqlite") as outbox:
        assert outbox.epoch() == first  # survives a restart
    with Outbox(tmp_path / "b.sqlite") as outbox:
        other = outbox.epoch()
    assert first[1] == 1 and other[1] == 1  # both numbered from their first session
    assert first[0] != other[0]
    assert re.match(EPOCH_PATTERN, first[0])


def test_an_outbox_from_before_epochs_keeps_its_counter_and_dates_its_epoch_from_the_next_session(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    with Outbox(path) as outbox:
        for _ in range(4):
            outbox.next_session()
    with sqlite3.connect(path) as db:  # what an agent without epochs left behind
        db.execute("DELETE FROM meta WHERE key IN ('epoch', 'epoch_since')")
    with Outbox(path) as outbox:
        _, since = outbox.epoch()
        assert since == 5 and outbox.next_session() == 5


def test_acks_of_another_installation_never_delete_records() -> None:
    acks = AckFilter(MINE, since_session=3)
    assert not acks.owns(AckPayload(session=3, seq=9, epoch=OTHER))
    assert acks.owns(AckPayload(session=1, seq=9))  # a record from before this outbox had an epoch
    assert acks.owns(AckPayload(session=3, seq=9))  # a collector that predates epochs: trusted …
    assert acks.owns(AckPayload(session=3, seq=9, epoch=MINE))
    assert not acks.owns(AckPayload(session=3, seq=9))  # … until one has named epochs
    assert acks.owns(AckPayload(session=2, seq=9))
