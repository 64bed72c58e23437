"""Fixtures of the security tests: a migrated database per backend for the whole session
(SQLite temp file, and a fresh PostgreSQL database — unreachable PostgreSQL skips, except under
``CI=true``, where it fails), the seeded two-company world, and clients on the app as
``create_app`` builds it by default (accounts authentication, accounts and enrollment APIs, pages).
"""

from __future__ import annotations

import random
import sys
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent))
import ingest_testkit
import security_testkit as kit

from collector.storage import create_engine_from_url, migrate


@pytest.fixture(scope="session", params=kit.BACKENDS)
def engine(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[sa.Engine]:
    with ingest_testkit.database_url(request.param, tmp_path_factory.mktemp("security")) as url:
        eng = create_engine_from_url(url)
        try:
            migrate(eng, "heads")
            yield eng
        finally:
            eng.dispose()


@pytest.fixture(scope="session")
def world(engine: sa.Engine) -> kit.World:
    """The shared world: tests on it must not change what other tests rely on."""
    return kit.seed_world(engine, random.Random(20261128))


@pytest.fixture
def fresh_world(engine: sa.Engine) -> kit.World:
    """A world of its own (two more companies) for a test that changes things."""
    return kit.seed_world(engine, random.Random(uuid.uuid4().int))


MakeClient = Callable[..., kit.Client]


@pytest.fixture
def make_client(engine: sa.Engine, world: kit.World) -> Iterator[MakeClient]:
    opened: list[Any] = []

    def make(
        *, on: kit.World | None = None, clock_offset: timedelta = timedelta(0), cookie_secure: bool = False
    ) -> kit.Client:
        context = contextmanager(kit.start_client)(
            engine, on or world, clock_offset=clock_offset, cookie_secure=cookie_secure
        )
        opened.append(context)
        return context.__enter__()

    yield make
    for context in reversed(opened):
        context.__exit__(None, None, None)


@pytest.fixture
def client(make_client: MakeClient) -> kit.Client:
    return make_client()
