import threading
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection

from roundtable_sync.dispatch import claim, claim_due_users, due_candidates
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
