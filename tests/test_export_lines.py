import threading
import time
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from django.core.management import call_command
from django.db import connection

from reviews.models import Decision
from roundtable_sync.export_lines import TABLE
from roundtable_sync.models import Session
from roundtable_sync.parsing import parse_session_list
from roundtable_sync.store import store_sessions
from tests import payloads
from tests.test_cluster import database_url
from workflow.erasure import delete_stored_data

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def store(user_id, session_id, **changes):
    payload = payloads.session(session_id, **changes)
    parsed = parse_session_list(payloads.user_sessions(user_id, [payload]), "user_id")
    store_sessions(user_id, parsed.sessions, NOW)


def export_rows():
    """Return {session_id: head} of the export table."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT session_id, head FROM {TABLE}")
        rows = dict(cursor.fetchall())
    return rows


def head_cells(session_id):
    return export_rows()[session_id].split(",")


@pytest.mark.django_db
def test_stored_session_gets_export_row():
    store("alice", "s1", risk_score=40, tags=["a", "b"], risk_explanation="calm")

    cells = head_cells("s1")

    assert cells[0] == "alice"
    assert cells[1] == "s1"
    assert cells[4] == "40"
    assert cells[6] == "calm"
    assert cells[7] == "a;b"


@pytest.mark.django_db
def test_changed_session_replaces_export_row():
    store("alice", "s1", risk_score=40, tags=["old"])

    store("alice", "s1", risk_score=95, tags=["=1+1", "new"])

    cells = head_cells("s1")
    assert len(export_rows()) == 1
    assert cells[4] == "95"
    assert cells[7] == "'=1+1;new"


@pytest.mark.django_db
def test_session_time_change_moves_export_row():
    store("alice", "s1")
    store("alice", "s2")
    later = Session.objects.get(pk="s2").session_time + timedelta(days=1)

    Session.objects.filter(pk="s1").update(session_time=later)

    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT session_id FROM {TABLE} ORDER BY session_time, session_id"
        )
        order = [row[0] for row in cursor.fetchall()]
    assert order == ["s2", "s1"]
    assert head_cells("s1")[2] == later.isoformat().replace("+00:00", "Z")


@pytest.mark.django_db
def test_erasure_deletes_export_rows():
    store("alice", "s1")
    store("bob", "s2")

    delete_stored_data("alice")

    assert set(export_rows()) == {"s2"}


def decision_cells(session_id):
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT decision FROM {TABLE} WHERE session_id = %s", [session_id]
        )
        return cursor.fetchone()[0]


@pytest.mark.django_db
def test_export_row_follows_newest_decision():
    store("alice", "s1")
    session = Session.objects.get(pk="s1")
    older = Decision.objects.create(
        session=session,
        kind="legitimate",
        decided_by_label="=ann",
        decided_at=NOW,
    )
    newer = Decision.objects.create(
        session=session,
        kind="confirmed_bot",
        decided_by_label="bob, jr",
        decided_at=NOW + timedelta(minutes=1, microseconds=5),
    )

    assert (
        decision_cells("s1") == ',confirmed_bot,"bob, jr",2026-11-20T12:01:00.000005Z'
    )

    # Decisions are append-only as models; erasure deletes them in bulk.
    Decision.objects.filter(pk=newer.pk).delete()
    assert decision_cells("s1") == ",legitimate,'=ann,2026-11-20T12:00:00Z"

    # The model rejects changes too, but the table is kept right whatever
    # writes to it.
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE reviews_decision SET decided_by_label = 'carol' WHERE id = %s",
            [older.pk],
        )
    assert decision_cells("s1") == ",legitimate,carol,2026-11-20T12:00:00Z"

    Decision.objects.filter(pk=older.pk).delete()
    assert decision_cells("s1") is None


@pytest.mark.django_db
def test_unexported_column_change_keeps_row():
    store("alice", "s1", risk_score=40)
    before = export_rows()

    Session.objects.filter(pk="s1").update(events_attempts=3)

    assert export_rows() == before


@pytest.mark.postgres
@pytest.mark.django_db
def test_truncate_empties_export_table():
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL")
    store("alice", "s1")

    with connection.cursor() as cursor:
        # Django's foreign keys are deferred, and TRUNCATE refuses a table
        # with pending foreign key checks.
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cursor.execute("TRUNCATE roundtable_sync_session CASCADE")

    assert export_rows() == {}


def test_migration_fills_table_from_stored_sessions(migration_data):
    store("alice", "s1", risk_score=12)
    store("bob", "s2", risk_score=None)
    call_command("migrate", "roundtable_sync", "0010", verbosity=0)
    with connection.cursor() as cursor:
        assert TABLE not in connection.introspection.table_names(cursor)

    call_command("migrate", "roundtable_sync", verbosity=0)

    rows = export_rows()
    assert set(rows) == {"s1", "s2"}
    assert rows["s1"].split(",")[4] == "12"
    assert rows["s2"].split(",")[4] == ""


DECIDE_SQL = """
    INSERT INTO reviews_decision
        (session_id, user_id, kind, note, decided_by_label, decided_at)
    VALUES (%s, '', %s, '', %s, %s)
"""


def blocked(observer, pid):
    """Return whether the backend ``pid`` is waiting for a lock."""
    row = observer.execute(
        "SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", [pid]
    ).fetchone()
    return row is not None and row[0] == "Lock"


def wait_until_blocked(observer, pid, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not blocked(observer, pid):
        assert time.monotonic() < deadline, "the decision never waited for a lock"
        time.sleep(0.02)


def decide_in_thread(url, kind, label, decided_at):
    decider = psycopg.connect(url)

    def decide():
        with decider:
            decider.execute(DECIDE_SQL, ["s1", kind, label, decided_at])

    thread = threading.Thread(target=decide)
    thread.start()
    return decider.info.backend_pid, thread


@pytest.mark.postgres
@pytest.mark.process
@pytest.mark.django_db(transaction=True)
def test_decision_during_session_write_reaches_export():
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL")
    store("alice", "s1", risk_score=10)
    url = database_url()
    with psycopg.connect(url) as observer, psycopg.connect(url) as writer:
        # A poll rewrites the session, which replaces its export row, and
        # has not committed yet.
        writer.execute(
            "UPDATE roundtable_sync_session SET risk_score = 90 WHERE session_id = 's1'"
        )
        pid, thread = decide_in_thread(url, "confirmed_bot", "ann", NOW)
        wait_until_blocked(observer, pid)
        writer.commit()
        thread.join(timeout=10)

    assert decision_cells("s1") == ",confirmed_bot,ann,2026-11-20T12:00:00Z"
    assert head_cells("s1")[4] == "90"


@pytest.mark.postgres
@pytest.mark.process
@pytest.mark.django_db(transaction=True)
def test_concurrent_decisions_keep_newest():
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL")
    store("alice", "s1")
    url = database_url()
    with psycopg.connect(url) as observer, psycopg.connect(url) as first:
        # The newer decision is written first and commits last.
        first.execute(DECIDE_SQL, ["s1", "confirmed_bot", "ann", NOW])
        pid, thread = decide_in_thread(
            url, "legitimate", "bob", NOW - timedelta(days=1)
        )
        wait_until_blocked(observer, pid)
        first.commit()
        thread.join(timeout=10)

    assert decision_cells("s1") == ",confirmed_bot,ann,2026-11-20T12:00:00Z"
