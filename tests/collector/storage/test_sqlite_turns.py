"""SQLite writers take turns on a kernel lock next to the file (``storage.sqlite_turns``): a second
write transaction waits for the first one's end instead of polling SQLite's busy handler."""

from __future__ import annotations

import fcntl
import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from collector.storage import create_engine_from_url
from collector.storage.engine import begin_write
from collector.storage.sqlite_turns import turn_file


def test_a_second_writer_waits_for_the_first_to_commit(tmp_path: Path) -> None:
    first = create_engine_from_url(f"sqlite:///{tmp_path}/turns.db")
    second = create_engine_from_url(f"sqlite:///{tmp_path}/turns.db")  # as another process would
    try:
        with first.begin() as conn:
            conn.execute(sa.text("CREATE TABLE t (n INTEGER)"))
        committed_at: list[float] = []
        entered_at: list[float] = []
        holding = threading.Event()

        def hold() -> None:
            with begin_write(first) as conn:
                conn.execute(sa.text("INSERT INTO t VALUES (1)"))
                holding.set()
                time.sleep(0.3)
                committed_at.append(time.monotonic())

        holder = threading.Thread(target=hold)
        holder.start()
        assert holding.wait(5)
        with open(turn_file(first) or "", "rb") as turn, pytest.raises(BlockingIOError):
            fcntl.flock(turn.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)  # the first writer holds the turn
        with begin_write(second) as conn:
            entered_at.append(time.monotonic())
            assert conn.execute(sa.text("SELECT count(*) FROM t")).scalar_one() == 1  # sees the commit
        holder.join(5)
        assert entered_at[0] >= committed_at[0]
    finally:
        first.dispose()
        second.dispose()


def test_in_memory_databases_have_no_turn_file() -> None:
    engine = create_engine_from_url("sqlite://")
    try:
        assert turn_file(engine) is None
        with begin_write(engine) as conn:
            assert conn.execute(sa.text("SELECT 1")).scalar_one() == 1
    finally:
        engine.dispose()
