"""Login throttling: lockouts by username and by client address, and cool-off."""

from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.test import Client, RequestFactory
from django.urls import reverse

from dashboard.login_throttle import client_ip

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
LOGIN = reverse("login")
PASSWORD = "correct horse battery staple"


@pytest.fixture(autouse=True)
def limits(settings, time_machine):
    time_machine.move_to(NOW, tick=False)
    settings.AXES_FAILURE_LIMIT = 3
    settings.LOGIN_IP_FAILURE_LIMIT = 5
    settings.AXES_COOLOFF_TIME = timedelta(minutes=15)
    settings.LOGIN_CLIENT_IP_META_KEY = ""
    return settings


@pytest.fixture
def alice(django_user_model):
    return django_user_model.objects.create_user("alice", password=PASSWORD)


@pytest.fixture
def bob(django_user_model):
    return django_user_model.objects.create_user("bob", password=PASSWORD)


def log_in(username, password, address="192.0.2.10", **headers):
    """POST the login form from a fresh client; return the response."""
    client = Client(REMOTE_ADDR=address)
    response = client.post(
        LOGIN, {"username": username, "password": password}, headers=headers
    )
    response.signed_in = "_auth_user_id" in client.session
    return response


def fail(username, times, address="192.0.2.10", **headers):
    for _ in range(times):
        log_in(username, "wrong password", address, **headers)


def test_right_password_signs_in(alice):
    response = log_in("alice", PASSWORD)

    assert response.status_code == 302
    assert response.signed_in


def test_failures_below_limit_do_not_lock(alice):
    fail("alice", 2)

    response = log_in("alice", PASSWORD)

    assert response.status_code == 302
    assert response.signed_in


def test_limit_locks_out_even_right_password(alice):
    fail("alice", 3)

    response = log_in("alice", PASSWORD)

    assert response.status_code == 429
    assert not response.signed_in
    html = response.content.decode()
    assert "Too many failed logins" in html
    # The attempt above restarted the wait, so it ends 15 minutes from now.
    assert "Try again after" in html
    assert "2026-11-20 12:15 UTC" in html
    assert "in 15 minutes" in html
    assert response["Retry-After"] == "900"


def test_lockout_message_uses_dashboard_time_zone(alice, settings):
    settings.DASHBOARD_TIME_ZONE = "Europe/Paris"
    fail("alice", 3)

    response = log_in("alice", PASSWORD)

    assert "2026-11-20 13:15 CET" in response.content.decode()


def test_cool_off_unlocks(alice, time_machine):
    fail("alice", 3)
    time_machine.shift(timedelta(minutes=15, seconds=1))

    response = log_in("alice", PASSWORD)

    assert response.status_code == 302
    assert response.signed_in


def test_attempt_during_lockout_restarts_cool_off(alice, time_machine):
    fail("alice", 3)
    time_machine.shift(timedelta(minutes=10))
    assert log_in("alice", PASSWORD).status_code == 429
    time_machine.shift(timedelta(minutes=10))

    response = log_in("alice", PASSWORD)

    assert response.status_code == 429


def test_success_resets_failure_count(alice):
    fail("alice", 2)
    assert log_in("alice", PASSWORD).status_code == 302
    fail("alice", 2)

    response = log_in("alice", PASSWORD)

    assert response.status_code == 302
    assert response.signed_in


def test_username_lockout_spares_others_on_same_address(alice, bob):
    fail("alice", 3)

    response = log_in("bob", PASSWORD)

    assert response.status_code == 302
    assert response.signed_in


def test_username_lockout_applies_from_any_address(alice):
    fail("alice", 3, address="192.0.2.10")

    response = log_in("alice", PASSWORD, address="198.51.100.7")

    assert response.status_code == 429


def test_address_limit_locks_every_username(bob):
    for number in range(5):
        fail(f"guess{number}", 1)

    response = log_in("bob", PASSWORD)

    assert response.status_code == 429
    assert not response.signed_in


def test_address_limit_spares_other_addresses(bob):
    for number in range(5):
        fail(f"guess{number}", 1, address="192.0.2.10")

    response = log_in("bob", PASSWORD, address="198.51.100.7")

    assert response.status_code == 302


def test_forwarded_header_ignored_by_default(bob):
    # Without DJANGO_CLIENT_IP_HEADER, a client rotating X-Forwarded-For
    # still counts against its own address.
    for number in range(5):
        fail(f"guess{number}", 1, x_forwarded_for=f"203.0.113.{number}")

    response = log_in("bob", PASSWORD, x_forwarded_for="203.0.113.99")

    assert response.status_code == 429


def test_configured_header_names_client(bob, limits):
    limits.LOGIN_CLIENT_IP_META_KEY = "HTTP_X_FORWARDED_FOR"
    for number in range(5):
        fail(f"guess{number}", 1, x_forwarded_for="203.0.113.5")

    other_client = log_in("bob", PASSWORD, x_forwarded_for="203.0.113.6")
    same_client = log_in("bob", PASSWORD, x_forwarded_for="198.51.100.1, 203.0.113.5")

    assert other_client.status_code == 302
    assert same_client.status_code == 429


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("203.0.113.5", "203.0.113.5"),
        ("198.51.100.1, 203.0.113.5", "203.0.113.5"),
        (" 2001:db8::1 ", "2001:db8::1"),
        ("not an address", "10.0.0.2"),
        ("203.0.113.5, ", "10.0.0.2"),
        ("", "10.0.0.2"),
    ],
)
def test_client_ip_takes_last_header_entry(limits, header, expected):
    limits.LOGIN_CLIENT_IP_META_KEY = "HTTP_X_REAL_IP"
    request = RequestFactory().post(
        LOGIN, REMOTE_ADDR="10.0.0.2", HTTP_X_REAL_IP=header
    )

    assert client_ip(request) == expected


def test_client_ip_is_peer_without_header_setting():
    request = RequestFactory().post(
        LOGIN, REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR="203.0.113.5"
    )

    assert client_ip(request) == "10.0.0.2"


def test_created_analyst_can_log_in(monkeypatch):
    monkeypatch.setattr("sys.stdin", StringIO(PASSWORD + "\n"))
    call_command(
        "create_analyst",
        "carol",
        "--role",
        "analyst",
        "--password-stdin",
        stdout=StringIO(),
    )

    response = log_in("carol", PASSWORD)

    assert response.status_code == 302
    assert response.signed_in
