import socket
import subprocess
import sys
import threading
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection

from roundtable_sync.dispatch import (
    claim,
    claim_due_users,
    due_candidates,
    mark_running,
    release_dead_claims,
)
from roundtable_sync.holders import current_holder, holder_is_dead, process_start_ticks
from roundtable_sync.models import WatchedUser

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


@pytest.fixture
def due_user(db):
    return WatchedUser.objects.create(user_id="due", next_poll_at=NOW)


@pytest.mark.django_db
def test_claim_takes_due_active_users(due_user):
    WatchedUser.objects.create(user_id="later", next_poll_at=NOW + timedelta(1))
    WatchedUser.objects.create(user_id="paused", next_poll_at=NOW, is_active=False)

    token, claimed = claim_due_users(NOW)

    assert claimed == [due_user.pk]
    due_user.refresh_from_db()
    assert due_user.claim_token == token
    assert due_user.next_poll_at > NOW


@pytest.mark.django_db
def test_second_claim_finds_nothing(due_user):
    claim_due_users(NOW)

    _, claimed = claim_due_users(NOW)

    assert claimed == []


@pytest.mark.django_db
def test_claim_respects_limit_and_order():
    first = WatchedUser.objects.create(user_id="a", next_poll_at=NOW - timedelta(9))
    WatchedUser.objects.create(user_id="b", next_poll_at=NOW - timedelta(1))

    _, claimed = claim_due_users(NOW, limit=1)

    assert claimed == [first.pk]


@pytest.mark.django_db
def test_expired_lease_is_claimed_again(due_user):
    claim_due_users(NOW)

    _, claimed = claim_due_users(NOW + timedelta(hours=1))

    assert claimed == [due_user.pk]


@pytest.mark.django_db(transaction=True)
def test_concurrent_claims_never_share_a_user():
    WatchedUser.objects.bulk_create(
        WatchedUser(user_id=f"user-{i}", next_poll_at=NOW) for i in range(200)
    )
    results = []
    read_done = threading.Barrier(4)

    def dispatcher():
        # Every dispatcher reads the same candidates before any claims them,
        # the interleaving that a claim without a re-check would get wrong.
        try:
            candidates = due_candidates(NOW)
            read_done.wait(timeout=30)
            results.append(claim(candidates, NOW)[1])
        finally:
            connection.close()

    threads = [threading.Thread(target=dispatcher) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    claimed = [pk for batch in results for pk in batch]
    assert len(results) == 4
    assert len(claimed) == 200
    assert len(set(claimed)) == 200


def exited_process_holder():
    """Return a holder naming a process on this host that has exited."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    ticks = process_start_ticks(child.pid)
    child.wait()
    return f"{socket.gethostname()}:{child.pid}:{ticks}"


def test_holder_of_this_process_is_alive():
    assert not holder_is_dead(current_holder())


def test_holder_of_exited_process_is_dead():
    assert holder_is_dead(exited_process_holder())


def test_holder_on_other_host_is_taken_as_alive():
    assert not holder_is_dead("another-host:1:1")


def test_holder_with_reused_pid_is_dead():
    host, pid, ticks = current_holder().rsplit(":", 2)

    assert holder_is_dead(f"{host}:{pid}:{int(ticks) + 1}")


@pytest.mark.django_db
def test_dead_holder_claim_is_released(due_user):
    token, _ = claim_due_users(NOW)
    WatchedUser.objects.filter(pk=due_user.pk).update(
        claim_holder=exited_process_holder()
    )

    released = release_dead_claims(NOW + timedelta(seconds=30))
    _, claimed = claim_due_users(NOW + timedelta(seconds=30))

    assert released == [due_user.pk]
    assert claimed == [due_user.pk]


@pytest.mark.django_db
def test_live_and_queued_claims_are_kept(due_user):
    queued = WatchedUser.objects.create(user_id="queued", next_poll_at=NOW)
    token, _ = claim_due_users(NOW)
    assert mark_running(due_user.pk, token)

    released = release_dead_claims(NOW + timedelta(seconds=30))

    assert released == []
    queued.refresh_from_db()
    assert queued.claim_token == token
    assert queued.claim_holder == ""


@pytest.mark.django_db
def test_new_claim_clears_old_holder(due_user):
    claim_due_users(NOW)
    WatchedUser.objects.filter(pk=due_user.pk).update(
        claim_holder=exited_process_holder()
    )
    later = NOW + timedelta(hours=1)

    claim_due_users(later)

    due_user.refresh_from_db()
    assert due_user.claim_holder == ""
    assert release_dead_claims(later) == []


def test_mark_running_needs_the_token(due_user):
    claim_due_users(NOW)

    assert not mark_running(due_user.pk, uuid.uuid4())
