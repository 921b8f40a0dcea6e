"""SQLite query plans of the explorer's page query and the overview's figures.

A plan that reads every session in a range and sorts them costs seconds over
a million sessions, while these tests run on a few rows, so they check the
plan instead of the time.
"""

import re
from datetime import timedelta

import pytest
from django.db import connection
from django.http import QueryDict
from django.test.utils import CaptureQueriesContext

from dashboard import charts
from dashboard.check_counts import check_counts
from dashboard.filters import SessionFilterForm
from dashboard.riskiest import riskiest_users
from dashboard.views.sessions import TABLE_FIELDS, Ordering
from roundtable_sync import tallies, user_risk
from roundtable_sync.bands import Thresholds
from roundtable_sync.models import Session
from tests.fixtures_web import NOW, make_session

pytestmark = pytest.mark.django_db


def page_plan(query, cursor_from=None):
    if connection.vendor != "sqlite":
        pytest.skip("checks SQLite plans")
    ordering = Ordering.parse("-time")
    sessions = SessionFilterForm(QueryDict(query)).filter(
        Session.objects.only(*TABLE_FIELDS)
    )
    sessions = sessions.order_by(*ordering.order_by())
    if cursor_from is not None:
        sessions = sessions.filter(ordering.after(NOW, cursor_from))
    return sessions[:51].explain()


def test_cursor_page_seeks_in_time_index():
    make_session("u", "s1", NOW)

    plan = page_plan("", cursor_from="s1")

    assert "(session_time<?)" in plan


def test_score_filter_walks_time_index():
    make_session("u", "s1", NOW)

    plan = page_plan("score_min=40&score_max=60&band=review")

    assert "TEMP B-TREE" not in plan
    assert "risk_sc" not in plan


def query_plans(figure):
    """Return the SQLite plan of each query that ``figure()`` runs."""
    if connection.vendor != "sqlite":
        pytest.skip("checks SQLite plans")
    with CaptureQueriesContext(connection) as captured:
        figure()
    plans = []
    with connection.cursor() as cursor:
        for query in captured.captured_queries:
            cursor.execute(f"EXPLAIN QUERY PLAN {query['sql']}")
            plans.append("\n".join(row[3] for row in cursor.fetchall()))
    return plans


def test_all_time_riskiest_reads_changed_users_only():
    thresholds = Thresholds(review=50, block=70)
    make_session("u", "s1", NOW - timedelta(days=3))
    user_risk.count_all(thresholds.review)
    make_session("v", "s2", NOW - timedelta(days=2))

    _, ranking, _ = query_plans(lambda: riskiest_users(None, NOW, thresholds))

    # Both session parts seek each listed user, instead of testing every
    # session in turn.
    assert ranking.count("(user_id=? AND session_time<?)") == 2
    assert not re.search(r"SCAN roundtable_sync_session\b", ranking)


def test_range_riskiest_reads_changed_users_only():
    thresholds = Thresholds(review=50, block=70)
    make_session("u", "s1", NOW - timedelta(days=3))
    user_risk.count_all(thresholds.review)
    make_session("v", "s2", NOW - timedelta(days=2))
    since = NOW - timedelta(days=30)

    _, ranking, _ = query_plans(lambda: riskiest_users(since, NOW, thresholds))

    # The changed users' sessions are sought by user; only the partial days
    # are read by time.
    assert "(user_id=? AND session_time>? AND session_time<?)" in ranking
    assert not re.search(r"SCAN roundtable_sync_session\b", ranking)


def test_day_sums_add_hours_from_index():
    make_session("u", "s1", NOW - timedelta(days=3))
    tallies.compact()
    thresholds = Thresholds(review=50, block=70)

    (histogram,) = query_plans(
        lambda: charts.score_histogram(NOW - timedelta(days=30), NOW, thresholds)
    )

    # The hours before and after the whole days, and the unfolded hours in
    # them, each as its own index range.
    assert "MULTI-INDEX OR" in histogram
    assert "SCAN roundtable_sync_sessiontally" not in histogram
    assert "SCAN roundtable_sync_sessiondaytally" not in histogram


def test_daily_series_reads_covering_index():
    make_session("u", "s1", NOW - timedelta(days=3))
    tallies.compact()
    thresholds = Thresholds(review=50, block=70)

    plans = query_plans(lambda: charts.risk_over_time(None, NOW, thresholds))

    assert any("COVERING INDEX sessiontally_hour_score_idx" in plan for plan in plans)


def test_check_counts_seek_user_index():
    make_session("u", "s1", NOW)
    make_session("v", "s2", NOW)

    (plan,) = query_plans(lambda: check_counts("u", 1))

    assert "USING INDEX roundtable__user_id" in plan
    assert "sessioncheck" not in plan
