from datetime import timedelta

import pytest
from django.conf import settings
from django.contrib.auth.models import Group
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from roundtable_sync.account import active_pause, key_fingerprint
from roundtable_sync.models import AccountState, PauseReason
from workflow.models import AuditEvent


@pytest.fixture
def paused_account(db):
    return AccountState.objects.create(
        pk=1,
        paused_until=timezone.now() + timedelta(hours=1),
        pause_reason=PauseReason.KEY_REJECTED,
        pause_error="Roundtable rejected the API key (HTTP 401).",
        rejected_key_fingerprint=key_fingerprint(settings.ROUNDTABLE_API_KEY),
    )


def client_in_group(django_user_model, username, group):
    user = django_user_model.objects.create_user(username)
    Group.objects.get(name=group).user_set.add(user)
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def signed_in(django_user_model):
    return client_in_group(django_user_model, "analyst", "analysts")


@pytest.fixture
def viewer(django_user_model):
    return client_in_group(django_user_model, "viewer", "viewers")


@pytest.mark.django_db
def test_resume_ends_pause_and_redirects_back(signed_in, paused_account):
    response = signed_in.post(reverse("polling_resume"), {"next": "/watchlist/"})

    assert response.status_code == 302
    assert response["Location"] == "/watchlist/"
    state = AccountState.load()
    assert state.paused_until <= timezone.now()
    assert active_pause(timezone.now()) is None
    # The reason stays, so the next dispatch polls one user as a probe.
    assert state.pause_reason == PauseReason.KEY_REJECTED


@pytest.mark.django_db
def test_resume_ignores_offsite_next(signed_in, paused_account):
    response = signed_in.post(
        reverse("polling_resume"), {"next": "https://evil.example/"}
    )

    assert response["Location"] == "/"


@pytest.mark.django_db
def test_resume_requires_login_and_post(paused_account, signed_in):
    anonymous = Client().post(reverse("polling_resume"))
    get = signed_in.get(reverse("polling_resume"))

    assert anonymous.status_code == 302
    assert "/login/" in anonymous["Location"]
    assert get.status_code == 405
    assert AccountState.load().pause_reason == PauseReason.KEY_REJECTED


@pytest.mark.django_db
def test_pause_banner_offers_resume(signed_in, paused_account):
    response = signed_in.get(reverse("watchlist"))

    assert b"Resume polling now" in response.content


@pytest.mark.django_db
def test_resume_is_audited(signed_in, paused_account):
    signed_in.post(reverse("polling_resume"))

    event = AuditEvent.objects.get()
    assert event.action == "polling_resumed"
    assert event.actor_label == "analyst"


@pytest.mark.django_db
def test_viewer_cannot_resume(viewer, paused_account):
    response = viewer.post(reverse("polling_resume"))

    assert response.status_code == 403
    assert AccountState.load().pause_reason == PauseReason.KEY_REJECTED
    assert not AuditEvent.objects.exists()


@pytest.mark.django_db
def test_pause_banner_hides_resume_from_viewer(viewer, paused_account):
    response = viewer.get(reverse("watchlist"))

    assert b"Polling is paused account-wide" in response.content
    assert b"Resume polling now" not in response.content
