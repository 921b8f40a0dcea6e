import json
from datetime import timedelta
from urllib.parse import urlencode

import pytest
from django.urls import reverse
from django.utils.html import escape
from pytest_django.asserts import assertContains, assertNotContains, assertRedirects

from roundtable_sync.models import (
    ScoreChange,
    Session,
    SessionEvent,
    SessionTimeSource,
    WatchedUser,
)
from roundtable_sync.parsing import parse_session_list
from roundtable_sync.store import store_sessions
from tests import payloads
from tests.fixtures_web import (  # noqa: F401
    NOW,
    analyst_client_fixture,
    analyst_fixture,
    anonymous_client_fixture,
    frozen_now_fixture,
    make_session,
)

pytestmark = pytest.mark.django_db

HOSTILE = [
    "<script>alert(1)</script>",
    '"><img src=x onerror=alert(1)>',
    "=cmd|' /C calc'!A0",
]


def detail_url(session_id, **params):
    return f"{reverse('session_detail')}?{urlencode({'id': session_id, **params})}"


def store(session_id="s1", user_id="user-456", **changes):
    payload = payloads.session(session_id, **changes)
    parsed = parse_session_list(payloads.user_sessions(user_id, [payload]), "user_id")
    store_sessions(user_id, parsed.sessions, NOW)
    return Session.objects.get(pk=session_id)


def add_events(session, count):
    SessionEvent.objects.bulk_create(
        SessionEvent(
            session=session,
            position=position,
            action=f"action-{position}",
            user_time="Mar 2, 2026 12:00:00",
            unix_timestamp=1772452800000 + position,
            timestamp=NOW + timedelta(milliseconds=position),
        )
        for position in range(count)
    )


def check_names(rows):
    return [row.name for row in rows]


# Access


def test_anonymous_redirected_to_login(anonymous_client):
    url = detail_url("s1")

    response = anonymous_client.get(url)

    assertRedirects(response, f"{reverse('login')}?{urlencode({'next': url})}")


def test_post_is_405(analyst_client):
    store()

    response = analyst_client.post(detail_url("s1"))

    assert response.status_code == 405


def test_missing_id_is_404(analyst_client):
    response = analyst_client.get(reverse("session_detail"))

    assertContains(response, "No session ID was given.", status_code=404)


def test_unknown_id_is_404_and_escaped(analyst_client):
    response = analyst_client.get(detail_url("<b>nope</b>"))

    assertContains(response, "No stored session has the ID", status_code=404)
    assertContains(response, "&lt;b&gt;nope&lt;/b&gt;", status_code=404)
    assertNotContains(response, "<b>nope", status_code=404)


def test_id_with_url_characters_is_found(analyst_client):
    session_id = "a/b?c=1&d#frag%2F é"
    store(session_id)

    response = analyst_client.get(detail_url(session_id))

    assert response.status_code == 200
    assert response.context["session"].session_id == session_id


# Verdict


def test_shows_score_band_and_action(analyst_client):
    store(risk_score=75)

    response = analyst_client.get(detail_url("s1"))

    assertContains(response, '<span class="risk risk-block">75 (block)</span>')
    assertContains(response, "Manual review or require additional verification")
    assertContains(response, "High risk</span>")
    assert response.context["high_risk"] is True


def test_flagged_by_action_alone(analyst_client):
    store(
        risk_score=10,
        recommended_action="Auto-reject or high-priority review",
    )

    response = analyst_client.get(detail_url("s1"))

    assert response.context["flagged"] is True
    assert response.context["high_risk"] is False
    assertContains(response, "Flagged</span>")


def test_low_score_not_flagged(analyst_client):
    store(risk_score=10, recommended_action="Auto-accept")

    response = analyst_client.get(detail_url("s1"))

    assert response.context["flagged"] is False
    assertContains(response, "Not flagged")


def test_bands_follow_configured_thresholds(analyst_client, settings):
    settings.ROUNDTABLE_REVIEW_THRESHOLD = 20
    settings.ROUNDTABLE_BLOCK_THRESHOLD = 30
    store(risk_score=35, recommended_action="Auto-accept")

    response = analyst_client.get(detail_url("s1"))

    assertContains(response, "35 (block)")
    assert response.context["high_risk"] is True


def test_missing_score_shown_as_no_score(analyst_client):
    store(risk_score=payloads.DROP, recommended_action=payloads.DROP)

    response = analyst_client.get(detail_url("s1"))

    assertContains(response, "No score")
    assertContains(response, "Not flagged")


# Facts


def test_watched_user_is_linked(analyst_client):
    watched = WatchedUser.objects.create(user_id="user-456")
    store()

    response = analyst_client.get(detail_url("s1"))

    assertContains(
        response,
        f'<a class="user-id" href="{reverse("user_detail", args=[watched.pk])}">',
    )


def test_unwatched_user_is_not_linked(analyst_client):
    store()

    response = analyst_client.get(detail_url("s1"))

    assert response.context["watched_pk"] is None
    assertContains(response, "(not on the watchlist)")


def test_first_seen_time_is_explained(analyst_client):
    store(user_logs=payloads.DROP)

    response = analyst_client.get(detail_url("s1"))

    assertContains(response, '<span class="marker marker-first-seen">first seen</span>')
    assertContains(response, "When this dashboard first stored the session")
    assertContains(response, "2026-03-02 12:00:00 UTC")


def test_user_logs_time_is_explained(analyst_client):
    session = store()

    response = analyst_client.get(detail_url("s1"))

    assert session.session_time_source == SessionTimeSource.USER_LOGS
    assertContains(response, "earliest event in the session's user_logs")
    assertContains(response, "2025-03-27 06:10:50 UTC")


def test_explanation_is_shown(analyst_client):
    store(risk_explanation="Typing too regular")

    response = analyst_client.get(detail_url("s1"))

    assertContains(response, "Typing too regular")


def test_tags_link_to_explorer_by_exact_tag(analyst_client):
    store(tags=["checkout flow", "a&b=c"])

    response = analyst_client.get(detail_url("s1"))

    explorer = reverse("session_list")
    assertContains(response, f'href="{explorer}?tag=checkout+flow">checkout flow</a>')
    assertContains(response, f'href="{explorer}?tag=a%26b%3Dc">a&amp;b=c</a>')


# Checks


def test_documented_checks_in_order_with_descriptions(analyst_client):
    store()

    response = analyst_client.get(detail_url("s1"))

    rows = response.context["reported_checks"]
    assert check_names(rows)[:3] == [
        "agent_behavior",
        "programmatic_typing",
        "teleporting_mouse",
    ]
    assert check_names(rows)[-1] == "location_spoofing"
    assert len(rows) == 15
    assertContains(response, "Typing rhythm too regular for a person.")
    assertContains(response, '"check-status check-detected">Detected</span>')
    assertContains(
        response, '<span class="check-status check-not-detected">Not detected</span>'
    )
    assertContains(response, '<span class="check-status check-unknown">Unknown</span>')


def test_unknown_check_listed_after_documented(analyst_client):
    device = dict(payloads.BASE_SESSION["device_checks"], emulator="Detected")
    store(device_checks=device)

    response = analyst_client.get(detail_url("s1"))

    rows = response.context["reported_checks"]
    assert check_names(rows)[-1] == "emulator"
    assertContains(response, "Not documented by Roundtable.")


def test_unexpected_status_is_shown(analyst_client):
    device = dict(payloads.BASE_SESSION["device_checks"], vpn="Partially")
    store(device_checks=device)

    response = analyst_client.get(detail_url("s1"))

    assertContains(response, '<span class="check-status check-other">Partially</span>')


def test_missing_documented_checks_not_reported(analyst_client):
    biometric = dict(payloads.BASE_SESSION["biometric_checks"])
    del biometric["external_input"]
    store(biometric_checks=biometric, device_checks=payloads.DROP)

    response = analyst_client.get(detail_url("s1"))

    missing = response.context["not_reported_checks"]
    assert check_names(missing) == [
        "external_input",
        "bot",
        "virtual_machine",
        "software_renderer",
        "vpn",
        "tor",
        "location_spoofing",
    ]
    assert len(response.context["reported_checks"]) == 8
    assertContains(response, "Not reported</h3>")


# Score history


def test_score_changes_newest_first(analyst_client):
    session = store()
    ScoreChange.objects.create(
        session=session,
        observed_at=NOW - timedelta(hours=2),
        old_score=20,
        new_score=55,
        old_action="Auto-accept",
        new_action="Manual review or require additional verification",
    )
    ScoreChange.objects.create(
        session=session,
        observed_at=NOW - timedelta(hours=1),
        old_score=55,
        new_score=75,
        old_action="Manual review or require additional verification",
        new_action="Auto-reject or high-priority review",
    )

    response = analyst_client.get(detail_url("s1"))

    changes = response.context["score_changes"]
    assert [change.new_score for change in changes] == [75, 55]
    assertContains(response, "2026-03-02 10:00:00 UTC")
    assertContains(response, "55 (review)")
    assert response.context["score_changes_capped"] is False


def test_score_changes_are_capped(analyst_client):
    session = store()
    ScoreChange.objects.bulk_create(
        ScoreChange(
            session=session,
            observed_at=NOW - timedelta(minutes=minute),
            old_score=1,
            new_score=2,
        )
        for minute in range(201)
    )

    response = analyst_client.get(detail_url("s1"))

    assert len(response.context["score_changes"]) == 200
    assert response.context["score_changes_capped"] is True
    assertContains(response, "Only the newest 200 are shown.")


def test_unchanged_score_says_so(analyst_client):
    store()

    response = analyst_client.get(detail_url("s1"))

    assertContains(response, "have not changed since the session was first stored")


# Events


def test_events_from_user_logs_are_shown(analyst_client):
    store()

    response = analyst_client.get(detail_url("s1"))

    assertContains(response, "Navigated to /dashboard")
    assertContains(response, "Mar 25, 2025 14:30:50")
    assertContains(response, "1 event, in the order received.")


def test_events_not_fetched_yet_note(analyst_client):
    store(user_logs=payloads.DROP)

    response = analyst_client.get(detail_url("s1"))

    assertContains(response, "Events not fetched yet")


def test_no_events_note(analyst_client):
    make_session("user-456", "s1", NOW)

    response = analyst_client.get(detail_url("s1"))

    assertContains(response, "No events are stored for this session.")


def test_event_without_timestamp_shows_unknown(analyst_client):
    session = make_session("user-456", "s1", NOW)
    SessionEvent.objects.create(session=session, position=0, action="Clicked")

    response = analyst_client.get(detail_url("s1"))

    assertContains(response, "<td>Unknown</td>")


def test_events_are_paginated(analyst_client):
    session = make_session("user-456", "s1", NOW)
    add_events(session, 450)

    first = analyst_client.get(detail_url("s1"))
    last = analyst_client.get(detail_url("s1", events_page=3))

    assert len(first.context["events_page"].object_list) == 200
    assert [e.position for e in last.context["events_page"]] == list(range(400, 450))
    assertContains(first, "Events page 1 of 3, 200 per page")
    assertContains(first, 'href="?id=s1&amp;events_page=2#events-heading"')
    assertContains(last, 'href="?id=s1&amp;events_page=2#events-heading"')


def test_invalid_events_page_shows_first(analyst_client):
    session = make_session("user-456", "s1", NOW)
    add_events(session, 3)

    response = analyst_client.get(detail_url("s1", events_page="x"))

    assert response.context["events_page"].number == 1


# Raw JSON


def test_raw_json_is_pretty_printed(analyst_client):
    store(risk_explanation="Café")

    response = analyst_client.get(detail_url("s1"))

    session = response.context["session"]
    assert response.context["raw_json"] == json.dumps(
        session.raw, indent=2, ensure_ascii=False
    )
    assertContains(response, "  &quot;risk_explanation&quot;: &quot;Café&quot;,")


# Hostile text


@pytest.mark.parametrize("hostile", HOSTILE)
def test_hostile_text_is_escaped(analyst_client, hostile):
    device = dict(payloads.BASE_SESSION["device_checks"], **{hostile: hostile})
    session = store(
        hostile,
        user_id=hostile,
        tags=[hostile],
        risk_explanation=hostile,
        recommended_action=hostile,
        device_checks=device,
        user_logs=[{"action": hostile, "user_time": hostile, "unix_timestamp": 1}],
    )
    ScoreChange.objects.create(
        session=session, observed_at=NOW, old_action=hostile, new_action=hostile
    )

    response = analyst_client.get(detail_url(hostile))

    assert response.status_code == 200
    assertNotContains(response, "<script>alert")
    assertNotContains(response, "<img src=x")
    assertContains(response, escape(hostile))


# Queries


@pytest.mark.parametrize("size", [1, 1000])
def test_query_count_is_bounded(analyst_client, django_assert_max_num_queries, size):
    WatchedUser.objects.create(user_id="user-456")
    session = make_session("user-456", "s1", NOW)
    add_events(session, size)
    ScoreChange.objects.bulk_create(
        ScoreChange(session=session, observed_at=NOW, old_score=1, new_score=2)
        for _ in range(size)
    )
    analyst_client.get(detail_url("s1"))  # creates the AccountState row

    # Login session, user, time zone preference, account state, unread
    # alerts, the analyst's user and group permissions, session row, watched
    # user, decision history, score changes, event count, event page.
    with django_assert_max_num_queries(13):
        analyst_client.get(detail_url("s1"))
