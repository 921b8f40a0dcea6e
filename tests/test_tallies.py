from collections import Counter
from datetime import UTC, datetime, timedelta
from unittest import mock

import psycopg
import pytest
from django.core.management import call_command
from django.db import connection, transaction

from roundtable_sync import tallies
from roundtable_sync.models import (
    CheckDayTally,
    CheckTally,
    Session,
    SessionCheck,
    SessionDayTally,
    SessionTally,
)
from roundtable_sync.parsing import parse_session_list
from roundtable_sync.store import store_sessions
from tests import payloads
from tests.test_cluster import database_url
from workflow.erasure import delete_stored_data

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def store(user_id, *sessions):
    parsed = parse_session_list(
        payloads.user_sessions(user_id, list(sessions)), "user_id"
    )
    store_sessions(user_id, parsed.sessions, NOW)


def log_at(moment):
    return [
        {
            "action": "page",
            "user_time": "x",
            "unix_timestamp": int(moment.timestamp() * 1000),
        }
    ]


def hour_of(moment):
    return moment.replace(minute=0, second=0, microsecond=0)


def counted_sessions():
    """Return the tallied count of each session key, without zero counts."""
    counts = Counter()
    for row in SessionTally.objects.all():
        counts[(row.hour, row.risk_score, row.recommended_action)] += row.sessions
    return +counts


def recounted_sessions():
    return Counter(
        (hour_of(s.session_time), s.risk_score, s.recommended_action)
        for s in Session.objects.all()
    )


def counted_checks():
    counts = Counter()
    for row in CheckTally.objects.all():
        counts[(row.hour, row.group, row.name, row.status)] += row.reports
    return +counts


def recounted_checks():
    return Counter(
        (hour_of(c.session.session_time), c.group, c.name, c.status)
        for c in SessionCheck.objects.select_related("session")
    )


def day_sums(model, keys, count):
    """Return the stored day rows and the folded hourly rows summed by day."""
    stored, expected = Counter(), Counter()
    for row in model["days"].objects.all():
        stored[(row.day, *(getattr(row, key) for key in keys))] += getattr(row, count)
    for row in model["hours"].objects.filter(compacted=True):
        key = (row.hour.replace(hour=0), *(getattr(row, key) for key in keys))
        expected[key] += getattr(row, count)
    return stored, +expected


def assert_tallies_match():
    assert counted_sessions() == recounted_sessions()
    assert counted_checks() == recounted_checks()
    # The day tallies sum the folded hours.
    sessions = {"hours": SessionTally, "days": SessionDayTally}
    stored, expected = day_sums(
        sessions, ["risk_score", "recommended_action"], "sessions"
    )
    assert stored == expected
    checks = {"hours": CheckTally, "days": CheckDayTally}
    stored, expected = day_sums(checks, ["group", "name", "status"], "reports")
    assert stored == expected


@pytest.mark.django_db
def test_stored_sessions_are_counted_in_their_hour():
    early = datetime(2026, 11, 1, 8, 59, 59, tzinfo=UTC)
    store(
        "alice",
        payloads.session("s1", risk_score=12, user_logs=log_at(early)),
        payloads.session("s2", risk_score=None, user_logs=log_at(early)),
        payloads.session(
            "s3", risk_score=90, user_logs=log_at(early + timedelta(seconds=1))
        ),
    )

    assert (
        counted_sessions()[
            (
                datetime(2026, 11, 1, 8, tzinfo=UTC),
                12,
                payloads.session()["recommended_action"],
            )
        ]
        == 1
    )
    assert_tallies_match()
    assert sum(counted_checks().values()) == SessionCheck.objects.count() > 0


@pytest.mark.django_db
def test_rescored_session_moves_between_keys():
    store("alice", payloads.session("s1", risk_score=12))
    store(
        "alice",
        payloads.session(
            "s1",
            risk_score=95,
            recommended_action="Auto-reject or high-priority review",
        ),
    )

    assert_tallies_match()
    assert [key[1] for key in counted_sessions()] == [95]


@pytest.mark.django_db
def test_session_time_change_moves_session_and_checks():
    store("alice", payloads.session("s1"), payloads.session("s2"))
    later = Session.objects.get(pk="s1").session_time + timedelta(hours=5)

    Session.objects.filter(pk="s1").update(session_time=later)

    assert_tallies_match()


@pytest.mark.django_db
def test_changed_checks_are_recounted():
    store("alice", payloads.session("s1"))
    payload = payloads.session("s1")
    payload["biometric_checks"] = {"bot_detected": "Detected"}

    store("alice", payload)

    assert_tallies_match()


@pytest.mark.django_db
def test_erasure_and_deletes_leave_no_count():
    store("alice", payloads.session("s1"), payloads.session("s2"))
    store("bob", payloads.session("s3"))

    with transaction.atomic():
        delete_stored_data("alice")
    SessionCheck.objects.filter(session_id="s3", name="vpn").delete()

    assert_tallies_match()
    tallies.compact()
    assert_tallies_match()
    assert {key[0] for key in counted_sessions()} == {
        hour_of(Session.objects.get(pk="s3").session_time)
    }


@pytest.mark.django_db
def test_compact_folds_each_key_into_one_row():
    store(
        "alice",
        payloads.session("s1", risk_score=10),
        payloads.session("s2", risk_score=10),
    )
    store("alice", payloads.session("s1", risk_score=40))
    store("bob", payloads.session("s3", risk_score=10))
    Session.objects.filter(pk="s3").delete()
    before_sessions, before_checks = counted_sessions(), counted_checks()

    assert tallies.compact() > 0

    assert counted_sessions() == before_sessions
    assert counted_checks() == before_checks
    rows = list(SessionTally.objects.values_list("risk_score", "sessions", "compacted"))
    assert sorted(rows) == [(10, 1, True), (40, 1, True)]
    assert not CheckTally.objects.filter(compacted=False).exists()
    assert CheckTally.objects.count() == len(counted_checks())
    # Nothing is left to fold, and folding again changes nothing.
    assert tallies.has_unfolded_rows() is False
    assert tallies.compact() == 0
    assert counted_sessions() == before_sessions


@pytest.mark.django_db
def test_compact_drops_keys_counted_down_to_zero():
    store("alice", payloads.session("s1"))
    tallies.compact()
    Session.objects.all().delete()

    tallies.compact()

    assert not SessionTally.objects.exists()
    assert not CheckTally.objects.exists()


@pytest.mark.django_db
def test_checks_written_before_their_session_count_once():
    # Django's foreign keys are deferred, so this is allowed until commit.
    moment = datetime(2026, 11, 2, 10, 30, tzinfo=UTC)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO roundtable_sync_sessioncheck "
            '(session_id, "group", name, status) '
            "VALUES ('early', 'device', 'vpn', 'Detected')"
        )
        Session.objects.create(
            session_id="early",
            user_id="alice",
            risk_score=5,
            raw={},
            raw_digest="0" * 64,
            first_seen_at=moment,
            changed_at=moment,
            session_time=moment,
            session_time_source="user_logs",
        )

    assert_tallies_match()
    assert sum(counted_checks().values()) == 1


@pytest.mark.django_db
def test_truncate_empties_tallies():
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL")
    store("alice", payloads.session("s1"))
    tallies.compact()
    assert SessionDayTally.objects.exists()

    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cursor.execute("TRUNCATE roundtable_sync_session CASCADE")

    assert not SessionTally.objects.exists()
    assert not CheckTally.objects.exists()
    assert not SessionDayTally.objects.exists()
    assert not CheckDayTally.objects.exists()


def test_migration_counts_stored_sessions(migration_data):
    store(
        "alice",
        payloads.session("s1", risk_score=12),
        payloads.session("s2", risk_score=None),
    )
    call_command("migrate", "roundtable_sync", "0012", verbosity=0)
    with connection.cursor() as cursor:
        assert SessionTally._meta.db_table not in connection.introspection.table_names(
            cursor
        )

    call_command("migrate", "roundtable_sync", verbosity=0)

    assert_tallies_match()
    assert not SessionTally.objects.filter(compacted=False).exists()
    # The triggers are back too.
    store("alice", payloads.session("s3", risk_score=70))
    assert_tallies_match()


@pytest.mark.django_db
def test_compact_folds_every_batch_of_hours():
    start = datetime(2026, 11, 1, tzinfo=UTC)
    hours = tallies.HOURS_PER_BATCH * 2 + 3
    for number in range(hours):
        moment = start + timedelta(hours=number)
        store("alice", payloads.session(f"s{number}", user_logs=log_at(moment)))

    assert tallies.compact() == hours

    assert not tallies.has_unfolded_rows()
    assert SessionTally.objects.count() == hours
    assert_tallies_match()


@pytest.mark.postgres
@pytest.mark.process
@pytest.mark.django_db(transaction=True)
def test_compact_keeps_rows_a_poll_has_not_committed(migration_data):
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL")
    store("alice", payloads.session("s1", risk_score=10))
    with psycopg.connect(database_url()) as writer:
        # A poll has stored a session in the same hour and not committed.
        writer.execute(
            "UPDATE roundtable_sync_session SET risk_score = 80 WHERE session_id = 's1'"
        )

        tallies.compact()
        writer.commit()

    assert_tallies_match()
    tallies.compact()
    assert_tallies_match()
    assert [key[1] for key in counted_sessions()] == [80]


@pytest.mark.django_db
def test_compact_leaves_rows_appended_meanwhile():
    store("alice", payloads.session("s1"))
    fold = tallies._fold
    calls = []

    def fold_while_a_poll_stores(*args):
        if not calls:
            # A poll appends rows of another hour while the first batch is
            # folded.
            later = datetime(2026, 11, 3, 7, 30, tzinfo=UTC)
            store("bob", payloads.session("s2", user_logs=log_at(later)))
        calls.append(args)
        fold(*args)

    with mock.patch.object(tallies, "_fold", fold_while_a_poll_stores):
        tallies.compact()

    assert tallies.has_unfolded_rows()
    assert_tallies_match()
