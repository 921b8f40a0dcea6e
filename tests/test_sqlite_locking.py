"""Concurrent writers on SQLite wait for each other instead of failing."""

import threading
from datetime import UTC, datetime

import pytest
from django.db import connection, transaction

from roundtable_sync.models import WatchedUser
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
