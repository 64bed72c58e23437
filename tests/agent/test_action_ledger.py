"""The outbox's action ledger: a command id is claimed once, durably, and pruned by age."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from agent.outbox import ActionRecord, Outbox

NOW = datetime(2026, 12, 7, 10, 0, tzinfo=UTC)
KEEP = timedelta(days=7)


def _record(command_id: str, at: datetime = NOW, *, final: bool = False) -> ActionRecord:
    result = json.dumps({"id": command_id, "action": "close_shift", "status": "done" if final else "accepted"})
    return ActionRecord(command_id, "close_shift", "kkt-1", result, final, at)


def test_an_id_is_claimed_once_and_the_first_record_is_returned_after(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.sqlite") as outbox:
        assert outbox.claim_action(_record("c1"), keep=KEEP) is None
        known = outbox.claim_action(_record("c1", NOW + timedelta(seconds=5), final=True), keep=KEEP)
        assert known == _record("c1")  # the stored one, not the second delivery's
        assert [r.command_id for r in outbox.unfinished_actions()] == ["c1"]
        outbox.finish_action("c1", '{"status": "done"}')
        assert outbox.unfinished_actions() == []
        finished = outbox.claim_action(_record("c1"), keep=KEEP)
        assert finished is not None and finished.final and finished.result == '{"status": "done"}'


def test_the_ledger_survives_a_restart(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.sqlite") as outbox:
        outbox.claim_action(_record("c1"), keep=KEEP)
    with Outbox(tmp_path / "o.sqlite") as reopened:
        assert reopened.claim_action(_record("c1"), keep=KEEP) == _record("c1")
        assert [r.command_id for r in reopened.unfinished_actions()] == ["c1"]


def test_records_older_than_the_keep_period_are_pruned(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.sqlite") as outbox:
        outbox.claim_action(_record("old", NOW - KEEP - timedelta(minutes=1), final=True), keep=KEEP)
        outbox.claim_action(_record("recent", NOW - KEEP + timedelta(minutes=1), final=True), keep=KEEP)
        outbox.claim_action(_record("new"), keep=KEEP)  # prunes as it claims
        assert outbox.claim_action(_record("old"), keep=KEEP) is None  # forgotten: claimable again
        assert outbox.claim_action(_record("recent"), keep=KEEP) is not None
