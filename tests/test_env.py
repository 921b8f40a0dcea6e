import os
import subprocess
import sys

import pytest
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from dashboard.env import (
    env_bool,
    env_database,
    env_float,
    env_http_url,
    env_int,
    env_list,
    env_log_level,
    env_redis_url,
)


@pytest.mark.parametrize(
    ("raw", "expected"), [("1", True), ("yes", True), ("off", False), ("", False)]
)
def test_env_bool_accepts_common_spellings(monkeypatch, raw, expected):
    monkeypatch.setenv("FLAG", raw)

    assert env_bool("FLAG") is expected


def test_env_bool_rejects_other_values(monkeypatch):
    monkeypatch.setenv("FLAG", "maybe")

    with pytest.raises(ImproperlyConfigured, match="FLAG='maybe' is not a boolean"):
        env_bool("FLAG")


def test_env_int_default_and_bounds(monkeypatch):
    assert env_int("MISSING_NUMBER", 300) == 300
    monkeypatch.setenv("INTERVAL", "59")

    with pytest.raises(ImproperlyConfigured, match="below the minimum of 60"):
        env_int("INTERVAL", 300, minimum=60)


def test_env_int_rejects_text(monkeypatch):
    monkeypatch.setenv("INTERVAL", "5m")

    with pytest.raises(ImproperlyConfigured, match="INTERVAL='5m' is not a whole"):
        env_int("INTERVAL", 300)


def test_env_list_splits_and_trims(monkeypatch):
    monkeypatch.setenv("HOSTS", " a.example , ,b.example")

    assert env_list("HOSTS") == ["a.example", "b.example"]


def test_env_http_url_strips_slash_and_rejects_others(monkeypatch):
    monkeypatch.setenv("API", "https://api.poh.org/")
    assert env_http_url("API", "") == "https://api.poh.org"

    monkeypatch.setenv("API", "ftp://api.poh.org")
    with pytest.raises(ImproperlyConfigured, match="not an http or https URL"):
        env_http_url("API", "")


def load_settings(**env):
    """Import the product's settings in a fresh interpreter with ``env``."""
    clean = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DJANGO_", "ROUNDTABLE_", "DATABASE_"))
    }
    return subprocess.run(
        [sys.executable, "-c", "import dashboard.settings"],
        cwd=settings.BASE_DIR,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_production_refuses_to_start_without_secret_key():
    result = load_settings(DJANGO_DEBUG="0")

    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY is missing" in result.stderr


def test_production_refuses_short_secret_key():
    result = load_settings(DJANGO_DEBUG="0", DJANGO_SECRET_KEY="short")

    assert "shorter than 50 characters" in result.stderr


def test_production_starts_with_real_secret_key():
    result = load_settings(DJANGO_DEBUG="0", DJANGO_SECRET_KEY="k" * 60)

    assert result.returncode == 0, result.stderr


def test_bad_poll_interval_stops_start_up():
    result = load_settings(DJANGO_DEBUG="1", ROUNDTABLE_POLL_INTERVAL="30")

    assert "ROUNDTABLE_POLL_INTERVAL='30' is below the minimum of 60" in result.stderr


@pytest.mark.parametrize("raw", ["nan", "inf", "-inf"])
def test_env_float_rejects_non_finite(monkeypatch, raw):
    monkeypatch.setenv("DEADLINE", raw)

    with pytest.raises(ImproperlyConfigured, match="is not a finite number"):
        env_float("DEADLINE", 60.0, minimum=1.0)


def test_env_log_level_names_bad_value(monkeypatch):
    monkeypatch.setenv("LOG_LEVEL", "verbose")

    with pytest.raises(ImproperlyConfigured, match="LOG_LEVEL='VERBOSE' is not a"):
        env_log_level("LOG_LEVEL")


def test_env_log_level_accepts_lower_case(monkeypatch):
    monkeypatch.setenv("LOG_LEVEL", "debug")

    assert env_log_level("LOG_LEVEL") == "DEBUG"


def test_manage_py_prints_configuration_error_without_traceback():
    clean = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DJANGO_", "ROUNDTABLE_", "DATABASE_"))
    }

    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=settings.BASE_DIR,
        env={**clean, "DJANGO_DEBUG": "0"},
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 1
    assert result.stderr.startswith("Configuration error: DJANGO_SECRET_KEY")
    assert "Traceback" not in result.stderr


def test_env_redis_url_accepts_redis_schemes(monkeypatch):
    assert env_redis_url("MISSING_BROKER") == ""
    monkeypatch.setenv("BROKER", "redis://127.0.0.1:6379/3")

    assert env_redis_url("BROKER") == "redis://127.0.0.1:6379/3"


def test_env_redis_url_hides_password_in_error(monkeypatch):
    monkeypatch.setenv("BROKER", "http://user:s3cret@127.0.0.1:6379/0")

    with pytest.raises(ImproperlyConfigured, match="scheme 'http'") as raised:
        env_redis_url("BROKER")
    assert "s3cret" not in str(raised.value)


def test_env_database_parses_url(monkeypatch):
    monkeypatch.setenv("DB", "postgres://user:pw@127.0.0.1:5433/name")

    database = env_database("DB", "sqlite:///default.sqlite3")

    assert database["ENGINE"] == "django.db.backends.postgresql"
    assert database["PORT"] == 5433
    assert env_database("MISSING_DB", "sqlite:///d.sqlite3")["NAME"] == "d.sqlite3"


@pytest.mark.parametrize(
    ("raw", "scheme"),
    [
        ("foo", "''"),
        ("mysqlx://user:s3cret@127.0.0.1/name", "'mysqlx'"),
        ("postgres://user:s3cret@127.0.0.1:port/name", "'postgres'"),
    ],
)
def test_env_database_rejects_invalid_url(monkeypatch, raw, scheme):
    monkeypatch.setenv("DB", raw)

    with pytest.raises(ImproperlyConfigured, match="DB with the scheme") as raised:
        env_database("DB", "sqlite:///default.sqlite3")
    assert scheme in str(raised.value)
    assert "s3cret" not in str(raised.value)


def print_with_settings(expression, **environment):
    """Print ``expression`` in a fresh process that loads the product's settings.

    Settings are read once per process, so each environment needs its own.
    """
    code = (
        "import django; django.setup(); from django.conf import settings; "
        f"print({expression})"
    )
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("DATABASE_")
    }
    env.update(DJANGO_SETTINGS_MODULE="dashboard.settings", DJANGO_DEBUG="1")
    env.update(environment)
    return subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        cwd=settings.BASE_DIR,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_broker_url_selects_redis_broker():
    result = print_with_settings(
        "sorted(k for k in ('orm', 'redis') if k in settings.Q_CLUSTER)",
        ROUNDTABLE_BROKER_URL="redis://127.0.0.1:6379/9",
    )

    assert result.stdout.strip() == "['redis']", result.stderr


@pytest.mark.parametrize(
    "database_url",
    ["sqlite:///db.sqlite3", "postgres://user@127.0.0.1:5432/name"],
)
def test_connections_kept_on_every_database(database_url):
    result = print_with_settings(
        "settings.DATABASES['default']['CONN_MAX_AGE'], "
        "settings.DATABASES['default']['CONN_HEALTH_CHECKS']",
        DATABASE_URL=database_url,
    )

    assert result.stdout.strip() == "60 True", result.stderr
