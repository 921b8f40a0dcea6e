"""Sessions end after the idle time, and logging out takes a POST with CSRF."""

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from django.contrib.sessions.models import Session as StoredSession
from django.test import Client
from django.urls import reverse

from dashboard.idle_sessions import RENEW_INTERVAL_SECONDS

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
OVERVIEW = reverse("overview")
LOGOUT = reverse("logout")
TEMPLATES = Path(__file__).resolve().parent.parent / "templates"


@pytest.fixture
def clock(time_machine):
    time_machine.move_to(NOW, tick=False)
    return time_machine


@pytest.fixture
def client(clock, django_user_model, settings):
    settings.SESSION_COOKIE_AGE = 8 * 60 * 60
    user = django_user_model.objects.create_user("analyst", password="unused")
    client = Client()
    client.force_login(user)
    return client


def stored_expiry(client):
    return StoredSession.objects.get(session_key=client.session.session_key).expire_date


def test_page_within_idle_time_is_served(client, clock):
    clock.shift(timedelta(hours=7, minutes=59))

    response = client.get(OVERVIEW)

    assert response.status_code == 200


def test_page_after_idle_time_goes_to_login(client, clock):
    clock.shift(timedelta(hours=8, seconds=1))

    response = client.get(OVERVIEW)

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


def test_request_renews_expiry(client, clock):
    clock.shift(timedelta(hours=7))
    assert client.get(OVERVIEW).status_code == 200
    assert stored_expiry(client) == NOW + timedelta(hours=15)
    clock.shift(timedelta(hours=7))

    response = client.get(OVERVIEW)

    assert response.status_code == 200
    assert stored_expiry(client) == NOW + timedelta(hours=22)


def test_renewal_sets_cookie_age(client, clock):
    clock.shift(timedelta(hours=1))

    response = client.get(OVERVIEW)

    assert response.cookies["sessionid"]["max-age"] == 8 * 60 * 60


def test_requests_within_interval_do_not_write(client, clock):
    clock.shift(timedelta(seconds=RENEW_INTERVAL_SECONDS - 1))

    response = client.get(OVERVIEW)

    assert "sessionid" not in response.cookies
    assert stored_expiry(client) == NOW + timedelta(hours=8)


def test_get_does_not_log_out(client):
    response = client.get(LOGOUT)

    assert response.status_code == 405
    assert client.get(OVERVIEW).status_code == 200


def test_logout_post_needs_csrf_token(clock, django_user_model):
    user = django_user_model.objects.create_user("analyst", password="unused")
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)

    forged = client.post(LOGOUT)
    page = client.get(OVERVIEW)
    token = re.search(
        r'name="csrfmiddlewaretoken" value="([^"]+)"', page.content.decode()
    ).group(1)
    logged_out = client.post(LOGOUT, {"csrfmiddlewaretoken": token})

    assert forged.status_code == 403
    assert page.status_code == 200
    assert logged_out.status_code == 302
    assert client.get(OVERVIEW).status_code == 302


def test_templates_log_out_only_by_post_form():
    logout_tags = 0
    for template in TEMPLATES.rglob("*.html"):
        text = template.read_text()
        for match in re.finditer(r"<[^>]*\{% url 'logout' %\}[^>]*>", text):
            tag = match.group(0)
            assert tag.startswith("<form"), f"{template}: {tag}"
            assert 'method="post"' in tag, f"{template}: {tag}"
            form_body = text[match.end() : text.index("</form>", match.end())]
            assert "{% csrf_token %}" in form_body, f"{template}: {tag}"
            logout_tags += 1

    assert logout_tags >= 1
