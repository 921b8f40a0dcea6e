from datetime import timedelta

import pytest
from django.contrib.auth.models import AnonymousUser
from django.test import RequestFactory
from django.urls import reverse
from pytest_django.asserts import assertContains, assertNotContains

from dashboard.context_processors import banners, polling_status
from roundtable_sync.account import key_fingerprint
from roundtable_sync.models import AccountState, PauseReason
from tests.fixtures_web import (  # noqa: F401
    NOW,
    analyst_client_fixture,
    analyst_fixture,
    anonymous_client_fixture,
    frozen_now_fixture,
)

pytestmark = pytest.mark.django_db

WATCHLIST = reverse("watchlist")
SANDBOX_BANNER = "This dashboard shows sandbox data, not your Roundtable account."


@pytest.fixture(autouse=True)
def poll_interval(settings):
    settings.ROUNDTABLE_POLL_INTERVAL = 300


def set_account(**fields):
    AccountState.objects.update_or_create(pk=1, defaults=fields)


# polling_status()


def test_status_fresh_heartbeat_is_not_stale(frozen_now):
    set_account(heartbeat_at=NOW - timedelta(seconds=600))

    status = polling_status(NOW)

    assert status.stale is False


def test_status_old_heartbeat_is_stale(frozen_now):
    set_account(heartbeat_at=NOW - timedelta(seconds=601))

    status = polling_status(NOW)

    assert status.stale is True


def test_status_missing_heartbeat_is_stale(frozen_now):
    status = polling_status(NOW)

    assert status.heartbeat_at is None
    assert status.stale is True


def test_status_ended_pause_is_ignored(frozen_now):
    set_account(
        paused_until=NOW - timedelta(seconds=1),
        pause_reason=PauseReason.RATE_LIMITED,
    )

    status = polling_status(NOW)

    assert status.pause is None


def test_status_uses_one_query_when_not_paused(frozen_now, django_assert_num_queries):
    set_account(heartbeat_at=NOW)

    with django_assert_num_queries(1):
        polling_status(NOW)


def test_status_uses_two_queries_when_paused(frozen_now, django_assert_num_queries):
    set_account(
        heartbeat_at=NOW,
        paused_until=NOW + timedelta(minutes=1),
        pause_reason=PauseReason.RATE_LIMITED,
    )

    with django_assert_num_queries(2):
        status = polling_status(NOW)

    assert status.pause is not None


# banners()


def test_banners_skip_status_for_anonymous(rf: RequestFactory, settings):
    settings.ROUNDTABLE_SANDBOX = True
    request = rf.get("/")
    request.user = AnonymousUser()

    context = banners(request)

    assert context == {"roundtable_sandbox": True}


def test_banners_read_status_lazily(
    rf: RequestFactory, analyst, django_assert_num_queries
):
    request = rf.get("/")
    request.user = analyst

    with django_assert_num_queries(0):
        banners(request)


# Rendered banners


def test_sandbox_banner_shown(analyst_client, settings):
    settings.ROUNDTABLE_SANDBOX = True

    response = analyst_client.get(WATCHLIST)

    assertContains(response, SANDBOX_BANNER)


def test_sandbox_banner_on_login_page(anonymous_client, settings):
    settings.ROUNDTABLE_SANDBOX = True

    response = anonymous_client.get(reverse("login"))

    assertContains(response, SANDBOX_BANNER)


def test_sandbox_banner_hidden_outside_sandbox(analyst_client, settings):
    settings.ROUNDTABLE_SANDBOX = False

    response = analyst_client.get(WATCHLIST)

    assertNotContains(response, SANDBOX_BANNER)


def test_login_page_hides_polling_status(anonymous_client):
    response = anonymous_client.get(reverse("login"))

    assertNotContains(response, "worker")


def test_rate_limit_pause_banner(analyst_client):
    set_account(
        heartbeat_at=NOW,
        paused_until=NOW + timedelta(minutes=2),
        pause_reason=PauseReason.RATE_LIMITED,
        pause_error="The API rate-limited the request (HTTP 429).",
    )

    response = analyst_client.get(WATCHLIST)

    assertContains(response, "Polling is paused account-wide")
    assertContains(response, "2026-03-02 12:02:00 UTC</time>: Rate limited.")
    assertContains(response, "The API rate-limited the request (HTTP 429).")
    assertNotContains(response, "ROUNDTABLE_API_KEY")


def test_rejected_key_pause_banner(analyst_client, settings):
    set_account(
        heartbeat_at=NOW,
        paused_until=NOW + timedelta(hours=1),
        pause_reason=PauseReason.KEY_REJECTED,
        pause_error="The API rejected the key (HTTP 401).",
        rejected_key_fingerprint=key_fingerprint(settings.ROUNDTABLE_API_KEY),
    )

    response = analyst_client.get(WATCHLIST)

    assertContains(response, "API key rejected.")
    assertContains(response, "The API rejected the key (HTTP 401).")
    assertContains(response, "Set a valid ROUNDTABLE_API_KEY")


def test_no_pause_banner_when_not_paused(analyst_client):
    set_account(heartbeat_at=NOW)

    response = analyst_client.get(WATCHLIST)

    assertNotContains(response, "Polling is paused")


def test_heartbeat_shown(analyst_client):
    set_account(heartbeat_at=NOW - timedelta(seconds=40))

    response = analyst_client.get(WATCHLIST)

    assertContains(response, "Polling last ran <time")
    assertContains(response, "2026-03-02 11:59:20 UTC")
    assertNotContains(response, "qcluster")


def test_stale_heartbeat_warning(analyst_client):
    set_account(heartbeat_at=NOW - timedelta(minutes=11))

    response = analyst_client.get(WATCHLIST)

    assertContains(response, "The worker has not polled since <time")
    assertContains(response, "2026-03-02 11:49:00 UTC")
    assertContains(response, "python manage.py qcluster")


def test_missing_heartbeat_warning(analyst_client):
    response = analyst_client.get(WATCHLIST)

    assertContains(response, "The worker has never polled")
    assertContains(response, "python manage.py qcluster")
