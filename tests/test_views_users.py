from datetime import timedelta

import pytest
from django.urls import reverse
from pytest_django.asserts import assertContains, assertNotContains, assertRedirects

from roundtable_sync import tasks
from roundtable_sync.models import (
    AccountState,
    CoverageGap,
    PauseReason,
    PollRecord,
    SessionTimeSource,
    WatchedUser,
)
from tests.fixtures_web import (  # noqa: F401
    NOW,
    active_user_fixture,
    analyst_client_fixture,
    analyst_fixture,
    anonymous_client_fixture,
    frozen_now_fixture,
    make_session,
    paused_user_fixture,
    queued_polls_fixture,
)

pytestmark = pytest.mark.django_db


def detail_url(watched, page=None):
    url = reverse("user_detail", args=[watched.pk])
    return url if page is None else f"{url}?page={page}"


def poll_now_url(watched):
    return reverse("user_poll_now", args=[watched.pk])


def session_ids(response):
    return [session.session_id for session in response.context["sessions_page"]]


# Access


def test_anonymous_redirected_to_login(anonymous_client, active_user):
    url = detail_url(active_user)

    response = anonymous_client.get(url)

    assertRedirects(response, f"{reverse('login')}?next={url}")


def test_anonymous_poll_now_redirected(anonymous_client, active_user, queued_polls):
    response = anonymous_client.post(poll_now_url(active_user))

    assert response.status_code == 302
    queued_polls.assert_not_called()


def test_unknown_user_is_404(analyst_client):
    response = analyst_client.get(reverse("user_detail", args=[999]))

    assert response.status_code == 404


def test_poll_now_get_is_405(analyst_client, active_user):
    response = analyst_client.get(poll_now_url(active_user))

    assert response.status_code == 405


# State, history and gaps


def test_page_shows_state(analyst_client, active_user):
    response = analyst_client.get(detail_url(active_user))

    assertContains(response, "user-active")
    assertContains(response, "Flagged by support")
    assertContains(response, "<dd>analyst</dd>")
    assertContains(response, "2026-02-28 12:00:00 UTC")
    assertContains(response, "Active</span>")
    assertContains(response, "The API returned HTTP 503.")
    assertContains(response, "Poll now")


def test_paused_user_hides_poll_now(analyst_client, paused_user):
    response = analyst_client.get(detail_url(paused_user))

    assertContains(response, "Paused</span>")
    assertNotContains(response, "Poll now")
    assertContains(response, "Resume")


def test_page_shows_poll_history(analyst_client, active_user):
    PollRecord.objects.create(
        watched_user=active_user,
        started_at=NOW - timedelta(hours=2),
        finished_at=NOW - timedelta(hours=2),
        outcome="synced",
        sessions_received=7,
        sessions_new=3,
        sessions_changed=1,
    )
    PollRecord.objects.create(
        watched_user=active_user,
        started_at=NOW - timedelta(hours=1),
        finished_at=NOW - timedelta(hours=1),
        outcome="deferred",
        error="The API asked to retry after 120 seconds.",
    )

    response = analyst_client.get(detail_url(active_user))

    polls = list(response.context["polls"])
    assert [poll.outcome for poll in polls] == ["deferred", "synced"]
    assertContains(response, "Deferred by the API")
    assertContains(response, "The API asked to retry after 120 seconds.")
    assertContains(response, '<td class="number">7</td>')


def test_page_shows_coverage_gaps(analyst_client, active_user):
    CoverageGap.objects.create(
        user_id="user-active",
        detected_at=NOW - timedelta(hours=3),
        previous_sync_at=NOW - timedelta(days=1),
    )
    CoverageGap.objects.create(user_id="other-user", detected_at=NOW)

    response = analyst_client.get(detail_url(active_user))

    assert len(response.context["coverage_gaps"]) == 1
    assertContains(response, "2026-03-02 09:00:00 UTC")
    assertContains(response, "2026-03-01 12:00:00 UTC")


def test_page_escapes_user_id_with_markup(analyst_client):
    watched = WatchedUser.objects.create(user_id='<img src=x onerror="alert(1)">')

    response = analyst_client.get(detail_url(watched))

    assertContains(response, "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;")
    assertNotContains(response, "<img")


# Sessions


def test_page_shows_sessions(analyst_client, active_user):
    make_session(
        "user-active",
        "sess-<1>",
        NOW - timedelta(minutes=30),
        risk_score=75,
        recommended_action="Manual review or require additional verification",
        tags=["checkout-flow", "<i>tag</i>"],
    )

    response = analyst_client.get(detail_url(active_user))

    assertContains(response, "sess-&lt;1&gt;")
    assertContains(response, "2026-03-02 11:30:00 UTC")
    assertContains(response, "75 (block)")
    assertContains(response, "Manual review or require additional verification")
    assertContains(response, "<li>checkout-flow</li>")
    assertContains(response, "<li>&lt;i&gt;tag&lt;/i&gt;</li>")


def test_page_marks_first_seen_session_time(analyst_client, active_user):
    make_session(
        "user-active",
        "from-logs",
        NOW - timedelta(hours=1),
    )
    make_session(
        "user-active",
        "first-seen",
        NOW,
        session_time_source=SessionTimeSource.FIRST_SEEN,
    )

    response = analyst_client.get(detail_url(active_user))

    assertContains(response, ">first seen</span>", count=1)


def test_page_shows_only_this_users_sessions(analyst_client, active_user):
    make_session("user-active", "mine", NOW)
    make_session("user-active-2", "theirs", NOW)

    response = analyst_client.get(detail_url(active_user))

    assert session_ids(response) == ["mine"]


def test_sessions_paginated_newest_first(analyst_client, active_user):
    for minute in range(51):
        make_session("user-active", f"s{minute:02}", NOW - timedelta(minutes=minute))

    first = analyst_client.get(detail_url(active_user))
    second = analyst_client.get(detail_url(active_user, page=2))

    assert len(session_ids(first)) == 50
    assert session_ids(first)[0] == "s00"
    assert session_ids(second) == ["s50"]
    assertContains(first, "Page 1 of 2")
    assertContains(first, 'href="?page=2"')
    assertContains(second, 'href="?page=1"')


def test_invalid_page_number_shows_first_page(analyst_client, active_user):
    make_session("user-active", "only", NOW)

    response = analyst_client.get(f"{detail_url(active_user)}?page=abc")

    assert session_ids(response) == ["only"]


def test_page_query_count_is_bounded(
    analyst_client, active_user, django_assert_max_num_queries
):
    for minute in range(60):
        make_session("user-active", f"s{minute:02}", NOW - timedelta(minutes=minute))
    analyst_client.get(detail_url(active_user))  # creates the AccountState row

    # Session, user, account state, watched user, polls, gaps, count, page.
    with django_assert_max_num_queries(8):
        analyst_client.get(detail_url(active_user))


# Poll now


def test_poll_now_queues_a_poll(analyst_client, active_user, queued_polls):
    response = analyst_client.post(poll_now_url(active_user), follow=True)

    active_user.refresh_from_db()
    queued_polls.assert_called_once_with(
        tasks.poll_user, active_user.pk, str(active_user.claim_token), group="poll"
    )
    assertRedirects(response, detail_url(active_user))
    assertContains(response, "Poll of user-active queued.")


def test_poll_now_skips_claimed_user(analyst_client, active_user, queued_polls):
    tasks.claim_due_users(NOW + timedelta(minutes=5), user_pks=[active_user.pk])

    response = analyst_client.post(poll_now_url(active_user), follow=True)

    queued_polls.assert_not_called()
    assertContains(response, "A poll of user-active is already queued or running.")


def test_poll_now_retakes_expired_claim(analyst_client, active_user, queued_polls):
    WatchedUser.objects.filter(pk=active_user.pk).update(
        claim_token="00000000-0000-0000-0000-000000000001",
        next_poll_at=NOW - timedelta(seconds=1),
    )

    analyst_client.post(poll_now_url(active_user))

    assert queued_polls.call_count == 1


def test_poll_now_of_paused_user_is_rejected(analyst_client, paused_user, queued_polls):
    response = analyst_client.post(poll_now_url(paused_user), follow=True)

    paused_user.refresh_from_db()
    assert paused_user.is_active is False
    queued_polls.assert_not_called()
    assertContains(response, "Polling of user-paused is paused: resume it to poll it.")


def test_poll_now_during_account_pause(analyst_client, active_user, queued_polls):
    AccountState.objects.create(
        pk=1,
        paused_until=NOW + timedelta(minutes=10),
        pause_reason=PauseReason.RATE_LIMITED,
        pause_error="Rate limited by the API.",
    )

    response = analyst_client.post(poll_now_url(active_user), follow=True)

    active_user.refresh_from_db()
    queued_polls.assert_not_called()
    assert active_user.next_poll_at == NOW + timedelta(minutes=3)
    assertContains(
        response,
        "Polling is paused account-wide until 2026-03-02 12:10:00 UTC, "
        "so no poll was queued.",
    )
