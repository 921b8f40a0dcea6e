"""Concurrent writers on SQLite wait for each other instead of failing."""

import sqlite3
import threading
from datetime import UTC, datetime, timedelta

import pytest
from django.db import OperationalError, connection, transaction
from django.utils import timezone

from roundtable_sync import tasks
from roundtable_sync.client import RoundtableClient
from roundtable_sync.dispatch import claim_due_users, claim_lease
from roundtable_sync.models import PollOutcome, PollRecord, Session, WatchedUser
from roundtable_sync.store import store_sessions
from tests import payloads
from tests.test_store import parsed

ROUNDS = 40


@pytest.mark.django_db(transaction=True)
def test_concurrent_read_then_write_transactions_never_lock():
    if connection.vendor != "sqlite":
        pytest.skip("checks SQLite's locking settings")
    WatchedUser.objects.create(user_id="alice")
    errors = []
    start = threading.Barrier(2)

    def worker():
        # Like a poll task: store sessions, each batch in a transaction.
        try:
            start.wait()
            for round_number in range(ROUNDS):
                now = datetime(2026, 11, 20, tzinfo=UTC)
                sessions = parsed(payloads.session(f"s{round_number}"))
                store_sessions("alice", sessions, now)
        except Exception as error:  # noqa: BLE001 - reported by the assert
            errors.append(error)
        finally:
            connection.close()

    def web_request():
        # Like a view: read a row, then write it, in one transaction.
        try:
            start.wait()
            for round_number in range(ROUNDS):
                with transaction.atomic():
                    watched = WatchedUser.objects.get(user_id="alice")
                    watched.note = f"note {round_number}"
                    watched.save(update_fields=["note"])
        except Exception as error:  # noqa: BLE001 - reported by the assert
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker), threading.Thread(target=web_request)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert errors == []
    assert WatchedUser.objects.get(user_id="alice").note == f"note {ROUNDS - 1}"


@pytest.mark.django_db(transaction=True)
def test_poll_behind_long_write_lock_loses_nothing(sandbox, settings, monkeypatch):
    """A poll that times out on the write lock stores nothing and runs again.

    Another connection holds SQLite's write lock for longer than the busy
    timeout, so the poll can neither store nor record. The task raises (the
    django-q2 worker records the failure and goes on), nothing half-written
    stays, and once the claim's lease is over the user is polled again and
    every session the API returns is stored once.
    """
    if connection.vendor != "sqlite":
        pytest.skip("checks SQLite's busy timeout")
    sandbox.clock.now = timezone.now()
    settings.ROUNDTABLE_API_URL = sandbox.url
    settings.ROUNDTABLE_API_KEY = sandbox.key
    settings.ROUNDTABLE_MAX_ATTEMPTS = 1
    watched = WatchedUser.objects.create(
        user_id="bot-farm-7", next_poll_at=timezone.now()
    )
    token, _ = claim_due_users(timezone.now(), user_pks=[watched.pk])
    # A short busy timeout, so the test waits tenths of a second, not 30 s.
    connection.close()
    options = connection.settings_dict["OPTIONS"]
    original_timeout = options["timeout"]
    options["timeout"] = 0.2
    holder = sqlite3.connect(connection.settings_dict["NAME"], isolation_level=None)

    class LockingClient(RoundtableClient):
        # Another writer takes the lock once the sessions are fetched.
        def user_sessions_response(self, user_id):
            response = super().user_sessions_response(user_id)
            holder.execute("BEGIN IMMEDIATE")
            return response

    monkeypatch.setattr(tasks, "RoundtableClient", LockingClient)
    try:
        with pytest.raises(OperationalError, match="locked"):
            tasks.poll_user(watched.pk, str(token))
        holder.execute("ROLLBACK")
    finally:
        holder.close()
        connection.close()
        options["timeout"] = original_timeout

    assert Session.objects.count() == 0
    assert PollRecord.objects.count() == 0
    # The release failed on the same lock, so the claim ends with its lease.
    after_lease = timezone.now() + claim_lease() + timedelta(seconds=1)
    token, claimed = claim_due_users(after_lease)
    assert claimed == [watched.pk]

    monkeypatch.setattr(tasks, "RoundtableClient", RoundtableClient)
    assert tasks.poll_user(watched.pk, str(token)) == PollOutcome.SYNCED
    assert Session.objects.filter(user_id="bot-farm-7").count() == 100
    assert sandbox.served.as_dict()["responses"] == 2


@pytest.mark.django_db(transaction=True)
def test_lock_gone_before_release_frees_claim(sandbox, settings, monkeypatch):
    """A poll failing on the database releases its claim when it can."""
    sandbox.clock.now = timezone.now()
    settings.ROUNDTABLE_API_URL = sandbox.url
    settings.ROUNDTABLE_API_KEY = sandbox.key
    watched = WatchedUser.objects.create(
        user_id="bot-farm-7", next_poll_at=timezone.now()
    )
    token, _ = claim_due_users(timezone.now(), user_pks=[watched.pk])

    def locked(*args, **kwargs):
        raise OperationalError("database is locked")

    monkeypatch.setattr(tasks, "sync_user", locked)
    with pytest.raises(OperationalError):
        tasks.poll_user(watched.pk, str(token))

    watched.refresh_from_db()
    assert watched.claim_token is None
    assert watched.next_poll_at <= timezone.now()
