"""The operator CLI as subprocesses: ``kassa-collector tenant create``, ``user create`` and
``token create`` against a migrated database, then the token authenticates as that user."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from collector.accounts.rights import Permission, can, scope_for
from collector.accounts.schema import api_tokens, users
from collector.accounts.sessions import authenticate_api_token
from collector.cli import main
from collector.storage import Scope, create_engine_from_url, migrate

sys.path.insert(0, str(Path(__file__).parent))
import accounts_testkit as kit
import ingest_testkit

CLI = Path(sys.executable).with_name("kassa-collector")


def run_cli(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "KASSA_COLLECTOR_DB_URL"}
    return subprocess.run([str(CLI), *args], input=stdin, capture_output=True, text=True, timeout=60, env=env)


@pytest.fixture(params=kit.BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path):
    with ingest_testkit.database_url(request.param, tmp_path) as url:
        migrate(url)
        yield url


@pytest.mark.slow  # three process starts (~1 s each on a loaded 2-core machine)
def test_tenant_user_token_create_then_the_token_works(
    db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    inn = kit.make_inn()
    made = run_cli("tenant", "create", "--db", db_url, "--name", "ООО Ромашка", "--inn", inn)
    assert made.returncode == 0, made.stderr
    assert "ООО Ромашка" in made.stdout and inn in made.stdout

    user = run_cli(
        "user", "create", "--db", db_url, "--tenant", "ООО Ромашка", "--email", "Ops@Romashka.test", "--role", "operator",
        stdin=f"{kit.PASSWORD}\n",  # not a terminal: the password is read from stdin
    )  # fmt: skip
    assert user.returncode == 0, user.stderr
    # A second user in-process, naming the company by ИНН this time.
    code, err = run_in_process(
        capsys, "user", "create", "--db", db_url, "--tenant", inn, "--email", "boss@romashka.test", "--role", "owner",
        "--password", kit.PASSWORD,
    )  # fmt: skip
    assert code == 0, err

    token_run = run_cli("token", "create", "--db", db_url, "--email", "ops@romashka.test")
    assert token_run.returncode == 0, token_run.stderr
    token = token_run.stdout.split()[-1]

    engine = create_engine_from_url(db_url)
    try:
        with engine.begin() as conn:
            assert conn.execute(sa.select(api_tokens.c.token_hash)).scalar_one() != token
            who = authenticate_api_token(conn, token, at=datetime.now(UTC))
            assert who is not None and who.email == "ops@romashka.test"
            assert scope_for(conn, who.user_id) == Scope.tenant(who.tenant_id)
            assert can(conn, who.user_id, Permission.ACKNOWLEDGE, None)
            assert not can(conn, who.user_id, Permission.MANAGE_USERS, None)
            confirmed = conn.execute(
                sa.select(users.c.confirmed_at).where(users.c.id == who.user_id)
            ).scalar_one()
            assert confirmed is not None
    finally:
        engine.dispose()


def run_in_process(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    """The same entry point without a process start (fast enough for the many refusal cases)."""
    code = main(list(args))
    return code, capsys.readouterr().err


def test_cli_refusals_are_one_line_and_nonzero(
    db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad_inn = run_cli("tenant", "create", "--db", db_url, "--name", "X", "--inn", "7707083894")
    assert bad_inn.returncode == 1 and "control digit" in bad_inn.stderr and "Traceback" not in bad_inn.stderr
    user_args = ("user", "create", "--db", db_url, "--email", "a@b.test", "--role", "viewer")
    code, err = run_in_process(capsys, *user_args, "--tenant", "Nope", "--password", kit.PASSWORD)
    assert code == 1 and "no company named 'Nope'" in err
    code, err = run_in_process(capsys, *user_args, "--tenant", "Nope", "--password", "short")
    assert code == 1 and "at least" in err
    code, err = run_in_process(capsys, "token", "create", "--db", db_url, "--email", "ghost@b.test")
    assert code == 1 and "no user" in err
    code, err = run_in_process(capsys, "token", "create", "--db", "", "--email", "ghost@b.test")
    assert code == 2 and "--db" in err
    empty = f"sqlite:///{tmp_path}/empty.db"
    code, err = run_in_process(
        capsys, "tenant", "create", "--db", empty, "--name", "X", "--inn", kit.make_inn()
    )
    assert code == 1 and "migrate" in err


def test_user_create_without_a_password_and_no_terminal_says_so(db_url: str) -> None:
    inn = kit.make_inn()
    assert run_cli("tenant", "create", "--db", db_url, "--name", "ООО Ромашка", "--inn", inn).returncode == 0
    args = ("user", "create", "--db", db_url, "--tenant", inn, "--email", "ops@romashka.test", "--role", "admin")
    for nothing in ("", "\n"):  # closed standard input, or an empty first line
        refused = run_cli(*args, stdin=nothing)
        assert refused.returncode == 1 and "Traceback" not in refused.stderr
        assert "no password given" in refused.stderr and "--password" in refused.stderr
        assert "at least 10 characters" not in refused.stderr
    short = run_cli(*args, stdin="short\n")  # a password that was given is still checked
    assert short.returncode == 1 and "at least 10 characters" in short.stderr
