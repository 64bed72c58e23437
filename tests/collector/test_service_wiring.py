"""The service hands the web app what its config sets up: account mail over SMTP, enrollment."""

from __future__ import annotations

from pathlib import Path

import pytest

from collector.accounts.service import AccountService
from collector.config import CollectorConfig, CollectorConfigError, load_config
from collector.enrollment.service import EnrollmentService
from collector.service import account_service_from_config, enrollment_from_config
from collector.storage import create_engine_from_url, migrate


def test_account_mail_goes_over_smtp_only_when_smtp_is_configured() -> None:
    assert account_service_from_config(CollectorConfig()) is None  # the app logs account mail instead
    config = load_config(
        None, env={}, overrides={"notify_smtp_host": "127.0.0.1", "notify_public_url": "https://kassa.example.ru"}
    )
    service = account_service_from_config(config)
    assert isinstance(service, AccountService)
    assert service.settings.base_url == "https://kassa.example.ru"
    assert config.public_url == "https://kassa.example.ru"


def test_enrollment_is_offered_only_with_a_credential_backend(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'c.db'}"
    migrate(url)
    engine = create_engine_from_url(url)
    try:
        assert enrollment_from_config(CollectorConfig(db_url=url), engine) is None
        half = CollectorConfig(db_url=url, enroll_backend="files", broker_password_file=str(tmp_path / "p"))
        assert enrollment_from_config(half, engine) is None  # no ACL file: not set up, no routes
        files = CollectorConfig(
            db_url=url,
            enroll_backend="files",
            broker_password_file=str(tmp_path / "passwd"),
            broker_acl_file=str(tmp_path / "acl"),
        )
        assert isinstance(enrollment_from_config(files, engine), EnrollmentService)
    finally:
        engine.dispose()


def test_unknown_auth_mode_is_refused_by_name() -> None:
    with pytest.raises(CollectorConfigError, match="web_auth"):
        load_config(None, env={}, overrides={"web_auth": "everyone"})
