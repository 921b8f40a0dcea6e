"""Production and debug security settings, read in fresh processes.

The settings module reads the environment once, at import, so each test
but the last starts Python with only the variables it names.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.test import Client
from django.urls import reverse

PROJECT = Path(__file__).resolve().parent.parent
SECRET_KEY = "k" * 30 + "-production-test-key-" + "q" * 30
PRODUCTION = {
    "DJANGO_DEBUG": "0",
    "DJANGO_SECRET_KEY": SECRET_KEY,
    "DJANGO_ALLOWED_HOSTS": "dashboard.example.com",
}
# Prints the settings under test, and whether a request with proxy headers
# counts as HTTPS and which client address throttling takes from it.
REPORT = """
import json, django
from django.conf import settings
django.setup()
from django.test import RequestFactory
from dashboard.login_throttle import client_ip
request = RequestFactory().get(
    "/", HTTP_X_FORWARDED_PROTO="https", HTTP_X_REAL_IP="203.0.113.5"
)
names = [
    "DEBUG", "SECURE_SSL_REDIRECT", "SECURE_HSTS_SECONDS",
    "SECURE_HSTS_INCLUDE_SUBDOMAINS", "SECURE_HSTS_PRELOAD",
    "SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE", "SESSION_COOKIE_HTTPONLY",
    "CSRF_COOKIE_HTTPONLY", "SESSION_COOKIE_SAMESITE", "SECURE_REFERRER_POLICY",
    "SECURE_CONTENT_TYPE_NOSNIFF", "X_FRAME_OPTIONS", "SESSION_COOKIE_AGE",
    "CSRF_TRUSTED_ORIGINS", "AXES_FAILURE_LIMIT", "LOGIN_IP_FAILURE_LIMIT",
]
report = {name: getattr(settings, name) for name in names}
report["cool_off_seconds"] = settings.AXES_COOLOFF_TIME.total_seconds()
report["proxied_https_is_secure"] = request.is_secure()
report["client_ip"] = client_ip(request)
print(json.dumps(report))
"""


def run_python(env, *args):
    """Run Python in the project with env as the only Django-related variables."""
    clean = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("DJANGO_", "LOGIN_", "TEST_"))
    }
    clean.update(DJANGO_SETTINGS_MODULE="dashboard.settings", **env)
    return subprocess.run(
        [sys.executable, *args],
        cwd=PROJECT,
        env=clean,
        capture_output=True,
        text=True,
        timeout=120,
    )


def settings_report(env):
    result = run_python(env, "-c", REPORT)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_deploy_check_passes_in_production():
    result = run_python(
        PRODUCTION, "manage.py", "check", "--deploy", "--fail-level", "WARNING"
    )

    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "System check identified no issues" in output
    assert "WARNING" not in output
    assert "?: (" not in output


def test_production_defaults_are_secure():
    report = settings_report(PRODUCTION)

    assert report["DEBUG"] is False
    assert report["SECURE_SSL_REDIRECT"] is True
    assert report["SECURE_HSTS_SECONDS"] == 31_536_000
    assert report["SECURE_HSTS_INCLUDE_SUBDOMAINS"] is True
    assert report["SECURE_HSTS_PRELOAD"] is True
    assert report["SESSION_COOKIE_SECURE"] is True
    assert report["CSRF_COOKIE_SECURE"] is True
    assert report["SESSION_COOKIE_HTTPONLY"] is True
    assert report["CSRF_COOKIE_HTTPONLY"] is True
    assert report["SESSION_COOKIE_SAMESITE"] == "Lax"
    assert report["SECURE_REFERRER_POLICY"] == "same-origin"
    assert report["SECURE_CONTENT_TYPE_NOSNIFF"] is True
    assert report["X_FRAME_OPTIONS"] == "DENY"
    assert report["SESSION_COOKIE_AGE"] == 8 * 60 * 60
    assert report["AXES_FAILURE_LIMIT"] == 5
    assert report["LOGIN_IP_FAILURE_LIMIT"] == 20
    assert report["cool_off_seconds"] == 15 * 60


def test_proxy_headers_untrusted_by_default():
    report = settings_report(PRODUCTION)

    assert report["proxied_https_is_secure"] is False
    assert report["client_ip"] == "127.0.0.1"


def test_proxy_settings_from_environment():
    env = {
        **PRODUCTION,
        "DJANGO_SECURE_PROXY_SSL_HEADER": "X-Forwarded-Proto",
        "DJANGO_CLIENT_IP_HEADER": "X-Real-IP",
        "DJANGO_CSRF_TRUSTED_ORIGINS": "https://dashboard.example.com",
        "DJANGO_SECURE_SSL_REDIRECT": "0",
        "DJANGO_SECURE_HSTS_SECONDS": "3600",
        "DJANGO_SESSION_IDLE_MINUTES": "30",
        "LOGIN_FAILURE_LIMIT": "7",
        "LOGIN_IP_FAILURE_LIMIT": "70",
        "LOGIN_COOLOFF_MINUTES": "60",
    }

    report = settings_report(env)

    assert report["proxied_https_is_secure"] is True
    assert report["client_ip"] == "203.0.113.5"
    assert report["CSRF_TRUSTED_ORIGINS"] == ["https://dashboard.example.com"]
    assert report["SECURE_SSL_REDIRECT"] is False
    assert report["SECURE_HSTS_SECONDS"] == 3600
    assert report["SESSION_COOKIE_AGE"] == 30 * 60
    assert report["AXES_FAILURE_LIMIT"] == 7
    assert report["LOGIN_IP_FAILURE_LIMIT"] == 70
    assert report["cool_off_seconds"] == 60 * 60


def test_debug_ignores_https_settings():
    env = {
        "DJANGO_DEBUG": "1",
        "DJANGO_SECRET_KEY": SECRET_KEY,
        "DJANGO_SECURE_SSL_REDIRECT": "1",
        "DJANGO_SECURE_HSTS_SECONDS": "3600",
    }

    report = settings_report(env)

    assert report["SECURE_SSL_REDIRECT"] is False
    assert report["SECURE_HSTS_SECONDS"] == 0
    assert report["SESSION_COOKIE_SECURE"] is False
    assert report["CSRF_COOKIE_SECURE"] is False


def test_production_redirects_plain_http():
    code = (
        "import django; django.setup()\n"
        "from django.test import Client\n"
        "response = Client().get('/login/', HTTP_HOST='dashboard.example.com')\n"
        "print(response.status_code, response['Location'])\n"
    )

    result = run_python(PRODUCTION, "-c", code)

    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["301", "https://dashboard.example.com/login/"]


@pytest.mark.parametrize(
    ("value", "expected"),
    [("X-Forwarded-Proto", True), ("X_Forwarded_Proto", False), ("a b", False)],
)
def test_proxy_header_name_is_validated(value, expected):
    env = {**PRODUCTION, "DJANGO_SECURE_PROXY_SSL_HEADER": value}

    result = run_python(env, "-c", "import django; django.setup()")

    assert (result.returncode == 0) is expected, result.stderr
    if not expected:
        assert "DJANGO_SECURE_PROXY_SSL_HEADER" in result.stderr
        assert "is not an HTTP header name" in result.stderr


@pytest.mark.django_db
def test_debug_serves_plain_http():
    # The test settings run in debug, as scripts/run does.
    response = Client().get(reverse("login"))

    assert response.status_code == 200
    assert "Strict-Transport-Security" not in response
    assert not response.cookies["csrftoken"]["secure"]
