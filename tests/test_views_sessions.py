import base64
import json
from datetime import timedelta
from urllib.parse import quote

import pytest
from django.db import connection
from django.http import QueryDict
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from pytest_django.asserts import assertContains, assertNotContains, assertRedirects

from dashboard.views import sessions as sessions_view
from roundtable_sync.models import Session, SessionTimeSource, WatchedUser
from roundtable_sync.search import FTS_TABLE
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


def cursor(value, session_id):
    text = json.dumps([value, session_id])
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def list_url(query=""):
    url = reverse("session_list")
    return f"{url}?{query}" if query else url


def row_ids(response):
    return [session.session_id for session in response.context["table"].rows]


def walk(client, url, link):
    """Follow ``link`` ("next_url" or "previous_url") from ``url`` to the end."""
    seen = []
    pages = 0
    while url is not None:
        response = client.get(url)
        assert response.status_code == 200
        seen.append(row_ids(response))
        url = getattr(response.context["table"], link)
        if url is not None:
            url = list_url() + url
        pages += 1
        assert pages < 100
    return seen


@pytest.fixture(name="small_pages")
def small_pages_fixture(monkeypatch):
    monkeypatch.setattr(sessions_view, "PAGE_SIZE", 3)


@pytest.fixture(name="tied_sessions")
def tied_sessions_fixture():
    """Eleven sessions whose times, scores and users tie in groups."""
    scores = [10, None, 50, 10, None, 90, 50, 10, 70, None, 90]
    for index, score in enumerate(scores):
        make_session(
            f"user-{index % 3}",
            f"s{index:02d}",
            NOW - timedelta(hours=index // 4),
            risk_score=score,
        )
    return scores


def expected_order(scores, sort):
    """Return session IDs in ``sort`` order, a missing score lowest."""
    rows = [
        {
            "session": f"s{index:02d}",
            "user": f"user-{index % 3}",
            "time": NOW - timedelta(hours=index // 4),
            "score": (score is not None, score or 0),
        }
        for index, score in enumerate(scores)
    ]
    key = sort.removeprefix("-")
    ordered = sorted(rows, key=lambda row: (row[key], row["session"]))
    if sort.startswith("-"):
        ordered.reverse()
    return [row["session"] for row in ordered]


# Access


def test_anonymous_redirected_to_login(anonymous_client):
    response = anonymous_client.get(list_url())

    assertRedirects(response, f"{reverse('login')}?next={list_url()}")


def test_post_is_405(analyst_client):
    response = analyst_client.post(list_url())

    assert response.status_code == 405


def test_nav_links_to_explorer(analyst_client):
    response = analyst_client.get(list_url())

    assertContains(response, f'<a href="{list_url()}">Sessions</a>', html=True)


# Table contents


def test_table_shows_session_columns(analyst_client):
    make_session(
        "alice",
        "s1",
        NOW,
        risk_score=75,
        recommended_action="Auto-reject or high-priority review",
        tags=["checkout"],
    )

    response = analyst_client.get(list_url())

    assertContains(response, "2026-03-02 12:00:00 UTC")
    assertContains(response, "alice")
    assertContains(response, "75 (block)")
    assertContains(response, "Auto-reject or high-priority review")
    assertContains(response, "<li>checkout</li>", html=True)
    assertContains(response, "flagged</span>")


def test_user_cell_has_no_whitespace(analyst_client):
    # The cell keeps whitespace (white-space: pre-wrap), so any around the
    # link would wrap the ID onto a second line.
    make_session("alice", "s1", NOW)

    response = analyst_client.get(list_url())

    assertContains(response, '<td class="user-id"><a href="/sessions/?user=alice">')
    assertContains(response, "alice</a></td>")


@override_settings(DASHBOARD_TIME_ZONE="Europe/Paris")
def test_time_shown_in_analyst_time_zone(analyst_client):
    make_session("alice", "s1", NOW)

    response = analyst_client.get(list_url())

    assertContains(response, "2026-03-02 13:00:00 CET")


def test_unflagged_session_has_no_marker(analyst_client):
    make_session("alice", "s1", NOW, risk_score=10, recommended_action="Auto-accept")

    response = analyst_client.get(list_url())

    assertNotContains(response, "flagged</span>")


def test_first_seen_time_is_marked(analyst_client):
    make_session("alice", "s1", NOW, session_time_source=SessionTimeSource.FIRST_SEEN)

    response = analyst_client.get(list_url())

    assertContains(response, "first seen</span>")


def test_watched_user_links_to_user_page(analyst_client):
    watched = WatchedUser.objects.create(user_id="alice")
    make_session("alice", "s1", NOW)
    make_session("bob", "s2", NOW)

    response = analyst_client.get(list_url())

    assertContains(response, reverse("user_detail", args=[watched.pk]))


def test_unwatched_user_links_to_explorer_filter(analyst_client):
    make_session("bob/a b&c", "s2", NOW)

    response = analyst_client.get(list_url())

    url = list_url(f"user={quote('bob/a b&c', safe='')}")
    assertContains(response, f'<a href="{url}">bob/a b&amp;c</a>', html=True)


def test_session_id_links_to_session_page_encoded(analyst_client):
    make_session("alice", "a/b?c=d&e", NOW)

    response = analyst_client.get(list_url())

    expected = f"{reverse('session_detail')}?id={quote('a/b?c=d&e', safe='')}"
    assertContains(response, expected.replace("&", "&amp;"))


def test_rows_load_only_table_columns(analyst_client):
    make_session("alice", "s1", NOW)

    response = analyst_client.get(list_url())

    row = response.context["table"].rows[0]
    assert "raw" in row.get_deferred_fields()
    assert "risk_explanation" in row.get_deferred_fields()


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_strings_are_escaped(analyst_client, text):
    WatchedUser.objects.create(user_id=text)
    make_session(text, text, NOW, tags=[text], recommended_action=text)

    response = analyst_client.get(list_url(f"q={quote(text)}&tag={quote(text)}"))

    assert row_ids(response) == [text]
    assertNotContains(response, "<script>alert(1)</script>")
    assertNotContains(response, "<img src=x")


def test_empty_result_says_so(analyst_client):
    response = analyst_client.get(list_url("user=nobody"))

    assertContains(response, "No sessions match these filters.")


# Filters through the page


def test_filters_apply_to_rows(analyst_client):
    make_session("alice", "s1", NOW, risk_score=80)
    make_session("alice", "s2", NOW, risk_score=20)
    make_session("bob", "s3", NOW, risk_score=80)

    response = analyst_client.get(list_url("user=alice&band=block"))

    assert row_ids(response) == ["s1"]


def test_invalid_filter_shows_error_and_applies_others(analyst_client):
    make_session("alice", "s1", NOW)
    make_session("bob", "s2", NOW)

    response = analyst_client.get(list_url("user=alice&score_max=high"))

    assert row_ids(response) == ["s1"]
    assertContains(response, "Score to &quot;high&quot; is invalid")
    assertNotContains(response, "Export CSV")


def test_filter_form_keeps_values(analyst_client):
    response = analyst_client.get(list_url("tag=checkout"))

    assertContains(response, 'value="checkout"')


def test_offered_actions_in_datalist(analyst_client):
    make_session("alice", "s1", NOW, recommended_action="Escalate")

    response = analyst_client.get(list_url())

    assertContains(response, '<option value="Auto-accept"></option>', html=True)
    assertNotContains(response, '<option value="Escalate"></option>', html=True)


def test_requested_undocumented_action_offered(analyst_client):
    response = analyst_client.get(list_url(f"action={quote(HOSTILE[0])}"))

    escaped = "&lt;script&gt;alert(1)&lt;/script&gt;"
    assertContains(response, f'<option value="{escaped}"></option>')
    assertNotContains(response, HOSTILE[0])


def test_offered_actions_read_no_sessions(analyst_client):
    make_session("alice", "s1", NOW, recommended_action="Escalate")

    with CaptureQueriesContext(connection) as queries:
        analyst_client.get(list_url())

    statements = [query["sql"] for query in queries.captured_queries]
    assert not any("DISTINCT" in sql for sql in statements)
    assert not any('"recommended_action" IS NOT NULL' in sql for sql in statements)


def test_export_link_keeps_filters(analyst_client):
    response = analyst_client.get(list_url("user=alice&band=block&sort=score"))

    assertContains(
        response,
        f"{reverse('session_export')}?user=alice&amp;band=block",
    )


# Sorting


def test_default_sort_is_newest_first(analyst_client):
    make_session("u", "old", NOW - timedelta(days=1))
    make_session("u", "new", NOW)

    response = analyst_client.get(list_url())

    assert row_ids(response) == ["new", "old"]


@pytest.mark.parametrize(
    "sort", ["time", "-time", "score", "-score", "user", "-user", "session", "-session"]
)
def test_sort_orders_first_page(analyst_client, tied_sessions, sort):
    response = analyst_client.get(list_url(f"sort={sort}"))

    assert row_ids(response) == expected_order(tied_sessions, sort)


def test_invalid_sort_shows_error_and_default_order(analyst_client):
    make_session("u", "old", NOW - timedelta(days=1))
    make_session("u", "new", NOW)

    response = analyst_client.get(list_url("sort=raw"))

    assert row_ids(response) == ["new", "old"]
    assertContains(response, "Sort &quot;raw&quot; is invalid")


def test_sort_header_links_keep_filters_and_toggle(analyst_client):
    make_session("alice", "s1", NOW)

    response = analyst_client.get(list_url("user=alice&sort=-score"))

    headers = {header.label: header for header in response.context["table"].headers}
    score = QueryDict(headers["Score"].url.removeprefix("?"))
    assert score["sort"] == "score"
    assert score["user"] == "alice"
    assert headers["Score"].state == "descending"
    assert headers["Session time"].state == ""


# Keyset pagination


@pytest.mark.parametrize(
    "sort", ["time", "-time", "score", "-score", "user", "-user", "session", "-session"]
)
def test_next_links_visit_every_row_once(
    analyst_client, small_pages, tied_sessions, sort
):
    pages = walk(analyst_client, list_url(f"sort={sort}"), "next_url")

    visited = [session_id for page in pages for session_id in page]
    assert visited == expected_order(tied_sessions, sort)
    assert [len(page) for page in pages] == [3, 3, 3, 2]


@pytest.mark.parametrize("sort", ["-time", "score", "-score", "user"])
def test_previous_links_from_last_visit_every_row_once(
    analyst_client, small_pages, tied_sessions, sort
):
    pages = walk(analyst_client, list_url(f"sort={sort}&last=1"), "previous_url")

    visited = [session_id for page in reversed(pages) for session_id in page]
    assert visited == expected_order(tied_sessions, sort)


def test_first_page_has_no_previous_links(analyst_client, small_pages, tied_sessions):
    response = analyst_client.get(list_url())

    table = response.context["table"]
    assert table.first_url is None
    assert table.previous_url is None
    assert table.next_url is not None
    assert table.last_url is not None


def test_last_page_has_no_next_links(analyst_client, small_pages, tied_sessions):
    response = analyst_client.get(list_url("last=1"))

    table = response.context["table"]
    assert table.next_url is None
    assert table.last_url is None
    assert row_ids(response) == expected_order(tied_sessions, "-time")[-3:]


def test_previous_returns_to_same_page(analyst_client, small_pages, tied_sessions):
    first = analyst_client.get(list_url("sort=score"))
    second = analyst_client.get(list_url() + first.context["table"].next_url)

    back = analyst_client.get(list_url() + second.context["table"].previous_url)

    assert row_ids(back) == row_ids(first)


def test_page_links_keep_filters(analyst_client, small_pages):
    for index in range(5):
        make_session("alice", f"a{index}", NOW - timedelta(minutes=index))
        make_session("bob", f"b{index}", NOW - timedelta(minutes=index))

    pages = walk(analyst_client, list_url("user=alice"), "next_url")

    assert [session_id for page in pages for session_id in page] == [
        "a0",
        "a1",
        "a2",
        "a3",
        "a4",
    ]


def test_single_page_has_no_page_links(analyst_client):
    make_session("u", "s1", NOW)

    response = analyst_client.get(list_url())

    assertNotContains(response, 'aria-label="Sessions pages"')


@pytest.mark.parametrize(
    "cursor", ["garbage!", "WzEsMiwzXQ", "WyJub3QgYSB0aW1lIiwiczEiXQ"]
)
def test_invalid_cursor_shows_first_page_with_error(analyst_client, cursor):
    make_session("u", "s1", NOW)

    response = analyst_client.get(list_url(f"after={cursor}"))

    assert row_ids(response) == ["s1"]
    assertContains(response, "Page cursor")


@pytest.mark.parametrize(
    "query",
    [
        f"sort=session&after={cursor('zzzz', 'zzzz')}",
        f"sort=session&before={cursor('a', 'a')}",
        f"sort=-time&after={cursor('1970-01-01T00:00:00+00:00', 'a')}",
        f"sort=score&before={cursor(None, '')}",
    ],
)
def test_cursor_past_end_offers_first_page(analyst_client, small_pages, query):
    make_session("u", "s1", NOW)

    response = analyst_client.get(list_url(query))

    table = response.context["table"]
    assert response.status_code == 200
    assert table.rows == []
    assert table.first_url is None
    assert table.previous_url is None
    assert table.next_url is None
    assert table.last_url is None
    assert "after" not in table.restart_url
    assert "before" not in table.restart_url
    assertContains(response, "No sessions on this page.")
    assertContains(response, f'<a href="{table.restart_url}">Go to the first page</a>')
    assertNotContains(response, "No sessions match these filters.")


@pytest.mark.parametrize(
    "query",
    [
        f"sort=session&after={cursor('zzzz', 'zzzz')}",
        f"sort=session&before={cursor('a', 'a')}",
    ],
)
def test_user_page_cursor_past_end(analyst_client, query):
    watched = WatchedUser.objects.create(user_id="alice")
    make_session("alice", "s1", NOW)

    response = analyst_client.get(
        f"{reverse('user_detail', args=[watched.pk])}?{query}"
    )

    assert response.status_code == 200
    assert response.context["table"].restart_url == "?sort=session"
    assertContains(response, "No sessions on this page.")


def test_no_match_has_no_first_page_link(analyst_client):
    response = analyst_client.get(list_url("user=nobody&sort=-time&last=1"))

    assert response.context["table"].restart_url is None
    assertContains(response, "No sessions match these filters.")


def test_score_cursor_rejects_time_value(analyst_client, small_pages, tied_sessions):
    first = analyst_client.get(list_url())
    cursor = QueryDict(first.context["table"].next_url.removeprefix("?"))["after"]

    response = analyst_client.get(list_url(f"sort=score&after={cursor}"))

    assertContains(response, "Page cursor")


# Free-text search pages


@pytest.fixture(name="searched_sessions")
def searched_sessions_fixture(tied_sessions):
    """The tied sessions, of which six match "checkout" by a tag."""
    matching = {f"s{index:02d}" for index in (1, 2, 4, 8, 9, 10)}
    Session.objects.update(tags=["login"])
    Session.objects.filter(pk__in=matching).update(tags=["checkout-flow"])
    return tied_sessions, matching


@pytest.mark.parametrize("window", [1, 4, 100])
@pytest.mark.parametrize("sort", ["-time", "score", "-score", "user"])
def test_search_pages_visit_every_match_once(
    analyst_client, small_pages, monkeypatch, searched_sessions, window, sort
):
    # A window of 1 never fills a page, 4 sometimes and 100 always.
    monkeypatch.setattr(sessions_view, "SEARCH_WINDOW", window)
    scores, matching = searched_sessions
    expected = [s for s in expected_order(scores, sort) if s in matching]

    forward = walk(analyst_client, list_url(f"q=checkout&sort={sort}"), "next_url")
    backward = walk(
        analyst_client, list_url(f"q=checkout&sort={sort}&last=1"), "previous_url"
    )

    assert [s for page in forward for s in page] == expected
    assert [s for page in reversed(backward) for s in page] == expected


def test_search_window_keeps_other_filters(analyst_client, small_pages, monkeypatch):
    monkeypatch.setattr(sessions_view, "SEARCH_WINDOW", 4)
    for index in range(8):
        make_session(
            "alice" if index % 2 else "bob",
            f"s{index}",
            NOW - timedelta(minutes=index),
            tags=["checkout-flow"],
        )

    response = analyst_client.get(list_url("q=checkout&user=alice"))

    assert row_ids(response) == ["s1", "s3", "s5"]


def page_queries(client, url):
    with CaptureQueriesContext(connection) as captured:
        client.get(url)
    return [query["sql"] for query in captured.captured_queries]


def test_common_term_skips_search_index(analyst_client, small_pages, monkeypatch):
    if connection.vendor != "sqlite":
        pytest.skip("the window is SQLite's")
    monkeypatch.setattr(sessions_view, "SEARCH_WINDOW", 5)
    for index in range(5):
        make_session("u", f"s{index}", NOW, tags=["checkout-flow"])
    make_session("u", "rare", NOW - timedelta(days=1), tags=["refund"])

    common = page_queries(analyst_client, list_url("q=checkout"))
    rare = page_queries(analyst_client, list_url("q=refund"))

    assert not any(FTS_TABLE in sql for sql in common)
    assert sum(FTS_TABLE in sql for sql in rare) == 1


def test_short_window_skips_search_index(analyst_client, small_pages):
    if connection.vendor != "sqlite":
        pytest.skip("the window is SQLite's")
    make_session("u", "rare", NOW, tags=["refund"])
    make_session("u", "other", NOW, tags=["login"])

    queries = page_queries(analyst_client, list_url("q=refund"))

    assert not any(FTS_TABLE in sql for sql in queries)


def test_search_window_ignores_row_filters(analyst_client):
    if connection.vendor != "sqlite":
        pytest.skip("the window is SQLite's")
    make_session("u", "s1", NOW, tags=["checkout-flow"])

    queries = page_queries(analyst_client, list_url("q=checkout&tag=checkout-flow"))

    # The window subquery comes last in the page query's WHERE clause. It
    # reads the time index alone, not each session's tags.
    page = next(sql for sql in queries if " IN (SELECT" in sql)
    window = page[page.index(" IN (SELECT") :]
    assert "json_each" not in window
    assert "roundtable_sync_session_search" not in window


# Query count


@pytest.mark.parametrize("count", [5, 120])
@pytest.mark.parametrize(
    "query",
    ["", "sort=score&after=WzAsInMwMDAwIl0", "sort=-time&last=1", "q=s0&tag=x"],
)
def test_query_count_is_bounded(
    analyst_client, django_assert_max_num_queries, count, query
):
    for index in range(count):
        WatchedUser.objects.create(user_id=f"user-{index}")
        make_session(
            f"user-{index}",
            f"s{index:04d}",
            NOW - timedelta(minutes=index),
            tags=["x"],
            risk_score=index % 101,
        )
    analyst_client.get(list_url())

    # Two of these load the analyst's permissions, for the export link.
    with django_assert_max_num_queries(10):
        response = analyst_client.get(list_url(query))

    assert response.status_code == 200
    assert len(row_ids(response)) >= min(count - 1, 50)
