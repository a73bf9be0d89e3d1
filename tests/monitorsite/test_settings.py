"""Configuration from the environment: a bad value stops start-up with one clear line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from monitorsite.env import Env, redact_url

REPO = Path(__file__).resolve().parents[2]


def start_with(tmp_path: Path, **variables: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
    env |= {"WATCHPOST_DATA_DIR": str(tmp_path), "CELERY_BROKER_URL": "filesystem://"}
    env |= variables
    return subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("DEBUG", "maybe", "DEBUG: expected true or false, got 'maybe'"),
        ("DATABASE_URL", "mysql://db/watchpost", "DATABASE_URL: scheme must be one of"),
        ("CELERY_BROKER_URL", "redis://", "CELERY_BROKER_URL: no host in 'redis://'"),
        ("TIME_ZONE", "Mars/Olympus", "TIME_ZONE: unknown time zone 'Mars/Olympus'"),
        ("LOG_LEVEL", "LOUD", "LOG_LEVEL: expected one of DEBUG, INFO"),
        ("LOG_FORMAT", "xml", "LOG_FORMAT: expected one of text, json, got 'xml'"),
        ("SENTRY_TRACES_SAMPLE_RATE", "2", "SENTRY_TRACES_SAMPLE_RATE: must be between 0.0"),
        ("EMAIL_PORT", "smtp", "EMAIL_PORT: expected a whole number, got 'smtp'"),
        ("SECRET_KEY", "short", "SECRET_KEY: must be at least 32 characters long"),
        ("SITE_URL", "status.example.com", "SITE_URL: scheme must be one of http://, https://"),
        ("STATUS_PAGE_REFRESH_GRACE", "soon", "STATUS_PAGE_REFRESH_GRACE: expected a number"),
        (
            "STATUS_PAGE_REFRESH_GRACE",
            "60",
            "STATUS_PAGE_REFRESH_GRACE: must be between 0.0 and 20",
        ),
        (
            "PROBE_HTTP_CLIENT",
            "curl",
            "PROBE_HTTP_CLIENT: expected one of lean, aiohttp, got 'curl'",
        ),
    ],
)
def test_it_stops_with_one_line_naming_the_variable(
    tmp_path: Path, variable: str, value: str, message: str
) -> None:
    result = start_with(tmp_path, **{variable: value})
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_it_never_prints_a_database_password(tmp_path: Path) -> None:
    result = start_with(tmp_path, DATABASE_URL="mysql://app:hunter2@db/watchpost")
    assert result.returncode == 2
    assert "hunter2" not in result.stderr
    assert "mysql://app:***@db/watchpost" in result.stderr


def test_it_starts_on_the_embedded_default_with_nothing_set(tmp_path: Path) -> None:
    result = start_with(tmp_path)
    assert result.returncode == 0, result.stderr
    assert "System check identified no issues" in result.stdout
    # A secret key is generated once and kept, so sessions survive restarts.
    key = (tmp_path / "secret_key").read_text()
    assert len(key) >= 50
    assert start_with(tmp_path).returncode == 0
    assert (tmp_path / "secret_key").read_text() == key


def test_it_reads_secrets_from_files(tmp_path: Path) -> None:
    secret = tmp_path / "key"
    secret.write_text("x" * 40 + "\n")
    assert Env({"SECRET_KEY_FILE": str(secret)}).str("SECRET_KEY") == "x" * 40
    with pytest.raises(ImproperlyConfigured, match="SECRET_KEY: set either"):
        Env({"SECRET_KEY": "a", "SECRET_KEY_FILE": str(secret)}).str("SECRET_KEY")
    with pytest.raises(ImproperlyConfigured, match="EMAIL_HOST_PASSWORD_FILE: cannot read"):
        Env({"EMAIL_HOST_PASSWORD_FILE": str(tmp_path / "missing")}).str("EMAIL_HOST_PASSWORD")


def test_it_rejects_time_limits_that_outlast_the_broker(tmp_path: Path) -> None:
    result = start_with(tmp_path, CELERY_TASK_TIME_LIMIT="5000")
    assert result.returncode == 2
    assert "CELERY_TASK_SOFT_TIME_LIMIT < CELERY_TASK_TIME_LIMIT < CELERY_VISIBILITY_TIMEOUT" in (
        result.stderr
    )


def test_it_parses_lists_and_booleans() -> None:
    env = Env({"ALLOWED_HOSTS": " a.example.com, ,b.example.com ", "DEBUG": "Yes"})
    assert env.list("ALLOWED_HOSTS", []) == ["a.example.com", "b.example.com"]
    assert env.bool("DEBUG") is True
    assert Env({}).int("EMAIL_PORT", 25) == 25
    with pytest.raises(ImproperlyConfigured, match="EMAIL_PORT: must be at least 1"):
        Env({"EMAIL_PORT": "0"}).int("EMAIL_PORT", 25, minimum=1)


def test_it_redacts_only_the_password() -> None:
    assert redact_url("redis://:pw@cache:6379/0") == "redis://:***@cache:6379/0"
    assert redact_url("postgres://u@db/x") == "postgres://u@db/x"


def prepare_with(tmp_path: Path, **variables: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
    env |= {"WATCHPOST_DATA_DIR": str(tmp_path), "CELERY_BROKER_URL": "filesystem://"}
    env |= variables
    return subprocess.run(
        [sys.executable, "manage.py", "prepare", "--no-demo"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_make_run_says_which_server_is_down_and_how_to_fix_it(tmp_path: Path) -> None:
    from tests.targets import closed_port

    port = closed_port()
    result = prepare_with(tmp_path, DATABASE_URL=f"postgres://watchpost:pw@127.0.0.1:{port}/wp")
    assert result.returncode != 0
    assert f"Cannot reach the database at postgres://watchpost:***@127.0.0.1:{port}/wp" in (
        result.stderr
    )
    assert "Start the database server, or fix DATABASE_URL" in result.stderr
    assert "Traceback" not in result.stderr
    result = prepare_with(tmp_path, CELERY_BROKER_URL=f"redis://127.0.0.1:{port}/0")
    assert result.returncode != 0
    assert f"Cannot reach the Celery broker at redis://127.0.0.1:{port}/0" in result.stderr
    assert "Start Redis, or fix CELERY_BROKER_URL" in result.stderr
