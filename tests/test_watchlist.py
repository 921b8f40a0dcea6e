import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from roundtable_sync.models import WatchedUser
from roundtable_sync.watchlist import add_users, make_due, set_active

pytestmark = pytest.mark.django_db


def test_resume_during_running_poll_keeps_lease():
    lease_end = timezone.now() + timedelta(minutes=3)
    watched = WatchedUser.objects.create(
        user_id="alice",
        is_active=False,
        claim_token=uuid.uuid4(),
        next_poll_at=lease_end,
    )

    set_active(watched, True)

    watched.refresh_from_db()
    assert watched.is_active is True
    assert watched.next_poll_at == lease_end


def test_resume_makes_idle_user_due():
    watched = WatchedUser.objects.create(
        user_id="alice",
        is_active=False,
        next_poll_at=timezone.now() + timedelta(hours=1),
    )

    set_active(watched, True)

    watched.refresh_from_db()
    assert watched.next_poll_at <= timezone.now()


def test_make_due_skips_paused_user():
    watched = WatchedUser.objects.create(user_id="alice", is_active=False)

    assert make_due(watched, timezone.now()) is False


def test_add_reports_existing_as_skipped():
    WatchedUser.objects.create(user_id="alice")

    change = add_users(["alice", "bob"])

    assert change.changed == ["bob"]
    assert change.skipped == ["alice"]


def test_large_add_runs_in_batches(django_assert_max_num_queries):
    WatchedUser.objects.create(user_id="user-0007")
    user_ids = [f"user-{i:04d}" for i in range(1200)]

    # A few queries per batch of 500 (SQLite splits each insert further),
    # never one per ID.
    with django_assert_max_num_queries(40):
        change = add_users(user_ids)

    assert len(change.changed) == 1199
    assert change.skipped == ["user-0007"]
    assert WatchedUser.objects.count() == 1200
