"""Retention: the daily task that deletes data older than the setting."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django_q.models import Schedule

from alerts.models import Alert, AlertRule
from roundtable_sync.models import (
    CoverageGap,
    PollRecord,
    ScoreChange,
    Session,
    SessionCheck,
    SessionEvent,
)
from tests.fixtures_web import NOW, make_session
from workflow import tasks
from workflow.models import AuditEvent

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def thirty_days(settings):
    settings.ROUNDTABLE_RETENTION_DAYS = 30


def session_with_history(session_id, age):
    session = make_session("alice", session_id, NOW - age)
    SessionCheck.objects.create(
        session=session, group="device", name="vpn", status="Detected"
    )
    SessionEvent.objects.create(session=session, position=0, action="click")
    ScoreChange.objects.create(
        session=session, observed_at=NOW - age, old_score=10, new_score=80
    )
    return session


def poll_record(age):
    return PollRecord.objects.create(
        user_id="alice",
        started_at=NOW - age,
        finished_at=NOW - age,
        outcome="synced",
    )


def test_deletes_sessions_older_than_setting():
    session_with_history("old", timedelta(days=31))
    session_with_history("recent", timedelta(days=29))

    tasks.apply_retention(now=NOW)

    assert list(Session.objects.values_list("pk", flat=True)) == ["recent"]


def test_deletion_cascades_to_history():
    session_with_history("old", timedelta(days=31))
    session_with_history("recent", timedelta(days=29))

    tasks.apply_retention(now=NOW)

    assert SessionCheck.objects.get().session_id == "recent"
    assert SessionEvent.objects.get().session_id == "recent"
    assert ScoreChange.objects.get().session_id == "recent"


def test_session_exactly_at_cutoff_is_kept():
    session_with_history("edge", timedelta(days=30))

    tasks.apply_retention(now=NOW)

    assert Session.objects.filter(pk="edge").exists()


def test_deletes_old_poll_records_and_gaps():
    poll_record(timedelta(days=40))
    kept_poll = poll_record(timedelta(days=1))
    CoverageGap.objects.create(user_id="alice", detected_at=NOW - timedelta(days=40))
    kept_gap = CoverageGap.objects.create(
        user_id="alice", detected_at=NOW - timedelta(days=1)
    )

    tasks.apply_retention(now=NOW)

    assert list(PollRecord.objects.all()) == [kept_poll]
    assert list(CoverageGap.objects.all()) == [kept_gap]


def test_deletes_in_batches(monkeypatch):
    monkeypatch.setattr(tasks, "RETENTION_BATCH_SIZE", 2)
    for index in range(5):
        session_with_history(f"old-{index}", timedelta(days=31 + index))

    with CaptureQueriesContext(connection) as queries:
        counts = tasks.apply_retention(now=NOW)

    session_deletes = [
        query["sql"]
        for query in queries.captured_queries
        if query["sql"].startswith('DELETE FROM "roundtable_sync_session" ')
    ]
    assert len(session_deletes) == 3
    assert not Session.objects.exists()
    assert counts["sessions"] == 5
    assert counts["session_related"] == 15


def test_records_counts_only_in_audit():
    session_with_history("secret-session", timedelta(days=31))
    poll_record(timedelta(days=31))

    tasks.apply_retention(now=NOW)

    event = AuditEvent.objects.get()
    assert event.action == "retention_applied"
    assert event.actor_label == "worker"
    assert event.details["sessions"] == 1
    assert event.details["session_related"] == 3
    assert event.details["poll_records"] == 1
    assert event.details["coverage_gaps"] == 0
    assert event.details["retention_days"] == 30
    assert "secret-session" not in str(event.details)


def test_nothing_expired_records_nothing():
    session_with_history("recent", timedelta(days=1))

    counts = tasks.apply_retention(now=NOW)

    assert counts == {
        "sessions": 0,
        "session_related": 0,
        "poll_records": 0,
        "coverage_gaps": 0,
        "alerts_and_deliveries": 0,
    }
    assert not AuditEvent.objects.exists()


def test_zero_days_keeps_everything(settings):
    settings.ROUNDTABLE_RETENTION_DAYS = 0
    session_with_history("ancient", timedelta(days=5000))
    poll_record(timedelta(days=5000))

    result = tasks.apply_retention(now=NOW)

    assert result is None
    assert Session.objects.count() == 1
    assert PollRecord.objects.count() == 1


def test_uses_current_time_by_default(time_machine):
    time_machine.move_to(NOW + timedelta(days=10), tick=False)
    session_with_history("was-recent", timedelta(days=25))

    tasks.apply_retention()

    assert not Session.objects.exists()


def test_migration_schedules_daily_task():
    schedule = Schedule.objects.get(name="workflow: apply retention")

    assert schedule.func == "workflow.tasks.apply_retention"
    assert schedule.schedule_type == Schedule.DAILY
    assert schedule.repeats == -1


def test_old_alerts_expire_with_their_sessions():
    rule = AlertRule.objects.first()
    for key, age in (("old", timedelta(days=31)), ("new", timedelta(days=1))):
        Alert.objects.create(
            rule=rule,
            kind=rule.kind,
            user_id="alice",
            dedupe_key=key,
            title=key,
            created_at=NOW - age,
        )

    counts = tasks.apply_retention(now=NOW)

    assert counts["alerts_and_deliveries"] == 1
    assert list(Alert.objects.values_list("title", flat=True)) == ["new"]
