"""The watched-tags pages: roles, audit rows and escaping."""

from unittest import mock

import pytest
from django.contrib.auth.models import Group
from django.test import Client
from django.urls import reverse
from pytest_django.asserts import assertContains, assertNotContains, assertRedirects

from roundtable_sync import tasks
from roundtable_sync.models import WatchedTag
from workflow.models import AuditEvent

pytestmark = pytest.mark.django_db

TAGS = reverse("tag_list")
ADD = reverse("tag_add")


@pytest.fixture
def queued_polls():
    """Replace django-q2's async_task, so queued polls are recorded, not run."""
    with mock.patch.object(tasks, "async_task", autospec=True) as async_task:
        yield async_task


def signed_in(django_user_model, username, group):
    user = django_user_model.objects.create_user(username, password="unused")
    Group.objects.get(name=group).user_set.add(user)
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def analyst_client(django_user_model):
    return signed_in(django_user_model, "ana", "analysts")


@pytest.fixture
def viewer_client(django_user_model):
    return signed_in(django_user_model, "vic", "viewers")


@pytest.fixture
def watched_tag():
    return WatchedTag.objects.create(tag="checkout-flow")


def post_urls(pk):
    return [
        ADD,
        reverse("tag_pause", args=[pk]),
        reverse("tag_resume", args=[pk]),
        reverse("tag_remove", args=[pk]),
    ]


# Roles


def test_anonymous_is_sent_to_login(client, watched_tag):
    for url in [TAGS, *post_urls(watched_tag.pk)]:
        response = client.post(url) if url != TAGS else client.get(url)

        assertRedirects(response, f"{reverse('login')}?next={url}")


def test_viewer_sees_list_without_actions(viewer_client, watched_tag):
    response = viewer_client.get(TAGS)

    assertContains(response, "checkout-flow")
    assertNotContains(response, ADD)
    assertNotContains(response, reverse("tag_pause", args=[watched_tag.pk]))


def test_viewer_post_is_forbidden(viewer_client, watched_tag, queued_polls):
    for url in post_urls(watched_tag.pk):
        response = viewer_client.post(url, {"tags": "signup"})

        assert response.status_code == 403
    assert list(WatchedTag.objects.values_list("tag", "is_active")) == [
        ("checkout-flow", True)
    ]
    assert AuditEvent.objects.count() == 0


def test_analyst_sees_actions(analyst_client, watched_tag):
    response = analyst_client.get(TAGS)

    assertContains(response, ADD)
    assertContains(response, reverse("tag_pause", args=[watched_tag.pk]))


def test_list_links_to_tag_sessions(analyst_client, watched_tag):
    response = analyst_client.get(TAGS)

    assertContains(response, f"{reverse('session_list')}?tag=checkout-flow")


# Actions and their audit rows


def test_add_watches_tags_and_audits(analyst_client, queued_polls):
    response = analyst_client.post(
        ADD, {"tags": " checkout-flow \n\nsignup\n", "note": "fraud wave"}
    )

    assertRedirects(response, TAGS)
    added = WatchedTag.objects.get(tag="checkout-flow")
    assert added.note == "fraud wave"
    assert added.added_by.get_username() == "ana"
    assert WatchedTag.objects.filter(tag="signup").exists()
    assert queued_polls.call_count == 2
    events = AuditEvent.objects.order_by("id")
    assert [(e.action, e.target) for e in events] == [
        ("tag_added", "checkout-flow"),
        ("tag_added", "signup"),
    ]
    assert events[0].actor_label == "ana"
    assert events[0].details == {"note": "fraud wave"}


def test_add_skips_watched_tag(analyst_client, watched_tag, queued_polls):
    response = analyst_client.post(ADD, {"tags": "checkout-flow"}, follow=True)

    assertContains(response, "Already watched, skipped: checkout-flow.")
    assert WatchedTag.objects.count() == 1
    assert AuditEvent.objects.count() == 0


def test_add_invalid_tag_changes_nothing(analyst_client, queued_polls):
    response = analyst_client.post(ADD, {"tags": "signup\n..\n"})

    assert response.status_code == 200
    assertContains(response, "cannot be requested from the tags endpoint")
    assert WatchedTag.objects.count() == 0
    assert AuditEvent.objects.count() == 0


def test_pause_and_resume_are_audited(analyst_client, watched_tag):
    analyst_client.post(reverse("tag_pause", args=[watched_tag.pk]))
    watched_tag.refresh_from_db()
    assert watched_tag.is_active is False

    analyst_client.post(reverse("tag_resume", args=[watched_tag.pk]))

    watched_tag.refresh_from_db()
    assert watched_tag.is_active is True
    actions = list(AuditEvent.objects.order_by("id").values_list("action", flat=True))
    assert actions == ["tag_paused", "tag_resumed"]


def test_remove_is_audited(analyst_client, watched_tag):
    response = analyst_client.post(reverse("tag_remove", args=[watched_tag.pk]))

    assertRedirects(response, TAGS)
    assert WatchedTag.objects.count() == 0
    event = AuditEvent.objects.get()
    assert event.action == "tag_removed"
    assert event.target == "checkout-flow"


def test_get_on_action_is_rejected(analyst_client, watched_tag):
    response = analyst_client.get(reverse("tag_remove", args=[watched_tag.pk]))

    assert response.status_code == 405
    assert WatchedTag.objects.count() == 1


def test_hostile_tag_is_escaped(analyst_client):
    WatchedTag.objects.create(tag='"><img src=x onerror=alert(1)>', note="<script>")

    response = analyst_client.get(TAGS)

    assertNotContains(response, "<img src=x")
    assertNotContains(response, "<script>")
    assertContains(response, "&quot;&gt;&lt;img src=x onerror=alert(1)&gt;")
