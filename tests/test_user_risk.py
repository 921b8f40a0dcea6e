import random
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from django.core.management import call_command
from django.db import connection

from dashboard import riskiest
from dashboard.riskiest import TOP_USERS, riskiest_users
from roundtable_sync import user_risk
from roundtable_sync.bands import (
    FLAGGED_ACTIONS,
    Thresholds,
    current_thresholds,
    forget_thresholds,
)
from roundtable_sync.models import (
    Session,
    UserRisk,
    UserRiskChange,
    UserRiskDay,
    UserRiskState,
)
from tests.fixtures_web import make_session
from tests.test_cluster import database_url
from workflow.erasure import delete_stored_data

# Not on a whole hour, so every range has partial days at both ends.
NOW = datetime(2026, 11, 20, 12, 34, 56, tzinfo=UTC)
THRESHOLDS = Thresholds(review=50, block=70)
ACTIONS = [*FLAGGED_ACTIONS, "Auto-accept", None]


def day_of(moment):
    return moment.replace(hour=0, minute=0, second=0, microsecond=0)


def summed(sessions, review):
    """Return the summary of ``sessions`` as the refresh should count it."""
    return {
        "max_risk_score": max(
            (s.risk_score for s in sessions if s.risk_score is not None),
            default=None,
        ),
        "sessions": len(sessions),
        "flagged": sum(
            (s.risk_score is not None and s.risk_score >= review)
            or s.recommended_action in FLAGGED_ACTIONS
            for s in sessions
        ),
        "latest_session_time": max(s.session_time for s in sessions),
    }


def expected_summaries(review):
    by_user, by_day = {}, {}
    for session in Session.objects.all():
        by_user.setdefault(session.user_id, []).append(session)
        key = (session.user_id, day_of(session.session_time))
        by_day.setdefault(key, []).append(session)
    return (
        {user: summed(rows, review) for user, rows in by_user.items()},
        {key: summed(rows, review) for key, rows in by_day.items()},
    )


def stored_summaries():
    fields = ["max_risk_score", "sessions", "flagged", "latest_session_time"]
    users = {
        row.user_id: {field: getattr(row, field) for field in fields}
        for row in UserRisk.objects.all()
    }
    days = {
        (row.user_id, row.day): {field: getattr(row, field) for field in fields}
        for row in UserRiskDay.objects.all()
    }
    return users, days


def expected_riskiest(since, now, thresholds):
    """Rank the users from their sessions, as the overview promises."""
    by_user = {}
    for session in Session.objects.filter(session_time__lte=now):
        if since is None or session.session_time >= since:
            by_user.setdefault(session.user_id, []).append(session)
    rows = []
    for user, sessions in by_user.items():
        summary = summed(sessions, thresholds.review)
        rows.append(
            {
                "user_id": user,
                "max_score": summary["max_risk_score"],
                "flagged": summary["flagged"],
                "sessions": summary["sessions"],
                "latest": summary["latest_session_time"],
            }
        )
    rows.sort(
        key=lambda r: (
            r["max_score"] is None,
            -(r["max_score"] or 0),
            -r["flagged"],
            r["user_id"],
        )
    )
    return rows[:TOP_USERS]


def populate(rng, users=30, sessions=400):
    for number in range(sessions):
        user = f"user-{rng.randrange(users):02d}"
        # Whole days at times, so sessions fall on day boundaries too.
        moment = NOW - timedelta(minutes=rng.choice([rng.randrange(45 * 1440), 1440]))
        if rng.random() < 0.1:
            moment = day_of(moment)
        make_session(
            user,
            f"s{number}",
            moment,
            risk_score=rng.choice([None, *range(0, 101, 7), 100, 100]),
            recommended_action=rng.choice(ACTIONS),
        )
    # A user whose only session is dated after the range ends.
    make_session("future", "s-future", NOW + timedelta(hours=3), risk_score=100)


def change_some(rng):
    """Change sessions as polls, erasure and re-dating would."""
    sessions = list(Session.objects.order_by("session_id"))
    for session in rng.sample(sessions, 20):
        session.risk_score = rng.choice([None, 3, 55, 99, 100])
        session.save(update_fields=["risk_score"])
    for session in rng.sample(sessions, 10):
        Session.objects.filter(pk=session.pk).update(
            session_time=session.session_time - timedelta(days=2)
        )
    Session.objects.filter(user_id="user-03").delete()
    make_session("newcomer", "s-new", NOW - timedelta(hours=2), risk_score=100)


RANGES = {
    "24h": NOW - timedelta(hours=24),
    "7d": NOW - timedelta(days=7),
    "30d": NOW - timedelta(days=30),
    "midnight": day_of(NOW - timedelta(days=10)),
    "all": None,
}


@pytest.mark.django_db
@pytest.mark.parametrize("state", ["sessions", "summaries", "pending", "stale"])
@pytest.mark.parametrize("range_key", list(RANGES))
def test_riskiest_users_equal_session_ranking(state, range_key):
    rng = random.Random(7)
    populate(rng)
    if state != "sessions":
        user_risk.count_all(60 if state == "stale" else THRESHOLDS.review)
    if state == "pending":
        change_some(rng)
        assert UserRiskChange.objects.exists()

    rows = riskiest_users(RANGES[range_key], NOW, THRESHOLDS)

    assert rows == expected_riskiest(RANGES[range_key], NOW, THRESHOLDS)
    assert len(rows) == TOP_USERS


@pytest.mark.django_db
def test_riskiest_users_rank_ties_by_user_id():
    user_risk.count_all(THRESHOLDS.review)
    for user in ["b", "a", "c"]:
        make_session(user, f"s-{user}", NOW - timedelta(days=3), risk_score=90)
    user_risk.refresh()

    rows = riskiest_users(NOW - timedelta(days=30), NOW, THRESHOLDS)

    assert [row["user_id"] for row in rows] == ["a", "b", "c"]


@pytest.mark.django_db
def test_riskiest_users_notice_count_meanwhile(monkeypatch):
    populate(random.Random(13))
    user_risk.count_all(THRESHOLDS.review)
    in_range = riskiest._in_range

    def count_then_rank(*args):
        # Another process counts everything at a new threshold meanwhile.
        user_risk.count_all(60)
        return in_range(*args)

    monkeypatch.setattr(riskiest, "_in_range", count_then_rank)
    since = NOW - timedelta(days=30)

    rows = riskiest_users(since, NOW, THRESHOLDS)

    assert rows == expected_riskiest(since, NOW, THRESHOLDS)


@pytest.mark.django_db
def test_riskiest_users_skip_future_sessions():
    make_session("early", "s-past", NOW - timedelta(days=2), risk_score=90)
    make_session("early", "s-next", NOW + timedelta(hours=1), risk_score=100)
    make_session("plain", "s-plain", NOW - timedelta(days=1), risk_score=80)
    user_risk.count_all(THRESHOLDS.review)

    rows = riskiest_users(None, NOW, THRESHOLDS)

    assert [(row["user_id"], row["max_score"]) for row in rows] == [
        ("early", 90),
        ("plain", 80),
    ]
    assert rows[0]["sessions"] == 1


@pytest.mark.django_db
def test_count_all_sums_each_user_and_day():
    populate(random.Random(3))

    user_risk.count_all(THRESHOLDS.review)

    assert stored_summaries() == expected_summaries(THRESHOLDS.review)
    assert UserRiskState.objects.get().review == THRESHOLDS.review
    assert not UserRiskChange.objects.exists()


@pytest.mark.django_db
def test_refresh_recounts_changed_users():
    rng = random.Random(5)
    populate(rng)
    user_risk.count_all(THRESHOLDS.review)
    change_some(rng)
    delete_stored_data("user-07")

    recounted = user_risk.refresh()

    assert stored_summaries() == expected_summaries(THRESHOLDS.review)
    assert not UserRiskChange.objects.exists()
    assert 0 < recounted < 30


@pytest.mark.django_db
def test_refresh_recounts_all_at_new_review(settings):
    populate(random.Random(9))
    user_risk.count_all(THRESHOLDS.review)
    settings.ROUNDTABLE_REVIEW_THRESHOLD = 35
    forget_thresholds()

    assert user_risk.needs_refresh(35)
    assert user_risk.refresh() is None

    assert UserRiskState.objects.get().review == 35
    assert stored_summaries() == expected_summaries(35)


@pytest.mark.django_db
def test_refresh_counts_all_without_state():
    populate(random.Random(11))
    review = current_thresholds().review

    assert user_risk.needs_refresh(review)
    user_risk.refresh()

    assert not user_risk.needs_refresh(review)
    assert stored_summaries() == expected_summaries(review)


@pytest.mark.django_db
def test_refresh_stops_after_count_at_new_review(monkeypatch):
    make_session("alice", "s1", NOW, risk_score=10)
    user_risk.count_all(THRESHOLDS.review)
    make_session("alice", "s2", NOW, risk_score=60)
    lock = user_risk._lock
    calls = []

    def lock_after_another_count():
        calls.append(1)
        if len(calls) == 2:
            # Another worker has counted everyone at a new threshold.
            UserRiskState.objects.update(review=65)
        lock()

    monkeypatch.setattr(user_risk, "_lock", lock_after_another_count)

    assert user_risk.refresh() == 0

    assert UserRiskChange.objects.exists()


@pytest.mark.django_db
def test_refresh_recounts_in_batches(monkeypatch):
    user_risk.count_all(THRESHOLDS.review)
    monkeypatch.setattr(user_risk, "USERS_PER_BATCH", 3)
    for number in range(10):
        make_session(f"user-{number}", f"s{number}", NOW, risk_score=number)

    assert user_risk.refresh() == 10

    assert UserRisk.objects.count() == 10
    assert stored_summaries() == expected_summaries(THRESHOLDS.review)


@pytest.mark.django_db
def test_triggers_list_users_of_changed_sessions():
    make_session("alice", "s1", NOW, risk_score=10)
    make_session("bob", "s2", NOW, risk_score=10)
    user_risk.count_all(THRESHOLDS.review)

    # A column the summaries do not read.
    Session.objects.filter(pk="s1").update(events_attempts=2)
    assert not UserRiskChange.objects.exists()

    Session.objects.filter(pk="s1").update(risk_score=90)
    Session.objects.filter(pk="s2").delete()
    make_session("carol", "s3", NOW)

    changed = set(UserRiskChange.objects.values_list("user_id", flat=True))
    assert changed == {"alice", "bob", "carol"}


@pytest.mark.django_db
def test_sqlite_triggers_wait_for_first_count():
    if connection.vendor != "sqlite":
        pytest.skip("SQLite only: PostgreSQL lists changes before the first count")

    make_session("alice", "s1", NOW)

    assert not UserRiskChange.objects.exists()


@pytest.mark.django_db
def test_truncate_empties_summaries():
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL")
    make_session("alice", "s1", NOW)
    user_risk.count_all(THRESHOLDS.review)
    make_session("bob", "s2", NOW)

    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cursor.execute("TRUNCATE roundtable_sync_session CASCADE")

    assert not UserRisk.objects.exists()
    assert not UserRiskDay.objects.exists()
    assert not UserRiskChange.objects.exists()


@pytest.mark.postgres
@pytest.mark.process
@pytest.mark.django_db(transaction=True)
def test_refresh_sees_polls_committed_meanwhile(migration_data, monkeypatch):
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL")
    make_session("alice", "s1", NOW, risk_score=10)
    user_risk.count_all(THRESHOLDS.review)
    delete_changes = user_risk._delete_changes
    with psycopg.connect(database_url()) as writer:
        # A poll rescores a session before the refresh starts and commits
        # while it runs, right before the changes are removed. Its change
        # is older than the newest one the refresh sees, so removing the
        # changes after the recount would drop it uncounted.
        writer.execute(
            "UPDATE roundtable_sync_session SET risk_score = 80 WHERE session_id = 's1'"
        )
        make_session("alice", "s2", NOW, risk_score=20)

        def commit_then_delete(*args):
            writer.commit()
            delete_changes(*args)

        monkeypatch.setattr(user_risk, "_delete_changes", commit_then_delete)
        user_risk.refresh()
        monkeypatch.setattr(user_risk, "_delete_changes", delete_changes)

    user_risk.refresh()
    assert UserRisk.objects.get().max_risk_score == 80


def test_migration_installs_triggers_again(migration_data):
    make_session("alice", "s1", NOW, risk_score=10)
    call_command("migrate", "roundtable_sync", "0013", verbosity=0)
    with connection.cursor() as cursor:
        tables = connection.introspection.table_names(cursor)
    assert UserRisk._meta.db_table not in tables

    call_command("migrate", "roundtable_sync", verbosity=0)

    # Counted from scratch by the first refresh, then kept by the triggers.
    assert not UserRiskState.objects.exists()
    user_risk.refresh()
    make_session("alice", "s2", NOW, risk_score=90)
    assert list(UserRiskChange.objects.values_list("user_id", flat=True)) == ["alice"]
    user_risk.refresh()
    assert stored_summaries() == expected_summaries(current_thresholds().review)
