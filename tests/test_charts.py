import random
from datetime import UTC, date, datetime, timedelta
from unittest import mock

import pytest
from django.test import override_settings
from django.utils import timezone

from dashboard import charts, riskiest
from dashboard.coverage import Coverage
from roundtable_sync import tallies
from roundtable_sync.bands import current_thresholds
from roundtable_sync.models import Session, SessionCheck, WatchedUser
from roundtable_sync.scoring_changes import scoring_changes_between
from tests.fixtures_web import NOW, make_session

pytestmark = pytest.mark.django_db

WEEK_AGO = NOW - timedelta(days=7)
# After the scoring changes of April and May 2026.
JUNE = datetime(2026, 6, 1, tzinfo=UTC)
FUTURE = datetime(2300, 1, 1, tzinfo=UTC)
PRE_EPOCH = datetime(1960, 1, 1, tzinfo=UTC)
REVIEW_ACTION = "Manual review or require additional verification"


def add_checks(session, **statuses):
    """Store check results, keyed "group__name", e.g. device__vpn="Detected"."""
    for key, status in statuses.items():
        group, name = key.split("__")
        SessionCheck.objects.create(
            session=session, group=group, name=name, status=status
        )


# Counts


def test_watched_user_counts():
    WatchedUser.objects.create(user_id="a")
    WatchedUser.objects.create(user_id="b")
    WatchedUser.objects.create(user_id="c", is_active=False)

    counts = charts.watched_user_counts()

    assert counts == {"active": 2, "paused": 1}


def test_session_counts_follow_range():
    make_session("u", "old", NOW - timedelta(days=10), risk_score=90)
    make_session("u", "week", NOW - timedelta(days=3), risk_score=75)
    make_session("u", "day", NOW - timedelta(hours=2), risk_score=55)
    make_session(
        "u", "action", NOW - timedelta(hours=1), recommended_action=REVIEW_ACTION
    )
    make_session("u", "unscored", NOW - timedelta(hours=1), risk_score=None)

    counts = charts.session_counts(WEEK_AGO, NOW, current_thresholds())

    assert counts["total"] == 5
    assert counts["in_range"] == 4
    assert counts["last_24h"] == 3
    assert counts["last_7d"] == 4
    assert counts["flagged"] == 3
    assert counts["high_risk"] == 1
    assert counts["unscored"] == 1


def test_session_counts_ignore_future_session():
    make_session("u", "now", NOW, risk_score=90)
    make_session("u", "future", FUTURE, risk_score=90)

    for since in (None, WEEK_AGO):
        counts = charts.session_counts(since, NOW, current_thresholds())

        assert counts["in_range"] == 1
        assert counts["flagged"] == 1
        assert counts["high_risk"] == 1
        assert counts["last_24h"] == 1
        assert counts["last_7d"] == 1
        assert counts["total"] == 2


def test_session_counts_all_time():
    make_session("u", "old", NOW - timedelta(days=400), risk_score=90)

    counts = charts.session_counts(None, NOW, current_thresholds())

    assert counts["in_range"] == 1
    assert counts["high_risk"] == 1
    assert counts["last_7d"] == 0


# Histogram


def histogram_counts(histogram, band):
    return next(item["counts"] for item in histogram["bands"] if item["band"] == band)


def test_histogram_buckets_edges():
    for score in (0, 9, 10, 49, 50, 69, 70, 99, 100):
        make_session("u", f"s{score}", NOW, risk_score=score)
    make_session("u", "none", NOW, risk_score=None)

    histogram = charts.score_histogram(None, NOW, current_thresholds())

    assert histogram_counts(histogram, "allow") == [2, 1, 0, 0, 1, 0, 0, 0, 0, 0]
    assert histogram_counts(histogram, "review") == [0, 0, 0, 0, 0, 1, 1, 0, 0, 0]
    assert histogram_counts(histogram, "block") == [0, 0, 0, 0, 0, 0, 0, 1, 0, 2]
    assert histogram["total"] == 9


def test_histogram_labels():
    histogram = charts.score_histogram(None, NOW, current_thresholds())

    assert histogram["labels"][0] == "0–9"
    assert histogram["labels"][-1] == "90–100"
    assert len(histogram["labels"]) == 10


@override_settings(ROUNDTABLE_REVIEW_THRESHOLD=55)
def test_histogram_splits_bucket_by_band():
    make_session("u", "s52", NOW, risk_score=52)
    make_session("u", "s57", NOW, risk_score=57)

    histogram = charts.score_histogram(None, NOW, current_thresholds())

    assert histogram_counts(histogram, "allow")[5] == 1
    assert histogram_counts(histogram, "review")[5] == 1


def test_histogram_names_bands():
    histogram = charts.score_histogram(None, NOW, current_thresholds())

    labels = [item["label"] for item in histogram["bands"]]
    assert labels == ["Allow (below 50)", "Review (50–69)", "Block (70 and above)"]


def test_histogram_table_rows():
    make_session("u", "s", NOW, risk_score=72)

    histogram = charts.score_histogram(None, NOW, current_thresholds())

    assert histogram["rows"][7] == {"label": "70–79", "counts": [0, 0, 1]}


def test_histogram_follows_range():
    make_session("u", "old", NOW - timedelta(days=8), risk_score=10)

    histogram = charts.score_histogram(WEEK_AGO, NOW, current_thresholds())

    assert histogram["total"] == 0


# Risk over time


def test_risk_over_time_daily_values():
    day = NOW - timedelta(days=2)
    make_session("u", "a", day, risk_score=80)
    make_session("u", "b", day + timedelta(minutes=5), risk_score=40)
    make_session("u", "c", day + timedelta(minutes=9), risk_score=None)

    series = charts.risk_over_time(WEEK_AGO, NOW, current_thresholds())

    point = next(p for p in series["days"] if p["date"] == "2026-02-28")
    assert point["sessions"] == 3
    assert point["average"] == 60.0
    assert point["high_risk_percent"] == 50.0


def test_risk_over_time_spans_range_with_gaps():
    make_session("u", "a", NOW - timedelta(days=2), risk_score=80)

    series = charts.risk_over_time(WEEK_AGO, NOW, current_thresholds())

    dates = [point["date"] for point in series["days"]]
    assert dates[0] == "2026-02-23"
    assert dates[-1] == "2026-03-02"
    assert len(dates) == 8
    assert series["days"][0]["average"] is None


def test_risk_over_time_uses_current_time_zone():
    # 03:00 UTC on 2 March is still 1 March in New York.
    make_session("u", "a", NOW.replace(hour=3), risk_score=80)

    with timezone.override("America/New_York"):
        series = charts.risk_over_time(None, NOW, current_thresholds())

    assert [point["date"] for point in series["days"]] == ["2026-03-01"]


def test_risk_over_time_empty():
    series = charts.risk_over_time(WEEK_AGO, NOW, current_thresholds())

    assert series == {"days": [], "scoring_changes": [], "left_out_sessions": 0}


def test_risk_over_time_marks_scoring_changes():
    make_session("u", "a", NOW.replace(month=3, day=25), risk_score=30)
    make_session("u", "b", NOW.replace(month=5, day=10), risk_score=60)

    series = charts.risk_over_time(None, JUNE, current_thresholds())

    dates = [change["date"] for change in series["scoring_changes"]]
    assert dates == ["2026-04-01", "2026-05-01"]


def test_scoring_change_says_day_unknown():
    make_session("u", "a", NOW.replace(month=3, day=25), risk_score=30)
    make_session("u", "b", NOW.replace(month=5, day=10), risk_score=60)

    series = charts.risk_over_time(None, JUNE, current_thresholds())

    description = series["scoring_changes"][0]["description"]
    assert "(exact day not published)" in description


def test_risk_over_time_ignores_future_session():
    make_session("u", "past", NOW - timedelta(days=2), risk_score=40)
    make_session("u", "future", FUTURE, risk_score=90)

    series = charts.risk_over_time(None, NOW, current_thresholds())

    assert [point["date"] for point in series["days"]] == ["2026-02-28"]
    assert series["days"][0]["average"] == 40.0


def test_risk_over_time_range_ignores_future_session():
    make_session("u", "future", FUTURE, risk_score=90)

    series = charts.risk_over_time(WEEK_AGO, NOW, current_thresholds())

    assert series["days"] == []


def test_risk_over_time_caps_days_before_pre_epoch_session():
    make_session("u", "ancient", PRE_EPOCH, risk_score=90)
    make_session("u", "recent", NOW - timedelta(days=1), risk_score=40)

    series = charts.risk_over_time(None, NOW, current_thresholds())

    dates = [point["date"] for point in series["days"]]
    assert len(dates) == charts.MAX_SERIES_DAYS
    assert dates[-1] == "2026-03-01"
    assert dates[0] == str(date(2026, 3, 1) - timedelta(charts.MAX_SERIES_DAYS - 1))
    assert series["left_out_sessions"] == 1


def test_risk_over_time_within_cap_leaves_none_out():
    make_session("u", "a", NOW - timedelta(days=charts.MAX_SERIES_DAYS - 1))
    make_session("u", "b", NOW)

    series = charts.risk_over_time(None, NOW, current_thresholds())

    assert len(series["days"]) == charts.MAX_SERIES_DAYS
    assert series["left_out_sessions"] == 0


# Recommended actions


def test_actions_documented_first_then_others():
    make_session("u", "a", NOW, recommended_action="Auto-accept")
    make_session("u", "b", NOW, recommended_action="Unknown")
    make_session("u", "c", NOW, recommended_action="Escalate")
    make_session("u", "d", NOW, recommended_action="Escalate")
    make_session("u", "e", NOW, recommended_action=None)
    make_session("u", "f", NOW, recommended_action=REVIEW_ACTION)

    actions = charts.sessions_by_action(None, NOW)

    assert actions["bars"] == [
        {"label": "Auto-accept", "count": 1, "kind": "documented"},
        {"label": REVIEW_ACTION, "count": 1, "kind": "documented"},
        {"label": "Unknown", "count": 1, "kind": "documented"},
        {"label": "Escalate (undocumented)", "count": 2, "kind": "undocumented"},
        {"label": charts.MISSING_ACTION_LABEL, "count": 1, "kind": "missing"},
    ]
    assert actions["truncated"] is False


def test_actions_capped():
    for i in range(charts.MAX_ACTIONS + 1):
        make_session("u", f"s{i}", NOW, recommended_action=f"action {i:02}")

    actions = charts.sessions_by_action(None, NOW)

    assert len(actions["bars"]) == charts.MAX_ACTIONS
    assert actions["truncated"] is True


def test_actions_keep_documented_past_cap():
    for i in range(charts.MAX_ACTIONS + 5):
        for copy in range(3):
            make_session("u", f"s{i}-{copy}", NOW, recommended_action=f"action {i:02}")
    make_session("u", "accept", NOW, recommended_action="Auto-accept")
    make_session("u", "missing", NOW, recommended_action=None)

    actions = charts.sessions_by_action(None, NOW)

    labels = [bar["label"] for bar in actions["bars"]]
    assert len(labels) == charts.MAX_ACTIONS
    assert labels[0] == "Auto-accept"
    assert labels[-1] == charts.MISSING_ACTION_LABEL
    assert labels[1] == "action 00 (undocumented)"
    assert actions["truncated"] is True


def test_actions_ignore_future_session():
    make_session("u", "future", FUTURE, recommended_action="Escalate")

    actions = charts.sessions_by_action(None, NOW)

    assert actions["bars"] == []


def test_actions_follow_range():
    make_session("u", "old", NOW - timedelta(days=8))

    actions = charts.sessions_by_action(WEEK_AGO, NOW)

    assert actions["bars"] == []


# Checks


def test_check_rates_counts_and_percentages():
    statuses = ["Detected", "Not detected", "Not detected", "Unknown", "Odd"]
    for i, status in enumerate(statuses):
        add_checks(make_session("u", f"s{i}", NOW), device__vpn=status)

    (row,) = charts.check_rates(None, NOW)

    assert row["group"] == "device"
    assert row["name"] == "vpn"
    assert row["detected"] == 1
    assert row["not_detected"] == 2
    assert row["unknown"] == 1
    assert row["other"] == 1
    assert row["reports"] == 5
    assert row["detection_percent"] == 33.3
    assert row["unknown_percent"] == 20.0


def test_check_rate_none_when_only_unknown():
    add_checks(make_session("u", "s", NOW), biometric__agent_behavior="Unknown")

    (row,) = charts.check_rates(None, NOW)

    assert row["detection_percent"] is None
    assert row["unknown_percent"] == 100.0


def test_checks_in_documented_order_then_alphabetical():
    add_checks(
        make_session("u", "s", NOW),
        device__vpn="Detected",
        biometric__zz_new="Detected",
        biometric__agent_behavior="Detected",
        device__aa_new="Detected",
        device__bot="Detected",
    )

    rows = charts.check_rates(None, NOW)

    names = [row["name"] for row in rows]
    assert names == ["agent_behavior", "bot", "vpn", "aa_new", "zz_new"]
    assert [row["documented"] for row in rows] == [True, True, True, False, False]


def test_check_rates_follow_range():
    add_checks(
        make_session("u", "old", NOW - timedelta(days=8)), device__vpn="Detected"
    )

    assert charts.check_rates(WEEK_AGO, NOW) == []


# Riskiest users and newest flagged sessions


def test_riskiest_users_by_max_score_then_flagged():
    make_session("low", "l1", NOW, risk_score=30)
    make_session("high", "h1", NOW, risk_score=90)
    make_session("tie-many", "t1", NOW, risk_score=80)
    make_session("tie-many", "t2", NOW, risk_score=60)
    make_session("tie-few", "f1", NOW, risk_score=80)
    make_session("unscored", "u1", NOW, risk_score=None)

    rows = riskiest.riskiest_users(None, NOW, current_thresholds())

    assert [row["user_id"] for row in rows] == [
        "high",
        "tie-many",
        "tie-few",
        "low",
        "unscored",
    ]
    assert rows[1]["flagged"] == 2
    assert rows[1]["max_score"] == 80
    assert rows[1]["sessions"] == 2


def test_riskiest_users_limited():
    for i in range(riskiest.TOP_USERS + 3):
        make_session(f"user-{i:02}", f"s{i}", NOW, risk_score=i)

    rows = riskiest.riskiest_users(None, NOW, current_thresholds())

    assert len(rows) == riskiest.TOP_USERS
    assert rows[0]["user_id"] == "user-12"


def test_riskiest_users_follow_range():
    make_session("old", "s", NOW - timedelta(days=8), risk_score=99)

    assert riskiest.riskiest_users(WEEK_AGO, NOW, current_thresholds()) == []


def test_newest_flagged_sessions():
    make_session("u", "calm", NOW, risk_score=10)
    make_session(
        "u",
        "by-action",
        NOW - timedelta(hours=1),
        risk_score=10,
        recommended_action=REVIEW_ACTION,
    )
    make_session("u", "by-score", NOW - timedelta(hours=2), risk_score=65)
    make_session("u", "old", NOW - timedelta(days=8), risk_score=95)

    sessions = charts.newest_flagged_sessions(WEEK_AGO, NOW, current_thresholds())

    assert [s.session_id for s in sessions] == ["by-action", "by-score"]


def test_newest_flagged_sessions_exclude_future():
    make_session("u", "future", FUTURE, risk_score=95)
    make_session("u", "now", NOW, risk_score=95)

    sessions = charts.newest_flagged_sessions(None, NOW, current_thresholds())

    assert [s.session_id for s in sessions] == ["now"]


def test_riskiest_users_exclude_future():
    make_session("future", "f", FUTURE, risk_score=99)

    assert riskiest.riskiest_users(None, NOW, current_thresholds()) == []


def test_check_rates_exclude_future():
    add_checks(make_session("u", "future", FUTURE), device__vpn="Detected")

    assert charts.check_rates(None, NOW) == []


def test_newest_flagged_sessions_limited():
    for i in range(charts.NEWEST_FLAGGED + 2):
        make_session("u", f"s{i:02}", NOW - timedelta(minutes=i), risk_score=90)

    sessions = charts.newest_flagged_sessions(None, NOW, current_thresholds())

    assert len(sessions) == charts.NEWEST_FLAGGED
    assert sessions[0].session_id == "s00"


def test_watched_user_pks():
    watched = WatchedUser.objects.create(user_id="watched")

    pks = charts.watched_user_pks(["watched", "gone", "watched"])

    assert pks == {"watched": watched.pk}


def test_scoring_changes_between():
    changes = scoring_changes_between(date(2026, 4, 1), date(2026, 4, 30))

    assert [change.date for change in changes] == [date(2026, 4, 1)]


# Tallied hours


def random_sessions(seed, count):
    """Store ``count`` sessions spread over the 40 days before NOW, with checks."""
    rng = random.Random(seed)
    actions = [*charts.DOCUMENTED_ACTIONS, "Undocumented <b>action</b>", None]
    for number in range(count):
        moment = NOW - timedelta(seconds=rng.randrange(40 * 24 * 3600 + 600))
        session = make_session(
            f"user-{rng.randrange(12)}",
            f"s{number}",
            moment + timedelta(microseconds=rng.randrange(10**6)),
            risk_score=rng.choice([None, *range(0, 101, 3)]),
            recommended_action=rng.choice(actions),
        )
        add_checks(
            session,
            device__vpn=rng.choice(["Detected", "Not detected", "Unknown", "Odd"]),
            biometric__bot_detected=rng.choice(["Detected", "Not detected"]),
        )


def figures(since, now):
    thresholds = current_thresholds()
    return {
        "counts": charts.session_counts(since, now, thresholds),
        "histogram": charts.score_histogram(since, now, thresholds),
        "risk_over_time": charts.risk_over_time(since, now, thresholds),
        "actions": charts.sessions_by_action(since, now),
        "checks": charts.check_rates(since, now),
    }


def counted_from_sessions(since, now):
    """Return the figures with every session counted row by row."""
    no_tallied_hour = Coverage(since, now, first=now, end=now)
    with mock.patch.object(Coverage, "of", return_value=no_tallied_hour):
        # The headline counts of the last 24 hours and 7 days use their own
        # ranges, so they are compared in the test of those counts.
        return figures(since, now)


@pytest.mark.parametrize("state", ["appended", "folded", "changed after fold"])
@pytest.mark.parametrize("zone", ["UTC", "Asia/Kolkata"])
def test_tallied_figures_equal_counts_of_sessions(state, zone):
    random_sessions(seed=7, count=400)
    # Changes and deletes leave -1 rows until they are folded.
    Session.objects.filter(session_id__in=["s1", "s2", "s3"]).delete()
    Session.objects.filter(session_id="s4").update(risk_score=99)
    if state != "appended":
        tallies.compact()
    if state == "changed after fold":
        # Unfolded rows in days that the day tallies already sum.
        Session.objects.filter(session_id__in=["s5", "s6"]).delete()
        Session.objects.filter(session_id="s7").update(risk_score=1)
        make_session("late", "s-late", NOW - timedelta(days=20), risk_score=77)
    # Not on the hour, so both ends of each range have a partial hour.
    now = NOW - timedelta(minutes=17, seconds=5)

    with timezone.override(zone):
        for since in [now - timedelta(hours=3), now - timedelta(days=30), None]:
            tallied = figures(since, now)
            counted = counted_from_sessions(since, now)
            for name in ["histogram", "risk_over_time", "actions", "checks"]:
                assert tallied[name] == counted[name], (since, name)
            for name in ["in_range", "flagged", "high_risk", "unscored", "total"]:
                assert tallied["counts"][name] == counted["counts"][name], since


def test_recent_counts_split_partial_hours():
    now = NOW - timedelta(minutes=17)
    for moment, session_id in [
        (now - timedelta(hours=24, minutes=1), "before-day"),
        (now - timedelta(hours=24), "day-start"),
        (now - timedelta(hours=23, minutes=50), "day-partial-hour"),
        # The first whole hour of the last 24 hours, and the start of the
        # partial hour that ends at ``now``.
        (now.replace(minute=0) - timedelta(hours=23), "day-first-whole-hour"),
        (now.replace(minute=0), "now-hour-start"),
        (now - timedelta(days=3), "days-ago"),
        (now - timedelta(days=7), "week-start"),
        (now - timedelta(days=7, seconds=1), "before-week"),
        (now, "now"),
        (now + timedelta(seconds=1), "after-now"),
    ]:
        make_session("u", session_id, moment)

    counts = charts.session_counts(None, now, current_thresholds())

    assert counts["last_24h"] == 5
    assert counts["last_7d"] == 8
    assert counts["in_range"] == 9
    assert counts["total"] == 10
