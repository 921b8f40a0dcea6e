from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from roundtable_sync.models import (
    ForgottenSession,
    ScoreChange,
    Session,
    SessionCheck,
    SessionEvent,
    SessionTimeSource,
    WatchedUser,
)
from roundtable_sync.parsing import parse_events, parse_session_list
from roundtable_sync.store import replace_fetched_events, store_sessions
from tests import payloads

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)

pytestmark = pytest.mark.django_db


def parsed(*sessions, user_id="user-456"):
    return parse_session_list(
        payloads.user_sessions(user_id, list(sessions)), "user_id"
    ).sessions


def test_new_session_is_stored_with_checks_and_logs():
    result = store_sessions("user-456", parsed(payloads.session("s1")), NOW)

    assert result.new == 1
    stored = Session.objects.get(pk="s1")
    assert stored.user_id == "user-456"
    assert stored.risk_score == 75
    assert stored.tags == ["intake-survey", "checkout-flow"]
    assert stored.raw == payloads.session("s1")
    assert stored.first_seen_at == NOW
    assert stored.checks["device"]["vpn"] == "Detected"
    assert SessionCheck.objects.filter(session=stored).count() == 15
    assert SessionEvent.objects.filter(session=stored).count() == 1


def test_session_time_comes_from_earliest_user_log():
    logs = [
        {"action": "b", "user_time": "x", "unix_timestamp": 1743055900123},
        {"action": "a", "user_time": "x", "unix_timestamp": 1743055850000},
    ]

    store_sessions("u", parsed(payloads.session("s1", user_logs=logs)), NOW)

    stored = Session.objects.get(pk="s1")
    assert stored.session_time == datetime(2025, 3, 27, 6, 10, 50, tzinfo=UTC)
    assert stored.session_time_source == SessionTimeSource.USER_LOGS
    assert stored.needs_events is False


def test_session_without_logs_uses_first_seen_and_needs_events():
    store_sessions("u", parsed(payloads.session("s1", user_logs=payloads.DROP)), NOW)

    stored = Session.objects.get(pk="s1")
    assert stored.session_time == NOW
    assert stored.session_time_source == SessionTimeSource.FIRST_SEEN
    assert stored.needs_events is True


def test_unchanged_repoll_writes_no_rows(django_assert_num_queries):
    store_sessions("u", parsed(payloads.session("s1"), payloads.session("s2")), NOW)
    later = NOW + timedelta(minutes=5)

    with django_assert_num_queries(1):
        result = store_sessions(
            "u", parsed(payloads.session("s1"), payloads.session("s2")), later
        )

    assert result.unchanged == 2
    assert result.new == 0
    assert Session.objects.get(pk="s1").changed_at == NOW


def test_rescored_session_records_score_change():
    store_sessions("u", parsed(payloads.session("s1", risk_score=40)), NOW)
    later = NOW + timedelta(minutes=5)

    result = store_sessions(
        "u",
        parsed(payloads.session("s1", risk_score=80, recommended_action="Auto-reject")),
        later,
    )

    assert result.changed == 1
    change = ScoreChange.objects.get(session_id="s1")
    assert change.old_score == 40
    assert change.new_score == 80
    assert change.new_action == "Auto-reject"
    assert change.observed_at == later
    stored = Session.objects.get(pk="s1")
    assert stored.risk_score == 80
    assert stored.first_seen_at == NOW
    assert stored.changed_at == later


def test_change_without_score_change_records_no_history():
    store_sessions("u", parsed(payloads.session("s1")), NOW)

    store_sessions("u", parsed(payloads.session("s1", tags=["new-tag"])), NOW)

    assert Session.objects.get(pk="s1").tags == ["new-tag"]
    assert not ScoreChange.objects.exists()


def test_changed_checks_replace_old_ones():
    store_sessions("u", parsed(payloads.session("s1")), NOW)

    store_sessions(
        "u",
        parsed(
            payloads.session(
                "s1", biometric_checks={"new_check": "Detected"}, device_checks=None
            )
        ),
        NOW,
    )

    names = set(SessionCheck.objects.values_list("name", flat=True))
    assert names == {"new_check"}


def test_overlong_session_id_is_skipped_and_rest_stored():
    long_id = "x" * 256

    result = store_sessions(
        "u", parsed(payloads.session(long_id), payloads.session("ok")), NOW
    )

    assert result.new == 1
    assert len(result.skipped) == 1
    assert Session.objects.filter(pk="ok").exists()


def test_fetched_events_set_session_time():
    store_sessions("u", parsed(payloads.session("s1", user_logs=payloads.DROP)), NOW)
    events = parse_events(
        {
            "session_id": "s1",
            "event_count": 2,
            "events": [
                {"action": "a", "user_time": "t", "unix_timestamp": 1743055845000},
                {"action": "b", "user_time": "t", "unix_timestamp": 1743055935000},
            ],
        }
    )

    replace_fetched_events(Session.objects.get(pk="s1"), events, NOW)

    stored = Session.objects.get(pk="s1")
    assert stored.session_time == datetime(2025, 3, 27, 6, 10, 45, tzinfo=UTC)
    assert stored.session_time_source == SessionTimeSource.EVENTS
    assert stored.needs_events is False
    assert stored.events.count() == 2


def test_events_time_survives_a_later_change():
    store_sessions("u", parsed(payloads.session("s1", user_logs=payloads.DROP)), NOW)
    events = parse_events(
        {
            "session_id": "s1",
            "event_count": 1,
            "events": [
                {"action": "a", "user_time": "t", "unix_timestamp": 1743055845000}
            ],
        }
    )
    replace_fetched_events(Session.objects.get(pk="s1"), events, NOW)

    store_sessions(
        "u", parsed(payloads.session("s1", user_logs=payloads.DROP, risk_score=90)), NOW
    )

    stored = Session.objects.get(pk="s1")
    assert stored.session_time_source == SessionTimeSource.EVENTS
    assert stored.needs_events is True


def test_logged_time_keeps_source_when_logs_disappear():
    store_sessions("u", parsed(payloads.session("s1")), NOW)

    store_sessions(
        "u", parsed(payloads.session("s1", user_logs=payloads.DROP, risk_score=90)), NOW
    )

    stored = Session.objects.get(pk="s1")
    assert stored.session_time == datetime(2025, 3, 27, 6, 10, 50, tzinfo=UTC)
    assert stored.session_time_source == SessionTimeSource.USER_LOGS


def test_overlong_check_name_is_kept_out_of_checks_table():
    long_name = "c" * 300

    store_sessions(
        "u",
        parsed(payloads.session("s1", biometric_checks={long_name: "Detected"})),
        NOW,
    )

    stored = Session.objects.get(pk="s1")
    assert stored.checks["biometric"][long_name] == "Detected"
    assert not SessionCheck.objects.filter(session=stored, group="biometric").exists()
    assert SessionCheck.objects.filter(session=stored, group="device").count() == 6


def test_forgotten_session_is_not_stored_again():
    ForgottenSession.objects.create(session_id="s1", forgotten_at=NOW, reason="erasure")

    result = store_sessions(
        "u", parsed(payloads.session("s1"), payloads.session("s2")), NOW
    )

    assert result.forgotten == 1
    assert result.new == 1
    assert list(Session.objects.values_list("pk", flat=True)) == ["s2"]


def test_session_older_than_retention_is_not_stored(settings):
    settings.ROUNDTABLE_RETENTION_DAYS = 30
    logs = [{"action": "a", "user_time": "t", "unix_timestamp": 1743055850000}]

    result = store_sessions("u", parsed(payloads.session("old", user_logs=logs)), NOW)

    assert result.forgotten == 1
    assert not Session.objects.exists()


def test_events_of_deleted_session_are_dropped():
    store_sessions("u", parsed(payloads.session("s1", user_logs=payloads.DROP)), NOW)
    session = Session.objects.get(pk="s1")
    Session.objects.filter(pk="s1").delete()
    events = parse_events(
        {
            "session_id": "s1",
            "event_count": 1,
            "events": [
                {"action": "a", "user_time": "t", "unix_timestamp": 1743055845000}
            ],
        }
    )

    assert replace_fetched_events(session, events, NOW) is None
    assert not SessionEvent.objects.exists()


def test_store_clears_digest_before_writing_sessions():
    # A poll and erasure lock the watched user before its sessions; a store
    # that took them in the opposite order could deadlock with them.
    WatchedUser.objects.create(user_id="user-456", response_digest="abc")

    with CaptureQueriesContext(connection) as queries:
        store_sessions("user-456", parsed(payloads.session("s1")), NOW)

    # Django logs an executemany() as "N times: SQL".
    statements = [
        query["sql"].partition(" times: ")[2] or query["sql"]
        for query in queries.captured_queries
    ]
    writes = [sql for sql in statements if sql.startswith(("INSERT", "UPDATE"))]
    assert "roundtable_sync_watcheduser" in writes[0]
    assert WatchedUser.objects.get().response_digest == ""
