import json
import re
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

import pytest
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from pytest_django.asserts import assertContains, assertNotContains, assertRedirects

from dashboard import charts
from reviews.decisions import record_decision
from roundtable_sync.models import AccountState, Session, SessionCheck, WatchedUser
from tests.fixtures_web import (  # noqa: F401
    NOW,
    analyst_client_fixture,
    analyst_fixture,
    anonymous_client_fixture,
    frozen_now_fixture,
    make_session,
)

pytestmark = pytest.mark.django_db

OVERVIEW = reverse("overview")
SESSION_LIST = reverse("session_list")
FUTURE = datetime(2300, 1, 1, tzinfo=UTC)
PRE_EPOCH = datetime(1960, 1, 1, tzinfo=UTC)
SCRIPT = "<script>alert(1)</script>"
IMG = '"><img src=x onerror=alert(1)>'
FORMULA = "=cmd|' /C calc'!A0"
EMPTY_STATES = [
    "No sessions with a score in this range.",
    "No flagged sessions in this range.",
]


def json_block(response, element_id):
    """Return the raw JSON text of the page's json_script block ``element_id``."""
    match = re.search(
        rf'<script id="{element_id}" type="application/json">(.*?)</script>',
        response.content.decode(),
        re.DOTALL,
    )
    assert match is not None, f"no json_script block {element_id!r}"
    return match.group(1)


def populate(sessions_count, users_count):
    """Store sessions spread over users and days, each with two checks."""
    for i in range(users_count):
        WatchedUser.objects.create(user_id=f"user-{i}")
    for i in range(sessions_count):
        session = make_session(
            f"user-{i % users_count}",
            f"session-{i}",
            NOW - timedelta(hours=5 * i),
            risk_score=(i * 7) % 101,
            recommended_action=["Auto-accept", "Unknown", None, "Other"][i % 4],
        )
        SessionCheck.objects.create(
            session=session, group="device", name="vpn", status="Detected"
        )
        SessionCheck.objects.create(
            session=session, group="biometric", name=f"new_{i % 3}", status="Unknown"
        )


# Access and routing


def test_anonymous_redirected_to_login(anonymous_client):
    response = anonymous_client.get(OVERVIEW)

    assertRedirects(response, f"{reverse('login')}?next={OVERVIEW}")


def test_overview_is_home_page():
    assert OVERVIEW == "/"


def test_watchlist_moved():
    assert reverse("watchlist") == "/watchlist/"


def test_post_is_405(analyst_client):
    response = analyst_client.post(OVERVIEW)

    assert response.status_code == 405


def test_nav_links_overview_first(analyst_client):
    response = analyst_client.get(OVERVIEW)

    content = response.content.decode()
    nav = content[content.index('class="nav-links"') :]
    assert nav.index(">Overview</a>") < nav.index(">Watchlist</a>")


def test_page_loads_scripts_from_static(analyst_client):
    response = analyst_client.get(OVERVIEW)

    assertContains(response, 'src="/static/js/overview.js" defer')
    assertContains(response, 'src="/static/vendor/chart.js-4.6.1.umd.min.js" defer')


# Range selector


def test_default_range_is_7d(analyst_client):
    response = analyst_client.get(OVERVIEW)

    assert response.context["time_range"].key == "7d"
    assert response.context["invalid_range"] is None


@pytest.mark.parametrize(
    ("key", "expected"), [("24h", 1), ("7d", 2), ("30d", 3), ("all", 4)]
)
def test_range_filters_sessions(analyst_client, key, expected):
    make_session("u", "hour", NOW - timedelta(hours=1))
    make_session("u", "days", NOW - timedelta(days=3))
    make_session("u", "weeks", NOW - timedelta(days=20))
    make_session("u", "year", NOW - timedelta(days=365))

    response = analyst_client.get(OVERVIEW, {"range": key})

    assert response.context["time_range"].key == key
    assert response.context["counts"]["in_range"] == expected


def test_current_range_marked(analyst_client):
    response = analyst_client.get(OVERVIEW, {"range": "30d"})

    assertContains(response, '<a href="?range=30d" aria-current="page">')


def test_invalid_range_falls_back_with_notice(analyst_client):
    response = analyst_client.get(OVERVIEW, {"range": "1y"})

    assert response.context["time_range"].key == "7d"
    assertContains(response, 'The range "1y" is not one of')


def test_invalid_range_escaped(analyst_client):
    response = analyst_client.get(OVERVIEW, {"range": SCRIPT})

    assertNotContains(response, SCRIPT)
    assertContains(response, "&lt;script&gt;alert(1)&lt;/script&gt;")


# Figures


def test_counts_in_context(analyst_client):
    WatchedUser.objects.create(user_id="a")
    WatchedUser.objects.create(user_id="b", is_active=False)
    make_session("a", "s1", NOW - timedelta(hours=1), risk_score=80)
    make_session("a", "s2", NOW - timedelta(days=10), risk_score=None)

    response = analyst_client.get(OVERVIEW)

    assert response.context["watched_counts"] == {"active": 1, "paused": 1}
    assert response.context["counts"]["total"] == 2
    assert response.context["counts"]["in_range"] == 1
    assert response.context["counts"]["high_risk"] == 1
    assert response.context["counts"]["unscored"] == 0


def test_empty_database_shows_empty_states(analyst_client):
    response = analyst_client.get(OVERVIEW)

    for message in EMPTY_STATES:
        assertContains(response, message)
    assertContains(response, "No sessions in this range.", count=4)
    assertNotContains(response, "<canvas")
    assertNotContains(response, 'type="application/json"')


def test_figures_render_canvas_and_data(analyst_client):
    session = make_session("u", "s", NOW - timedelta(hours=1), risk_score=75)
    SessionCheck.objects.create(
        session=session, group="device", name="vpn", status="Detected"
    )

    response = analyst_client.get(OVERVIEW)

    for element_id in ("score-histogram", "risk-over-time", "actions", "checks"):
        assert json.loads(json_block(response, f"{element_id}-data"))
    assertContains(response, "<canvas", count=4)
    assertContains(response, 'role="img"', count=4)


def test_histogram_table_names_bands(analyst_client):
    make_session("u", "s", NOW - timedelta(hours=1), risk_score=75)

    response = analyst_client.get(OVERVIEW)

    assertContains(response, "Block (70 and above)")
    assertContains(response, '<th scope="row">70–79</th>')


def test_check_table_explains_unknown(analyst_client):
    session = make_session("u", "s", NOW - timedelta(hours=1))
    SessionCheck.objects.create(
        session=session, group="biometric", name="agent_behavior", status="Unknown"
    )

    response = analyst_client.get(OVERVIEW)

    assertContains(response, "An Unknown is not a clean result")
    assertContains(response, "100.0%")


def test_scoring_changes_listed_in_range(analyst_client, analyst, time_machine):
    time_machine.move_to(datetime(2026, 6, 1, tzinfo=UTC), tick=False)
    # The login of the fixture has expired by June.
    analyst_client.force_login(analyst)
    make_session("u", "before", NOW, risk_score=20)
    make_session("u", "after", NOW.replace(month=4, day=15), risk_score=80)

    response = analyst_client.get(OVERVIEW, {"range": "all"})

    assertContains(response, '<time datetime="2026-04-01">2026-04-01</time>')
    assertContains(response, "(exact day not published)")
    markers = json.loads(json_block(response, "risk-over-time-data"))
    assert [change["date"] for change in markers["scoring_changes"]] == ["2026-04-01"]


def test_no_scoring_changes_in_range(analyst_client):
    make_session("u", "s", NOW - timedelta(hours=1))

    response = analyst_client.get(OVERVIEW)

    assertContains(response, "No known scoring change falls in these days.")


# Links


def test_riskiest_watched_user_links_to_page(analyst_client):
    watched = WatchedUser.objects.create(user_id="watched")
    make_session("watched", "s", NOW - timedelta(hours=1), risk_score=90)

    response = analyst_client.get(OVERVIEW)

    url = reverse("user_detail", args=[watched.pk])
    assertContains(response, f'<a href="{url}">watched</a>', count=2)


def test_unwatched_user_links_to_explorer(analyst_client):
    make_session("gone/a b&c", "s", NOW - timedelta(hours=1), risk_score=90)

    response = analyst_client.get(OVERVIEW)

    assert response.context["riskiest_users"][0]["watched_pk"] is None
    url = f"{SESSION_LIST}?user={quote('gone/a b&c', safe='')}"
    # Once in riskiest users, once in newest flagged sessions.
    assertContains(response, f'<a href="{url}">gone/a b&amp;c</a>', count=2)


def test_count_links_open_explorer_filtered(analyst_client):
    response = analyst_client.get(OVERVIEW)

    urls = response.context["count_urls"]
    since = "since=2026-02-23T12%3A00%3A00"
    until = "until=2026-03-02T12%3A00%3A00"
    assert urls["in_range"] == f"{SESSION_LIST}?{since}&{until}"
    assert urls["flagged"] == f"{SESSION_LIST}?flagged=1&{since}&{until}"
    assert urls["high_risk"] == f"{SESSION_LIST}?band=block&{since}&{until}"
    assertContains(response, f'<a href="{urls["flagged"].replace("&", "&amp;")}">')


def test_all_range_count_links_have_no_since(analyst_client):
    response = analyst_client.get(OVERVIEW, {"range": "all"})

    urls = response.context["count_urls"]
    assert urls["in_range"] == f"{SESSION_LIST}?until=2026-03-02T12%3A00%3A00"


@override_settings(DASHBOARD_TIME_ZONE="Europe/Paris")
@pytest.mark.parametrize(
    ("count", "range_key"),
    [
        ("last_24h", "7d"),
        ("last_7d", "7d"),
        ("in_range", "30d"),
        ("in_range", "all"),
        ("flagged", "24h"),
        ("high_risk", "24h"),
    ],
)
def test_count_link_lists_counted_sessions(analyst_client, count, range_key):
    make_session("u", "edge-start", NOW - timedelta(hours=24), risk_score=90)
    make_session("u", "before-start", NOW - timedelta(hours=24, seconds=1))
    make_session("u", "now", NOW, risk_score=60)
    make_session("u", "just-after", NOW + timedelta(seconds=1), risk_score=90)
    make_session("u", "month", NOW - timedelta(days=20), risk_score=80)
    make_session("u", "future", FUTURE, risk_score=90)
    overview = analyst_client.get(OVERVIEW, {"range": range_key})

    explorer = analyst_client.get(overview.context["count_urls"][count])

    rows = explorer.context["table"].rows
    assert len(rows) == overview.context["counts"][count]
    assert "future" not in [row.session_id for row in rows]
    assert not explorer.context["form"].errors


# Sessions dated outside the plausible range


def test_future_session_left_out_of_overview(analyst_client):
    make_session("u", "now", NOW, risk_score=90)
    make_session("u", "future", FUTURE, risk_score=95)

    response = analyst_client.get(OVERVIEW, {"range": "all"})

    flagged = [s.session_id for s in response.context["newest_flagged"]]
    assert flagged == ["now"]
    assert response.context["counts"]["in_range"] == 1
    assert len(response.context["risk_over_time"]["days"]) == 1
    assert len(response.content) < 200_000


def test_pre_epoch_session_caps_daily_series(analyst_client):
    make_session("u", "ancient", PRE_EPOCH, risk_score=90)
    make_session("u", "now", NOW, risk_score=20)

    response = analyst_client.get(OVERVIEW, {"range": "all"})

    days = response.context["risk_over_time"]["days"]
    assert len(days) == charts.MAX_SERIES_DAYS
    assertContains(
        response,
        f"Only the {charts.MAX_SERIES_DAYS} days up to the newest session are "
        f"plotted, from {days[0]['date']}: 1 older session is left out.",
    )


def test_uncapped_daily_series_has_no_note(analyst_client):
    make_session("u", "now", NOW, risk_score=20)

    response = analyst_client.get(OVERVIEW, {"range": "all"})

    assertNotContains(response, "up to the newest session are plotted")


def test_flagged_session_links_to_session_page(analyst_client):
    make_session("u", "a/b c&d", NOW - timedelta(hours=1), risk_score=90)

    response = analyst_client.get(OVERVIEW)

    url = reverse("session_detail")
    assertContains(response, f'<a href="{url}?id=a%2Fb%20c%26amp%3Bd"', count=0)
    assertContains(response, f'<a href="{url}?id=a%2Fb%20c%26d">a/b c&amp;d</a>')


def test_newest_flagged_excludes_calm_sessions(analyst_client):
    make_session("u", "calm", NOW - timedelta(hours=1), risk_score=10)
    make_session("u", "risky", NOW - timedelta(hours=2), risk_score=70)

    response = analyst_client.get(OVERVIEW)

    flagged = [s.session_id for s in response.context["newest_flagged"]]
    assert flagged == ["risky"]


# Hostile text from the API


def test_hostile_action_escaped_in_json_script(analyst_client):
    make_session("u", "s", NOW - timedelta(hours=1), recommended_action=SCRIPT)

    response = analyst_client.get(OVERVIEW)

    block = json_block(response, "actions-data")
    assert "\\u003Cscript\\u003Ealert(1)\\u003C/script\\u003E" in block
    assert json.loads(block)["bars"][0]["label"] == f"{SCRIPT} (undocumented)"
    assertNotContains(response, SCRIPT)


def test_hostile_action_escaped_in_tables(analyst_client):
    make_session(
        "u", "s", NOW - timedelta(hours=1), risk_score=90, recommended_action=SCRIPT
    )

    response = analyst_client.get(OVERVIEW)

    escaped = "&lt;script&gt;alert(1)&lt;/script&gt;"
    assertContains(response, f"{escaped} (undocumented)")
    assertContains(response, f"<td>{escaped}</td>")


@pytest.mark.parametrize("hostile", [SCRIPT, IMG, FORMULA])
def test_hostile_ids_and_check_names_escaped(analyst_client, hostile):
    session = make_session(hostile, hostile, NOW - timedelta(hours=1), risk_score=90)
    SessionCheck.objects.create(
        session=session, group="device", name=hostile, status=hostile
    )

    response = analyst_client.get(OVERVIEW)

    content = response.content.decode()
    assert "<img src=x" not in content
    assert "<script>alert" not in content
    assert json.loads(json_block(response, "checks-data"))[0]["name"] == hostile


# Query count


@pytest.mark.parametrize(("sessions_count", "users_count"), [(3, 1), (120, 15)])
def test_query_count_bounded(
    analyst_client, django_assert_max_num_queries, sessions_count, users_count
):
    populate(sessions_count, users_count)
    # Created on first read by the banners, a cost only the first page view pays.
    AccountState.load()

    with django_assert_max_num_queries(24):
        response = analyst_client.get(OVERVIEW, {"range": "all"})

    assert response.context["counts"]["total"] == sessions_count


def test_newest_flagged_shows_decision(analyst_client, analyst):
    make_session("u", "flagged-1", NOW - timedelta(hours=1), risk_score=90)
    record_decision(
        analyst,
        "confirmed_bot",
        "seen before",
        session=Session.objects.get(pk="flagged-1"),
    )

    response = analyst_client.get(reverse("overview"), {"range": "24h"})

    assert "Confirmed bot" in response.content.decode()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_figures_come_from_one_snapshot_on_postgresql(migration_data, analyst_client):
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL")
    make_session("u", "s1", NOW - timedelta(hours=3), risk_score=90)

    with CaptureQueriesContext(connection) as queries:
        response = analyst_client.get(OVERVIEW, {"range": "7d"})

    statements = [query["sql"] for query in queries.captured_queries]
    begin = statements.index(
        "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY"
    )
    # The figures' queries follow it, inside the same transaction.
    figures = statements[begin + 1 :]
    assert any("roundtable_sync_sessiontally" in sql for sql in figures)
    assert any("roundtable_sync_checktally" in sql for sql in figures)
    assert response.context["counts"]["in_range"] == 1
