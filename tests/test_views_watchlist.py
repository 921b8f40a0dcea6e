from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from pytest_django.asserts import assertContains, assertNotContains, assertRedirects

from roundtable_sync import tasks
from roundtable_sync.models import (
    AccountState,
    CoverageGap,
    PauseReason,
    PollRecord,
    Session,
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

WATCHLIST = reverse("watchlist")
ADD = reverse("watchlist_add")


def add(client, user_ids, note=""):
    return client.post(ADD, {"user_ids": user_ids, "note": note}, follow=True)


def watched_ids():
    return list(WatchedUser.objects.values_list("user_id", flat=True))


# Login


@pytest.mark.parametrize(
    ("name", "args"),
    [
        ("watchlist", []),
        ("watchlist_add", []),
        ("watchlist_pause", [1]),
        ("watchlist_resume", [1]),
        ("watchlist_remove", [1]),
    ],
)
def test_anonymous_redirected_to_login(anonymous_client, name, args):
    url = reverse(name, args=args)

    response = anonymous_client.get(url)

    assertRedirects(response, f"{reverse('login')}?next={url}")


def test_login_page_renders(anonymous_client):
    response = anonymous_client.get(reverse("login"))

    assertContains(response, '<label for="id_username">')


def test_logout_is_a_post_form(analyst_client):
    response = analyst_client.get(WATCHLIST)

    assertContains(response, f'<form method="post" action="{reverse("logout")}">')


@pytest.mark.parametrize(
    ("name", "args"),
    [
        ("watchlist_add", []),
        ("watchlist_pause", [1]),
        ("watchlist_resume", [1]),
    ],
)
def test_get_on_post_only_endpoint_is_405(analyst_client, name, args):
    response = analyst_client.get(reverse(name, args=args))

    assert response.status_code == 405


# Table


def test_watchlist_shows_user_state(analyst_client, active_user):
    response = analyst_client.get(WATCHLIST)

    assertContains(response, f'<a href="/users/{active_user.pk}/">user-active</a>')
    assertContains(response, "Flagged by support")
    assertContains(response, "<td>analyst</td>")
    assertContains(response, "2026-02-28 12:00:00 UTC")
    assertContains(response, "Active")
    assertContains(response, "Failed")
    assertContains(response, "The API returned HTTP 503.")
    assertContains(response, "2026-03-02 12:03:00 UTC")


def test_watchlist_shows_paused_state(analyst_client, paused_user):
    response = analyst_client.get(WATCHLIST)

    assertContains(response, "Paused</span>")
    assertContains(response, "Not scheduled (paused)")
    assertContains(response, "<td>command line</td>")
    assertContains(response, "Never polled")


def test_watchlist_shows_coverage_gap(analyst_client, active_user):
    WatchedUser.objects.filter(pk=active_user.pk).update(
        coverage_gap_at=NOW - timedelta(hours=5)
    )

    response = analyst_client.get(WATCHLIST)

    assertContains(response, "Possible coverage gap")
    assertContains(response, "2026-03-02 07:00:00 UTC")


def test_watchlist_shows_queued_poll(analyst_client, active_user, queued_polls):
    WatchedUser.objects.filter(pk=active_user.pk).update(next_poll_at=NOW)
    tasks.queue_immediate_poll(active_user)

    response = analyst_client.get(WATCHLIST)

    assertContains(response, "Queued or running")


def test_watchlist_counts_stored_sessions(analyst_client, active_user, paused_user):
    for number in range(3):
        make_session("user-active", f"s{number}", NOW)
    make_session("not-watched", "other", NOW)

    response = analyst_client.get(WATCHLIST)

    counts = {u.user_id: u.session_count for u in response.context["watched_users"]}
    assert counts == {"user-active": 3, "user-paused": 0}


def test_watchlist_query_count_is_bounded(
    analyst_client, analyst, django_assert_max_num_queries
):
    for number in range(20):
        WatchedUser.objects.create(user_id=f"user-{number}", added_by=analyst)
        make_session(f"user-{number}", f"session-{number}", NOW)
    analyst_client.get(WATCHLIST)  # creates the AccountState row

    # Session, user, account state, watched users with their counts.
    with django_assert_max_num_queries(4):
        response = analyst_client.get(WATCHLIST)

    assert response.status_code == 200


def test_watchlist_empty(analyst_client):
    response = analyst_client.get(WATCHLIST)

    assertContains(response, "No users are watched yet.")


# Add


def test_add_single_user(analyst_client, analyst, queued_polls):
    response = add(analyst_client, "user-new", note="From ticket 12")

    watched = WatchedUser.objects.get()
    assert watched.user_id == "user-new"
    assert watched.note == "From ticket 12"
    assert watched.added_by == analyst
    assertContains(response, "Added 1 user(s) to the watchlist: user-new.")


def test_add_queues_a_poll_at_once(analyst_client, queued_polls):
    add(analyst_client, "user-new")

    watched = WatchedUser.objects.get()
    queued_polls.assert_called_once_with(
        tasks.poll_user, watched.pk, str(watched.claim_token), group="poll"
    )


def test_add_multiple_users(analyst_client, queued_polls):
    response = add(analyst_client, "first\nsecond\r\nthird")

    assert sorted(watched_ids()) == ["first", "second", "third"]
    assert queued_polls.call_count == 3
    assertContains(response, "Added 3 user(s) to the watchlist: first, second, third.")


def test_add_trims_whitespace(analyst_client, queued_polls):
    add(analyst_client, "  padded id \t\n\n   \nnext")

    assert sorted(watched_ids()) == ["next", "padded id"]


def test_add_form_explains_trimming(analyst_client):
    response = analyst_client.get(WATCHLIST)

    assertContains(response, "Leading and trailing whitespace is trimmed")


def test_add_skips_already_watched(analyst_client, active_user, queued_polls):
    response = add(analyst_client, "user-active\nuser-new")

    assert sorted(watched_ids()) == ["user-active", "user-new"]
    assert queued_polls.call_count == 1
    assertContains(response, "Added 1 user(s) to the watchlist: user-new.")
    assertContains(response, "Already on the watchlist, skipped: user-active.")


def test_add_invalid_id_adds_nothing(analyst_client, queued_polls):
    too_long = "x" * 256

    response = add(analyst_client, f"valid-id\n{too_long}")

    assert watched_ids() == []
    assert response.status_code == 200
    assertContains(response, "is 256 characters long; the maximum is 255.")
    assertContains(response, too_long)  # the textarea keeps the input
    queued_polls.assert_not_called()


def test_add_accepts_255_characters(analyst_client, queued_polls):
    add(analyst_client, "x" * 255)

    assert watched_ids() == ["x" * 255]


def test_add_rejects_blank_submission(analyst_client):
    response = add(analyst_client, " \n \n")

    assert watched_ids() == []
    assertContains(response, "This field is required.")


def test_add_escapes_markup_id(analyst_client, queued_polls):
    user_id = "<script>alert(1)</script>"

    response = add(analyst_client, user_id, note="<b>note</b>")

    assert watched_ids() == [user_id]
    assertContains(response, "&lt;script&gt;alert(1)&lt;/script&gt;")
    assertContains(response, "&lt;b&gt;note&lt;/b&gt;")
    assertNotContains(response, "<script")
    assertNotContains(response, "<b>note")


def test_add_stores_ids_with_url_characters(analyst_client, queued_polls):
    user_id = "a/b?c=1#frag%2F../. é"

    add(analyst_client, user_id)
    watched = WatchedUser.objects.get()
    response = analyst_client.get(WATCHLIST)

    assert watched.user_id == user_id
    assertContains(response, f'<a href="/users/{watched.pk}/">{user_id}</a>')


def test_add_during_account_pause_says_so(analyst_client, queued_polls):
    AccountState.objects.create(
        pk=1,
        paused_until=NOW + timedelta(minutes=5),
        pause_reason=PauseReason.RATE_LIMITED,
        pause_error="Rate limited by the API.",
    )

    response = add(analyst_client, "user-new")

    assert watched_ids() == ["user-new"]
    queued_polls.assert_not_called()
    assertContains(response, "the new users are polled when the pause ends")


def test_add_requires_csrf_token(analyst):
    client = Client(enforce_csrf_checks=True)
    client.force_login(analyst)

    response = client.post(ADD, {"user_ids": "user-new"})

    assert response.status_code == 403
    assert watched_ids() == []


# Pause and resume


def test_pause_user(analyst_client, active_user):
    response = analyst_client.post(
        reverse("watchlist_pause", args=[active_user.pk]), follow=True
    )

    active_user.refresh_from_db()
    assert active_user.is_active is False
    assertRedirects(response, WATCHLIST)
    assertContains(response, "Paused polling of user-active.")


def test_resume_user_makes_it_due(analyst_client, paused_user):
    response = analyst_client.post(
        reverse("watchlist_resume", args=[paused_user.pk]), follow=True
    )

    paused_user.refresh_from_db()
    assert paused_user.is_active is True
    assert paused_user.next_poll_at == NOW
    assertContains(response, "Resumed polling of user-paused")


def test_pause_returns_to_next_page(analyst_client, active_user):
    detail = reverse("user_detail", args=[active_user.pk])

    response = analyst_client.post(
        reverse("watchlist_pause", args=[active_user.pk]), {"next": detail}
    )

    assertRedirects(response, detail)


def test_pause_ignores_next_on_other_host(analyst_client, active_user):
    response = analyst_client.post(
        reverse("watchlist_pause", args=[active_user.pk]),
        {"next": "https://example.com/"},
    )

    assertRedirects(response, WATCHLIST)


def test_pause_unknown_user_is_404(analyst_client):
    response = analyst_client.post(reverse("watchlist_pause", args=[999]))

    assert response.status_code == 404


# Remove


def test_remove_page_explains_what_happens(analyst_client, active_user):
    make_session("user-active", "s1", NOW)
    make_session("user-active", "s2", NOW)

    response = analyst_client.get(reverse("watchlist_remove", args=[active_user.pk]))

    assertContains(response, "2 stored sessions of this user")
    assertContains(response, "Also delete the stored sessions")
    assert WatchedUser.objects.filter(pk=active_user.pk).exists()


def test_remove_keeps_sessions(analyst_client, active_user):
    make_session("user-active", "s1", NOW)
    PollRecord.objects.create(
        watched_user=active_user, started_at=NOW, finished_at=NOW, outcome="synced"
    )

    response = analyst_client.post(
        reverse("watchlist_remove", args=[active_user.pk]), follow=True
    )

    assert watched_ids() == []
    assert Session.objects.filter(user_id="user-active").count() == 1
    assert PollRecord.objects.count() == 0
    assertRedirects(response, WATCHLIST)
    assertContains(response, "Its stored sessions are kept.")


def test_remove_with_purge_deletes_sessions(analyst_client, active_user):
    make_session("user-active", "s1", NOW)
    make_session("other-user", "s2", NOW)
    CoverageGap.objects.create(user_id="user-active", detected_at=NOW)

    response = analyst_client.post(
        reverse("watchlist_remove", args=[active_user.pk]), {"purge": "on"}, follow=True
    )

    assert watched_ids() == []
    assert list(Session.objects.values_list("session_id", flat=True)) == ["s2"]
    assert CoverageGap.objects.count() == 0
    assertContains(response, "and deleted its stored sessions")


def test_remove_unknown_user_is_404(analyst_client):
    response = analyst_client.post(reverse("watchlist_remove", args=[999]))

    assert response.status_code == 404
