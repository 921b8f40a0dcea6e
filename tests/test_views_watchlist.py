from datetime import timedelta

import pytest
from django.contrib.messages import get_messages
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse
from django.utils.html import escape
from pytest_django.asserts import assertContains, assertNotContains, assertRedirects

from dashboard.forms import user_ids_from_csv
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
    viewer_client_fixture,
    viewer_fixture,
)
from workflow.models import AuditEvent

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
        ("watchlist_import", []),
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

    # Session, user, time zone preference, account state, unread alerts, the
    # page's count of watched users, the watched users with their session
    # counts, and the user's permissions (two, for the action buttons).
    with django_assert_max_num_queries(9):
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
        user_id="user-active", started_at=NOW, finished_at=NOW, outcome="synced"
    )

    response = analyst_client.post(
        reverse("watchlist_remove", args=[active_user.pk]), follow=True
    )

    assert watched_ids() == []
    assert Session.objects.filter(user_id="user-active").count() == 1
    assert PollRecord.objects.filter(user_id="user-active").count() == 1
    assertRedirects(response, WATCHLIST)
    assertContains(response, "Its stored sessions are kept.")


def test_remove_with_purge_deletes_sessions(analyst_client, active_user):
    make_session("user-active", "s1", NOW)
    make_session("other-user", "s2", NOW)
    CoverageGap.objects.create(user_id="user-active", detected_at=NOW)
    PollRecord.objects.create(
        user_id="user-active", started_at=NOW, finished_at=NOW, outcome="synced"
    )

    response = analyst_client.post(
        reverse("watchlist_remove", args=[active_user.pk]), {"purge": "on"}, follow=True
    )

    assert watched_ids() == []
    assert list(Session.objects.values_list("session_id", flat=True)) == ["s2"]
    assert CoverageGap.objects.count() == 0
    assert PollRecord.objects.count() == 0
    assertContains(response, "and deleted its stored sessions")


def test_remove_unknown_user_is_404(analyst_client):
    response = analyst_client.post(reverse("watchlist_remove", args=[999]))

    assert response.status_code == 404


# CSV import

IMPORT = reverse("watchlist_import")


def upload(client, content, name="ids.csv", note=""):
    data = content.encode("utf-8") if isinstance(content, str) else content
    csv_file = SimpleUploadedFile(name, data, content_type="text/csv")
    return client.post(
        IMPORT, {"import-csv_file": csv_file, "import-note": note}, follow=True
    )


def test_import_form_is_on_watchlist(analyst_client):
    response = analyst_client.get(WATCHLIST)

    assertContains(response, 'enctype="multipart/form-data"')
    assertContains(response, 'name="import-csv_file"')


def test_anonymous_import_redirected(anonymous_client, queued_polls):
    response = anonymous_client.post(IMPORT, {})

    assert response.status_code == 302
    assert watched_ids() == []


def test_import_get_is_405(analyst_client):
    response = analyst_client.get(IMPORT)

    assert response.status_code == 405


def test_import_without_header(analyst_client, analyst, queued_polls):
    response = upload(analyst_client, "first\nsecond,ignored\r\n third \n", note="CSV")

    assert sorted(watched_ids()) == ["first", "second", "third"]
    assert WatchedUser.objects.get(user_id="first").note == "CSV"
    assert WatchedUser.objects.get(user_id="first").added_by == analyst
    assert queued_polls.call_count == 3
    assertContains(response, "Added 3 user(s) to the watchlist: first, second, third.")


def test_import_user_id_column_by_header(analyst_client, queued_polls):
    upload(analyst_client, "email,User_ID\na@example.com,u1\nb@example.com,u2\n")

    assert sorted(watched_ids()) == ["u1", "u2"]


def test_import_strips_bom(analyst_client, queued_polls):
    upload(analyst_client, "\ufeffuser_id\nu1\n".encode())

    assert watched_ids() == ["u1"]


def test_import_bom_without_header(analyst_client, queued_polls):
    upload(analyst_client, "\ufeffu1\nu2\n".encode())

    assert sorted(watched_ids()) == ["u1", "u2"]


def test_import_keeps_quoted_commas(analyst_client, queued_polls):
    upload(analyst_client, '"a,b",x\n"c ""d""",y\n')

    assert sorted(watched_ids()) == ["a,b", 'c "d"']


def test_import_skips_blank_lines_and_duplicates(analyst_client, queued_polls):
    upload(analyst_client, "u1\n\n,\nu1\nu2\n")

    assert sorted(watched_ids()) == ["u1", "u2"]


def test_import_skips_already_watched(analyst_client, active_user, queued_polls):
    response = upload(analyst_client, "user-active\nuser-new\n")

    assert queued_polls.call_count == 1
    assertContains(response, "Already on the watchlist, skipped: user-active.")


def test_import_bad_rows_add_nothing(analyst_client, queued_polls):
    content = f"user_id,email\nok,a\n,b\n{'x' * 256},c\nfine,d\nshort\n"

    response = upload(analyst_client, "user_id,email\n" + content.split("\n", 1)[1])

    assert watched_ids() == []
    queued_polls.assert_not_called()
    assertContains(response, "Row 3: User ID is empty")
    assertContains(response, "Row 4: User ID")
    assertContains(response, "is 256 characters long; the maximum is 255.")
    assertNotContains(response, "Row 2:")
    assertNotContains(response, "Row 5:")


def test_import_row_missing_user_id_column(analyst_client, queued_polls):
    response = upload(analyst_client, "email,user_id\na,u1\nb\n")

    assert watched_ids() == []
    assertContains(response, "Row 3 has no user_id column.")


def test_import_lists_at_most_twenty_row_errors(analyst_client, queued_polls):
    content = "\n".join(["ok"] + ["bad\x00id"] * 25)

    response = upload(analyst_client, content)

    assert watched_ids() == []
    assertContains(response, "Row 21: User ID")
    assertNotContains(response, "Row 22: User ID")
    assertContains(response, "…and 5 more invalid rows.")


def test_import_rejects_too_many_rows(analyst_client, queued_polls):
    content = "\n".join(f"u{number}" for number in range(10_001))

    response = upload(analyst_client, content)

    assert watched_ids() == []
    assertContains(response, "The file has 10,001 rows of user IDs; the maximum is")


def test_csv_accepts_maximum_rows_with_header():
    content = "user_id\n" + "\n".join(f"u{number}" for number in range(10_000))

    user_ids = user_ids_from_csv(content)

    assert len(user_ids) == 10_000
    assert user_ids[-1] == "u9999"


def test_import_queues_first_hundred_polls(analyst_client, queued_polls):
    content = "\n".join(f"u{number:03}" for number in range(150))

    response = analyst_client.post(
        IMPORT,
        {"import-csv_file": SimpleUploadedFile("ids.csv", content.encode())},
    )

    listed = [str(message) for message in get_messages(response.wsgi_request)]
    assert WatchedUser.objects.count() == 150
    assert WatchedUser.objects.filter(claim_token__isnull=True).count() == 50
    assert WatchedUser.objects.filter(next_poll_at__lte=NOW).count() == 50
    assert queued_polls.call_count == 100
    assert listed[0].endswith("u018, u019 and 130 more.")
    assert listed[1] == (
        "Polls of the first 100 new users were queued now. The other 50 are "
        "due and queued at the next dispatch, within a minute."
    )


def test_import_rejects_file_over_one_megabyte(analyst_client, queued_polls):
    content = "u1\n" + "x" * (1024 * 1024)

    response = upload(analyst_client, content)

    assert watched_ids() == []
    assertContains(response, "The file is 1.0\xa0MB; the maximum is 1.0\xa0MB.")


def test_import_rejects_non_utf8(analyst_client, queued_polls):
    response = upload(analyst_client, "caf\xe9\n".encode("latin-1"))

    assert watched_ids() == []
    assertContains(response, "The file is not UTF-8 text (invalid byte at offset 3).")


def test_import_rejects_empty_file(analyst_client, queued_polls):
    response = upload(analyst_client, "user_id\n\n")

    assert watched_ids() == []
    assertContains(response, "The file contains no user IDs.")


def test_import_requires_a_file(analyst_client, queued_polls):
    response = analyst_client.post(IMPORT, {"import-note": "x"})

    assert watched_ids() == []
    assertContains(response, "This field is required.")


def test_import_escapes_hostile_ids(analyst_client, queued_polls):
    hostile = [
        "<script>alert(1)</script>",
        '"><img src=x onerror=alert(1)>',
        "=cmd|' /C calc'!A0",
    ]
    content = "".join(f'"{value.replace(chr(34), chr(34) * 2)}"\n' for value in hostile)

    response = upload(analyst_client, content)

    assert sorted(watched_ids()) == sorted(hostile)
    assertNotContains(response, "<script>alert")
    assertNotContains(response, "<img src=x")
    assertContains(response, escape(hostile[2]))


def test_import_requires_csrf_token(analyst):
    client = Client(enforce_csrf_checks=True)
    client.force_login(analyst)
    csv_file = SimpleUploadedFile("ids.csv", b"u1\n", content_type="text/csv")

    response = client.post(IMPORT, {"import-csv_file": csv_file})

    assert response.status_code == 403
    assert watched_ids() == []


def test_watchlist_paginates_and_searches(analyst_client):
    WatchedUser.objects.bulk_create(
        WatchedUser(user_id=f"user-{i:03d}") for i in range(150)
    )

    first = analyst_client.get(reverse("watchlist"))
    second = analyst_client.get(reverse("watchlist"), {"page": 2})
    found = analyst_client.get(reverse("watchlist"), {"q": "user-14"})

    assert len(first.context["watched_users"]) == 100
    assert len(second.context["watched_users"]) == 50
    assert "Page 1 of 2 (150 users)" in first.content.decode()
    ids = [w.user_id for w in found.context["watched_users"]]
    assert ids == [f"user-14{i}" for i in range(10)]


def test_watchlist_search_without_match_says_so(analyst_client):
    response = analyst_client.get(reverse("watchlist"), {"q": "<b>nobody</b>"})

    assert "No watched user ID contains “&lt;b&gt;nobody&lt;/b&gt;”." in (
        response.content.decode()
    )


# Roles

STATE_CHANGES = [
    ("watchlist_add", False, {"user_ids": "new-user"}),
    ("watchlist_import", False, {}),
    ("watchlist_pause", True, {}),
    ("watchlist_resume", True, {}),
    ("watchlist_remove", True, {"purge": "on"}),
]


@pytest.mark.parametrize(("name", "by_pk", "data"), STATE_CHANGES)
def test_viewer_cannot_change_watchlist(
    viewer_client, active_user, queued_polls, name, by_pk, data
):
    url = reverse(name, args=[active_user.pk] if by_pk else [])

    response = viewer_client.post(url, data)

    assert response.status_code == 403
    assert watched_ids() == ["user-active"]
    assert WatchedUser.objects.get().is_active
    assert not AuditEvent.objects.exists()


@pytest.mark.parametrize(("name", "by_pk", "data"), STATE_CHANGES)
def test_anonymous_post_changes_nothing(
    anonymous_client, active_user, queued_polls, name, by_pk, data
):
    url = reverse(name, args=[active_user.pk] if by_pk else [])

    response = anonymous_client.post(url, data)

    assertRedirects(response, f"{reverse('login')}?next={url}")
    assert watched_ids() == ["user-active"]


def test_viewer_cannot_open_remove_page(viewer_client, active_user):
    response = viewer_client.get(reverse("watchlist_remove", args=[active_user.pk]))

    assert response.status_code == 403


def test_viewer_sees_no_watchlist_forms(viewer_client, active_user, paused_user):
    response = viewer_client.get(WATCHLIST)

    assertContains(response, "user-active")
    assertNotContains(response, ADD)
    assertNotContains(response, IMPORT)
    assertNotContains(response, reverse("watchlist_pause", args=[active_user.pk]))
    assertNotContains(response, reverse("watchlist_resume", args=[paused_user.pk]))
    assertNotContains(response, reverse("watchlist_remove", args=[active_user.pk]))


def test_analyst_sees_watchlist_forms(analyst_client, active_user):
    response = analyst_client.get(WATCHLIST)

    assertContains(response, ADD)
    assertContains(response, IMPORT)
    assertContains(response, reverse("watchlist_remove", args=[active_user.pk]))


# Audit


def test_add_is_audited(analyst_client, active_user, queued_polls):
    add(analyst_client, "new-1\nnew-2\nuser-active")

    event = AuditEvent.objects.get()
    assert event.action == "watchlist_added"
    assert event.actor_label == "analyst"
    assert event.details["user_ids"] == ["new-1", "new-2"]
    assert event.details["skipped"] == 1


def test_add_of_watched_ids_only_is_not_audited(analyst_client, active_user):
    add(analyst_client, "user-active")

    assert not AuditEvent.objects.exists()


def test_import_is_audited(analyst_client, queued_polls):
    upload(analyst_client, "user_id\nnew-1\n")

    event = AuditEvent.objects.get()
    assert event.action == "watchlist_imported"
    assert event.details["user_ids"] == ["new-1"]


@pytest.mark.parametrize(
    ("name", "action"),
    [
        ("watchlist_pause", "watchlist_paused"),
        ("watchlist_resume", "watchlist_resumed"),
    ],
)
def test_pause_and_resume_are_audited(analyst_client, active_user, name, action):
    analyst_client.post(reverse(name, args=[active_user.pk]))

    event = AuditEvent.objects.get()
    assert event.action == action
    assert event.target == "user-active"
    assert event.actor_label == "analyst"


def test_remove_is_audited(analyst_client, active_user):
    analyst_client.post(reverse("watchlist_remove", args=[active_user.pk]))

    event = AuditEvent.objects.get()
    assert event.action == "watchlist_removed"
    assert event.target == "user-active"


def test_purge_is_audited_with_counts_only(analyst_client, active_user):
    make_session("user-active", "secret-session", NOW)
    PollRecord.objects.create(
        user_id="user-active", started_at=NOW, finished_at=NOW, outcome="synced"
    )

    analyst_client.post(
        reverse("watchlist_remove", args=[active_user.pk]), {"purge": "on"}
    )

    event = AuditEvent.objects.get()
    assert event.action == "watchlist_purged"
    assert event.details["sessions"] == 1
    assert event.details["poll_records"] == 1
    assert event.details["coverage_gaps"] == 0
    assert "secret-session" not in str(event.details)


def test_forbidden_page_explains_the_role(viewer_client):
    response = viewer_client.post(reverse("watchlist_add"), {"user_ids": "u1"})

    assert response.status_code == 403
    assertContains(response, "analysts", status_code=403)
