"""SQLite query plans of the explorer's page query.

A plan that reads every session in a range and sorts them costs seconds over
a million sessions, while these tests run on a few rows, so they check the
plan instead of the time.
"""

import pytest
from django.db import connection
from django.http import QueryDict

from dashboard.filters import SessionFilterForm
from dashboard.views.sessions import TABLE_FIELDS, Ordering
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
