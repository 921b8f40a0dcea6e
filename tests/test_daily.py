from datetime import UTC, date, datetime, timedelta

import pytest
from django.db.models import Q
from django.utils import timezone

from dashboard.coverage import Coverage
from dashboard.daily import daily_totals
from tests.fixtures_web import make_session

pytestmark = pytest.mark.django_db

# Instants around local midnights, clock changes and odd offsets.
INSTANTS = [
    # New York falls back at 06:00 UTC (02:00 EDT becomes 01:00 EST).
    *[
        datetime(2026, 11, 1, 3, 0, tzinfo=UTC) + timedelta(minutes=7 * step)
        for step in range(60)
    ],
    # Local midnight in Kolkata (+05:30) and Kathmandu (+05:45).
    datetime(2026, 3, 1, 18, 29, 59, 999999, tzinfo=UTC),
    datetime(2026, 3, 1, 18, 30, tzinfo=UTC),
    datetime(2026, 3, 1, 18, 14, 59, tzinfo=UTC),
    datetime(2026, 3, 1, 18, 15, tzinfo=UTC),
    # Amsterdam was +00:19:32 in the winter of 1930, so its midnight was
    # 23:40:28 UTC.
    datetime(1930, 1, 15, 23, 40, 27, tzinfo=UTC),
    datetime(1930, 1, 15, 23, 40, 28, tzinfo=UTC),
    datetime(1930, 1, 15, 23, 44, 59, tzinfo=UTC),
]
ZONES = [
    "UTC",
    "America/New_York",
    "Asia/Kolkata",
    "Asia/Kathmandu",
    "Europe/Amsterdam",
]


LATER = datetime(2027, 1, 1, tzinfo=UTC)
COVERAGES = {
    # Every hour but the last from the tallies.
    "tallied": Coverage.of(None, LATER),
    # No hour from the tallies: every session counted row by row.
    "sessions": Coverage(None, LATER, first=LATER, end=LATER),
}


def expected_totals(zone):
    by_day = {}
    for number, moment in enumerate(INSTANTS):
        day = timezone.localdate(moment, zone)
        row = by_day.setdefault(day, {"sessions": 0, "scores": [], "high_risk": 0})
        row["sessions"] += 1
        row["scores"].append(number % 100)
        row["high_risk"] += number % 100 >= 70
    return by_day


@pytest.mark.parametrize("coverage", COVERAGES.values(), ids=COVERAGES)
@pytest.mark.parametrize("zone_name", ZONES)
def test_daily_totals_match_local_days(zone_name, coverage):
    for number, moment in enumerate(INSTANTS):
        make_session("u", f"s{number}", moment, risk_score=number % 100)

    with timezone.override(zone_name):
        totals = daily_totals(coverage, Q(risk_score__gte=70), days_shown=100_000)
        expected = expected_totals(timezone.get_current_timezone())

    assert set(totals) == set(expected)
    for day, row in expected.items():
        assert totals[day]["sessions"] == row["sessions"], day
        assert totals[day]["scored"] == len(row["scores"]), day
        assert totals[day]["high_risk"] == row["high_risk"], day
        average = sum(row["scores"]) / len(row["scores"])
        assert float(totals[day]["average"]) == pytest.approx(average), day


@pytest.mark.parametrize("coverage", COVERAGES.values(), ids=COVERAGES)
def test_daily_totals_count_unscored_sessions(coverage):
    make_session("u", "a", INSTANTS[0], risk_score=None)

    with timezone.override("Asia/Kolkata"):
        totals = daily_totals(coverage, Q(risk_score__gte=70), days_shown=100_000)

    (row,) = totals.values()
    assert row["sessions"] == 1
    assert row["scored"] == 0
    assert row["average"] is None


def test_straddling_hours_of_years_stay_exact_where_shown():
    # In Kolkata (+05:30) local midnight falls in the UTC hour 18:00-19:00, so
    # each of these days adds one straddling hour: 23:50 and 00:10 local.
    first = datetime(2023, 1, 1, 18, 20, tzinfo=UTC)
    for number in range(1100):
        day = first + timedelta(days=number)
        make_session("u", f"before-{number}", day, risk_score=10)
        make_session("u", f"after-{number}", day + timedelta(minutes=20), risk_score=90)

    with timezone.override("Asia/Kolkata"):
        totals = daily_totals(
            Coverage.of(None, LATER), Q(risk_score__gte=70), days_shown=400
        )

    last = max(totals)
    assert last == date(2026, 1, 5)
    assert totals[last] == {"sessions": 1, "scored": 1, "high_risk": 1, "average": 90}
    for day in [last - timedelta(days=offset) for offset in range(1, 400)]:
        assert totals[day]["sessions"] == 2, day
        assert totals[day]["high_risk"] == 1, day
    assert sum(row["sessions"] for row in totals.values()) == 2200
