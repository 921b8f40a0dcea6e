from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

import pytest
from django.urls import reverse
from django.utils.html import escape
from pytest_django.asserts import assertContains, assertNotContains, assertRedirects

from roundtable_sync import tasks
from roundtable_sync.models import (
    AccountState,
    CoverageGap,
    PauseReason,
    PollRecord,
    Session,
    SessionTimeSource,
    WatchedUser,
)
from roundtable_sync.parsing import parse_session_list
from roundtable_sync.store import store_sessions
from tests import payloads
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
    viewer_client_fixture,
    viewer_fixture,
)
from workflow.models import AuditEvent

pytestmark = pytest.mark.django_db

HOSTILE = [
    "<script>alert(1)</script>",
    '"><img src=x onerror=alert(1)>',
    "=cmd|' /C calc'!A0",
]


def detail_url(watched, **params):
    url = reverse("user_detail", args=[watched.pk])
    return f"{url}?{urlencode(params)}" if params else url


def poll_now_url(watched):
    return reverse("user_poll_now", args=[watched.pk])


def session_ids(response):
    return [session.session_id for session in response.context["table"].rows]


def chart_points(response):
    return {
        series["band"]: [point["y"] for point in series["points"]]
        for series in response.context["risk_chart"]["series"]
    }


def check_row(response, name):
    rows = response.context["check_counts"]
    return next(row for row in rows if row["name"] == name)


def store(user_id, session_id, session_time, **changes):
    payload = payloads.session(session_id, **changes)
    parsed = parse_session_list(payloads.user_sessions(user_id, [payload]), "user_id")
    store_sessions(user_id, parsed.sessions, NOW)
    Session.objects.filter(pk=session_id).update(session_time=session_time)


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
        user_id=active_user.user_id,
        started_at=NOW - timedelta(hours=2),
        finished_at=NOW - timedelta(hours=2),
        outcome="synced",
        sessions_received=7,
        sessions_new=3,
        sessions_changed=1,
    )
    PollRecord.objects.create(
        user_id=active_user.user_id,
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
    second = analyst_client.get(
        detail_url(active_user) + first.context["table"].next_url
    )

    assert len(session_ids(first)) == 50
    assert session_ids(first)[0] == "s00"
    assert session_ids(second) == ["s50"]
    assertContains(first, 'rel="next"')
    assertContains(second, 'rel="prev"')


def test_sessions_take_explorer_filters(analyst_client, active_user):
    make_session("user-active", "low", NOW, risk_score=10)
    make_session("user-active", "high", NOW, risk_score=80)
    make_session("user-active-2", "other-high", NOW, risk_score=90)

    response = analyst_client.get(detail_url(active_user, score_min=50))

    assert session_ids(response) == ["high"]


def test_sessions_filter_by_exact_tag(analyst_client, active_user):
    make_session("user-active", "tagged", NOW, tags=["checkout"])
    make_session("user-active", "similar", NOW, tags=["checkout-flow"])

    response = analyst_client.get(detail_url(active_user, tag="checkout"))

    assert session_ids(response) == ["tagged"]


def test_user_filter_cannot_widen_to_other_users(analyst_client, active_user):
    make_session("user-active", "mine", NOW)
    make_session("user-active-2", "theirs", NOW)

    response = analyst_client.get(detail_url(active_user, user="user-active-2"))

    assert session_ids(response) == ["mine"]
    assert "user" not in response.context["form"].fields


def test_sessions_link_to_session_page(analyst_client, active_user):
    make_session("user-active", "a b/c", NOW)

    response = analyst_client.get(detail_url(active_user))

    assertContains(response, f'href="{reverse("session_detail")}?id=a%20b%2Fc"')


def test_export_link_keeps_filters_and_user(analyst_client, active_user):
    response = analyst_client.get(detail_url(active_user, score_min=50))

    export_url = response.context["form"].export_url()
    assert export_url.startswith(reverse("session_export"))
    assert "score_min=50" in export_url
    assert "user=user-active" in export_url


# Risk over time


def test_chart_has_one_point_per_scored_session(analyst_client, active_user):
    make_session("user-active", "old", NOW - timedelta(days=2), risk_score=10)
    make_session("user-active", "mid", NOW - timedelta(days=1), risk_score=60)
    make_session("user-active", "new", NOW, risk_score=90)
    make_session("user-active", "unscored", NOW, risk_score=None)

    response = analyst_client.get(detail_url(active_user))

    assert chart_points(response) == {"allow": [10], "review": [60], "block": [90]}
    assert response.context["risk_chart"]["count"] == 3
    assert response.context["risk_chart"]["capped"] is False


def test_chart_point_carries_time_and_label(analyst_client, active_user):
    make_session("user-active", "s1", NOW, risk_score=90)

    response = analyst_client.get(detail_url(active_user))

    block = response.context["risk_chart"]["series"][2]
    assert block["points"] == [
        {"x": int(NOW.timestamp() * 1000), "y": 90, "label": "2026-03-02 12:00 UTC"}
    ]
    assert block["label"] == "Block (70 and above)"


def test_chart_bands_follow_thresholds(analyst_client, active_user, settings):
    settings.ROUNDTABLE_REVIEW_THRESHOLD = 20
    settings.ROUNDTABLE_BLOCK_THRESHOLD = 30
    make_session("user-active", "s1", NOW, risk_score=35)

    response = analyst_client.get(detail_url(active_user))

    assert chart_points(response)["block"] == [35]


def test_chart_is_capped_at_newest_points(analyst_client, active_user):
    Session.objects.bulk_create(
        Session(
            session_id=f"s{number:04}",
            user_id="user-active",
            raw={},
            raw_digest="",
            first_seen_at=NOW,
            changed_at=NOW,
            session_time=NOW - timedelta(minutes=number),
            session_time_source="user_logs",
            risk_score=number % 100,
        )
        for number in range(2001)
    )

    response = analyst_client.get(detail_url(active_user))

    chart = response.context["risk_chart"]
    assert chart["count"] == 2000
    assert chart["capped"] is True
    assert 0 in chart_points(response)["allow"]  # the newest session, s0000
    assertContains(response, "Only the newest 2000 scored sessions are plotted.")


def test_chart_marks_scoring_changes_in_range(analyst_client, active_user):
    make_session("user-active", "march", datetime(2026, 3, 20, tzinfo=UTC))
    make_session("user-active", "may", datetime(2026, 5, 10, tzinfo=UTC))

    response = analyst_client.get(detail_url(active_user))

    markers = response.context["risk_chart"]["scoring_changes"]
    assert [marker["x"] for marker in markers] == [
        int(datetime(2026, 4, 1, tzinfo=UTC).timestamp() * 1000),
        int(datetime(2026, 5, 1, tzinfo=UTC).timestamp() * 1000),
    ]


def test_chart_data_is_json_script(analyst_client, active_user):
    make_session("user-active", "s1", NOW, risk_score=90)

    response = analyst_client.get(detail_url(active_user))

    assertContains(response, '<script id="risk-chart-data" type="application/json">')
    assertContains(response, "js/user_detail.js")
    assertContains(response, "vendor/chart.js-4.6.1.umd.min.js")


def test_no_chart_without_scored_sessions(analyst_client, active_user):
    response = analyst_client.get(detail_url(active_user))

    assertContains(response, "No scored sessions stored for this user yet.")
    assertNotContains(response, "user_detail.js")


# Check counts


def test_check_counts_per_status(analyst_client, active_user):
    store("user-active", "s1", NOW)
    store("user-active", "s2", NOW, device_checks={"vpn": "Not detected"})
    store("other-user", "s3", NOW)

    response = analyst_client.get(detail_url(active_user))

    vpn = check_row(response, "vpn")
    assert vpn["detected"] == 1
    assert vpn["not_detected"] == 1
    assert vpn["unknown"] == 0
    all_pasted = check_row(response, "all_pasted")
    assert all_pasted["unknown"] == 2


def test_check_counts_documented_order_then_unknown(analyst_client, active_user):
    store("user-active", "s1", NOW, device_checks={"vpn": "Detected", "zzz": "Odd"})

    response = analyst_client.get(detail_url(active_user))

    names = [row["name"] for row in response.context["check_counts"]]
    assert names[0] == "agent_behavior"
    assert names[-2:] == ["vpn", "zzz"]
    assert check_row(response, "zzz")["other"] == 1


def test_first_detection_is_earliest_detected(analyst_client, active_user):
    store(
        "user-active",
        "early-clean",
        NOW - timedelta(days=3),
        device_checks={"vpn": "Not detected"},
    )
    store("user-active", "first-hit", NOW - timedelta(days=2))
    store("user-active", "later-hit", NOW - timedelta(days=1))

    response = analyst_client.get(detail_url(active_user))

    assert check_row(response, "vpn")["first_detected_at"] == NOW - timedelta(days=2)
    assert check_row(response, "tor")["first_detected_at"] is None
    assertContains(response, "2026-02-28 12:00:00 UTC")


def test_check_counts_include_unindexed_checks(analyst_client, active_user):
    # Too long for the check table, so only the session's JSON contains it.
    long_name = "x" * 300
    store("user-active", "s1", NOW, device_checks={long_name: "Detected"})

    response = analyst_client.get(detail_url(active_user))

    row = check_row(response, long_name)
    assert row["detected"] == 1
    assert row["total"] == 1
    assert row["first_detected_at"] == NOW


def test_check_counts_other_statuses(analyst_client, active_user):
    store("user-active", "s1", NOW, device_checks={"vpn": "Odd"})
    store("user-active", "s2", NOW, device_checks={"vpn": "Stranger"})

    response = analyst_client.get(detail_url(active_user))

    vpn = check_row(response, "vpn")
    assert vpn["other"] == 2
    assert vpn["total"] == 2
    assert vpn["first_detected_at"] is None


def test_check_counts_skip_malformed_group(analyst_client, active_user):
    checks = {"biometric": "not a map", "device": {"vpn": "Detected"}}
    make_session("user-active", "s1", NOW, checks=checks)

    response = analyst_client.get(detail_url(active_user))

    names = [row["name"] for row in response.context["check_counts"]]
    assert names == ["vpn"]


def test_check_counts_not_reported(analyst_client, active_user):
    store("user-active", "s1", NOW, device_checks={"vpn": "Detected"})
    store("user-active", "s2", NOW, device_checks={})

    response = analyst_client.get(detail_url(active_user))

    vpn = check_row(response, "vpn")
    assert vpn["total"] == 1
    assert vpn["not_reported"] == 1
    assertContains(response, "Not reported")


def test_check_counts_empty(analyst_client, active_user):
    response = analyst_client.get(detail_url(active_user))

    assertContains(response, "No check results stored for this user yet.")


@pytest.mark.parametrize("hostile", HOSTILE)
def test_hostile_session_text_is_escaped(analyst_client, hostile):
    watched = WatchedUser.objects.create(user_id=hostile)
    store(
        hostile,
        hostile,
        NOW,
        tags=[hostile],
        recommended_action=hostile,
        device_checks={hostile: hostile},
    )

    response = analyst_client.get(detail_url(watched))

    assertNotContains(response, "<script>alert")
    assertNotContains(response, "<img src=x")
    assertContains(response, escape(hostile))


@pytest.mark.parametrize("size", [5, 300])
def test_page_query_count_is_bounded(
    analyst_client, active_user, django_assert_max_num_queries, size
):
    for number in range(size):
        store("user-active", f"s{number:03}", NOW - timedelta(minutes=number))
    analyst_client.get(detail_url(active_user))  # creates the AccountState row

    # Session, user, time zone preference, account state, unread alerts,
    # watched user, polls, gaps, count, chart, check counts, table page,
    # watched users of the page, decisions (two), permissions (two).
    with django_assert_max_num_queries(17):
        analyst_client.get(detail_url(active_user, score_min=10))


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


# Roles and audit


def test_viewer_cannot_poll_now(viewer_client, active_user, queued_polls):
    response = viewer_client.post(poll_now_url(active_user))

    assert response.status_code == 403
    queued_polls.assert_not_called()
    assert not AuditEvent.objects.exists()


def test_anonymous_poll_now_redirects(anonymous_client, active_user, queued_polls):
    url = poll_now_url(active_user)

    response = anonymous_client.post(url)

    assertRedirects(response, f"{reverse('login')}?next={url}")
    queued_polls.assert_not_called()


def test_poll_now_is_audited(analyst_client, active_user, queued_polls):
    analyst_client.post(poll_now_url(active_user))

    event = AuditEvent.objects.get()
    assert event.action == "poll_requested"
    assert event.target == "user-active"
    assert event.actor_label == "analyst"
    assert event.details == {"result": "queued"}


def test_viewer_sees_no_actions(viewer_client, active_user):
    response = viewer_client.get(detail_url(active_user))

    assertContains(response, "user-active")
    assertNotContains(response, poll_now_url(active_user))
    assertNotContains(response, reverse("watchlist_pause", args=[active_user.pk]))
    assertNotContains(response, reverse("watchlist_remove", args=[active_user.pk]))
    assertNotContains(response, reverse("workflow:erase_user"))
    assertNotContains(response, reverse("session_export"))


def test_analyst_sees_erase_and_export(analyst_client, active_user):
    response = analyst_client.get(detail_url(active_user))

    assertContains(response, f"{reverse('workflow:erase_user')}?user=user-active")
    assertContains(response, reverse("session_export"))
