"""The audit page: who may read it, order, filters, pages and escaping."""

from datetime import timedelta

import pytest
from django.urls import reverse
from pytest_django.asserts import assertContains, assertNotContains, assertRedirects

from tests.fixtures_web import (  # noqa: F401
    NOW,
    analyst_client_fixture,
    analyst_fixture,
    anonymous_client_fixture,
    frozen_now_fixture,
    viewer_client_fixture,
    viewer_fixture,
)
from workflow import audit, views
from workflow.models import AuditEvent

pytestmark = pytest.mark.django_db

AUDIT = reverse("workflow:audit_list")
SCRIPT = "<script>alert(1)</script>"
IMAGE = '"><img src=x onerror=alert(1)>'


def make_event(minutes_ago, actor=audit.COMMAND_LINE, action="watchlist_added", **kw):
    event = audit.record(actor, action, **kw)
    # The default manager rejects updates, so the test dates the event
    # through the plain base manager.
    AuditEvent._base_manager.filter(pk=event.pk).update(
        occurred_at=NOW - timedelta(minutes=minutes_ago)
    )
    return event


def shown_ids(response):
    return [event.pk for event in response.context["events"]]


def test_anonymous_redirected_to_login(anonymous_client):
    response = anonymous_client.get(AUDIT)

    assertRedirects(response, f"{reverse('login')}?next={AUDIT}")


def test_viewer_can_read(viewer_client):
    make_event(1)

    response = viewer_client.get(AUDIT)

    assert response.status_code == 200
    assertContains(response, "watchlist_added")


def test_newest_first(analyst_client):
    old = make_event(10)
    new = make_event(1)
    middle = make_event(5)

    response = analyst_client.get(AUDIT)

    assert shown_ids(response) == [new.pk, middle.pk, old.pk]


def test_filters_by_actor(analyst_client, analyst):
    mine = make_event(1, actor=analyst)
    make_event(2)

    response = analyst_client.get(AUDIT, {"actor": "analyst"})

    assert shown_ids(response) == [mine.pk]


def test_filters_by_action(analyst_client):
    make_event(1)
    resumed = make_event(2, action="polling_resumed")

    response = analyst_client.get(AUDIT, {"action": "polling_resumed"})

    assert shown_ids(response) == [resumed.pk]


def test_unknown_filter_value_shows_error(analyst_client):
    make_event(1)

    response = analyst_client.get(AUDIT, {"action": "nothing_like_this"})

    assert shown_ids(response) == []
    assertContains(response, "Select a valid choice")


def test_pages_by_keyset(analyst_client, monkeypatch):
    monkeypatch.setattr(views, "EVENTS_PER_PAGE", 2)
    events = [make_event(minutes) for minutes in range(5)]

    first = analyst_client.get(AUDIT)
    second = analyst_client.get(f"{AUDIT}?{first.context['older_query']}")
    third = analyst_client.get(f"{AUDIT}?{second.context['older_query']}")

    assert shown_ids(first) == [events[0].pk, events[1].pk]
    assert shown_ids(second) == [events[2].pk, events[3].pk]
    assert shown_ids(third) == [events[4].pk]
    assert third.context["older_query"] is None


def test_equal_times_page_by_id(analyst_client, monkeypatch):
    monkeypatch.setattr(views, "EVENTS_PER_PAGE", 1)
    first_recorded = make_event(1)
    second_recorded = make_event(1)

    first = analyst_client.get(AUDIT)
    second = analyst_client.get(f"{AUDIT}?{first.context['older_query']}")

    assert shown_ids(first) == [second_recorded.pk]
    assert shown_ids(second) == [first_recorded.pk]


def test_page_keeps_filters(analyst_client, monkeypatch):
    monkeypatch.setattr(views, "EVENTS_PER_PAGE", 1)
    make_event(1, action="polling_resumed")
    make_event(2)
    oldest = make_event(3, action="polling_resumed")

    first = analyst_client.get(AUDIT, {"action": "polling_resumed"})
    second = analyst_client.get(f"{AUDIT}?{first.context['older_query']}")

    assert shown_ids(second) == [oldest.pk]


def test_hostile_details_are_escaped(analyst_client):
    make_event(1, target=SCRIPT, note=IMAGE, user_ids=[SCRIPT])

    response = analyst_client.get(AUDIT)

    html = response.content.decode()
    assert SCRIPT not in html
    assert "<img src=x" not in html
    assertContains(response, "&lt;script&gt;alert(1)&lt;/script&gt;")


def test_page_offers_no_change_forms(analyst_client):
    make_event(1)

    response = analyst_client.get(AUDIT)

    assertNotContains(response, 'method="post" action="/audit')


def test_post_is_405(analyst_client):
    response = analyst_client.post(AUDIT)

    assert response.status_code == 405


@pytest.mark.parametrize("size", [3, 150])
def test_query_count_is_bounded(analyst_client, django_assert_max_num_queries, size):
    for minutes in range(size):
        make_event(minutes)
    analyst_client.get(AUDIT)  # creates the AccountState row

    # Session, user, time zone preference, account state, unread alerts,
    # actor choices, action choices, the page, the cursor's row.
    with django_assert_max_num_queries(9):
        response = analyst_client.get(f"{AUDIT}?before={size}")

    assert response.status_code == 200
