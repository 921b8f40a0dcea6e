from datetime import timedelta

import pytest
from django.test import override_settings
from django.utils import timezone

from roundtable_sync import tasks
from roundtable_sync.models import (
    AccountState,
    PauseReason,
    PollOutcome,
    Session,
    SessionEvent,
    SessionTimeSource,
    WatchedUser,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def api(sandbox):
    """Point the product at the sandbox, on the sandbox's clock."""
    sandbox.clock.now = timezone.now()
    with override_settings(
        ROUNDTABLE_API_URL=sandbox.url,
        ROUNDTABLE_API_KEY=sandbox.key,
        ROUNDTABLE_MAX_ATTEMPTS=1,
    ):
        yield sandbox


def test_dispatch_polls_every_due_user(api):
    now = timezone.now()
    due = [
        WatchedUser.objects.create(user_id=user_id, next_poll_at=now)
        for user_id in ("alice@example.com", "bot-farm-7")
    ]
    later = WatchedUser.objects.create(
        user_id="later", next_poll_at=now + timedelta(hours=1)
    )

    queued = tasks.dispatch_polls()

    assert queued == 2
    for watched in due:
        watched.refresh_from_db()
        assert watched.last_poll_outcome == PollOutcome.SYNCED
    later.refresh_from_db()
    assert later.last_polled_at is None
    assert AccountState.load().heartbeat_at is not None


def test_dispatch_queues_nothing_while_paused(api):
    WatchedUser.objects.create(user_id="alice@example.com", next_poll_at=timezone.now())
    AccountState.objects.create(
        pk=1,
        paused_until=timezone.now() + timedelta(minutes=5),
        pause_reason=PauseReason.RATE_LIMITED,
    )

    assert tasks.dispatch_polls() == 0
    assert api.requests == []


def test_dispatch_probes_with_one_user_after_pause(api):
    now = timezone.now()
    for user_id in ("alice@example.com", "bot-farm-7", "reseller-42"):
        WatchedUser.objects.create(user_id=user_id, next_poll_at=now)
    AccountState.objects.create(
        pk=1,
        paused_until=now - timedelta(seconds=1),
        pause_reason=PauseReason.KEY_REJECTED,
    )

    assert tasks.dispatch_polls() == 1
    assert AccountState.load().pause_reason == ""
    assert tasks.dispatch_polls() == 2


def test_poll_user_skips_without_claim(api):
    watched = WatchedUser.objects.create(user_id="alice@example.com")

    assert tasks.poll_user(watched.pk, "00000000-0000-0000-0000-000000000000") is None
    assert api.requests == []


def test_paused_user_is_not_polled(api):
    WatchedUser.objects.create(
        user_id="alice@example.com", next_poll_at=timezone.now(), is_active=False
    )

    assert tasks.dispatch_polls() == 0


def test_fetch_events_dates_sessions_without_logs(api):
    watched = WatchedUser.objects.create(
        user_id="bot-farm-7", next_poll_at=timezone.now()
    )
    tasks.queue_immediate_poll(watched)
    pending = Session.objects.filter(needs_events=True)
    assert pending.exists()
    before = pending.count()

    fetched = tasks.fetch_events(budget=3)

    assert fetched == 3
    assert Session.objects.filter(needs_events=True).count() == before - 3
    dated = Session.objects.filter(session_time_source=SessionTimeSource.EVENTS)
    assert dated.count() == 3
    for session in dated:
        first = SessionEvent.objects.filter(session=session).order_by("position")[0]
        assert session.session_time == first.timestamp


def test_fetch_events_respects_single_lease(api):
    watched = WatchedUser.objects.create(
        user_id="bot-farm-7", next_poll_at=timezone.now()
    )
    tasks.queue_immediate_poll(watched)
    AccountState.objects.filter(pk=1).update(
        events_lease_until=timezone.now() + timedelta(minutes=1)
    )

    assert tasks.fetch_events(budget=3) == 0


def test_add_queues_an_immediate_poll(api):
    import io

    from django.core.management import call_command

    call_command("watchlist", "add", "alice@example.com", stdout=io.StringIO())

    watched = WatchedUser.objects.get(user_id="alice@example.com")
    assert watched.last_poll_outcome == PollOutcome.SYNCED
    assert Session.objects.filter(user_id="alice@example.com").exists()
