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
    SessionTally,
    SessionTimeSource,
    UserRisk,
    UserRiskChange,
    WatchedUser,
)
from tests.fixtures_web import make_session

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


def test_rejected_key_stops_the_remaining_polls(api):
    now = timezone.now()
    for user_id in ("alice@example.com", "bot-farm-7", "reseller-42"):
        WatchedUser.objects.create(user_id=user_id, next_poll_at=now)
    api.faults.add("key_revoked")

    tasks.dispatch_polls()

    assert len(api.requests) == 1
    state = AccountState.load()
    assert state.pause_reason == PauseReason.KEY_REJECTED
    untouched = WatchedUser.objects.filter(last_poll_outcome="")
    assert untouched.count() == 2
    for watched in WatchedUser.objects.all():
        assert watched.claim_token is None
        assert watched.next_poll_at <= timezone.now()


def test_new_key_resumes_polling_at_once(api):
    now = timezone.now()
    for user_id in ("alice@example.com", "bot-farm-7"):
        WatchedUser.objects.create(user_id=user_id, next_poll_at=now)
    api.faults.add("key_revoked")
    tasks.dispatch_polls()
    api.faults.clear()
    api.key = "rotated-key"

    with override_settings(ROUNDTABLE_API_KEY="rotated-key"):
        queued = tasks.dispatch_polls()

    assert queued == 2
    assert WatchedUser.objects.filter(last_poll_outcome=PollOutcome.SYNCED).count() == 2


def test_dispatch_without_key_polls_nobody(api):
    WatchedUser.objects.create(user_id="alice@example.com", next_poll_at=timezone.now())

    with override_settings(ROUNDTABLE_API_KEY=""):
        assert tasks.dispatch_polls() == 0

    assert api.requests == []


def test_dispatch_queues_upkeep_after_polls(api, monkeypatch):
    WatchedUser.objects.create(user_id="alice", next_poll_at=timezone.now())
    make_session("bob", "s1", timezone.now() - timedelta(hours=3), risk_score=10)
    queued = []
    monkeypatch.setattr(
        tasks, "async_task", lambda function, *args, **kwargs: queued.append(function)
    )

    tasks.dispatch_polls()

    # The polls take the free workers before the slower upkeep.
    assert queued[0] is tasks.poll_user
    assert queued[-2:] == [tasks.compact_tallies, tasks.refresh_user_risk]


def test_dispatch_folds_tallies_even_without_key(api):
    make_session("alice", "s1", timezone.now() - timedelta(hours=3), risk_score=10)
    make_session("alice", "s2", timezone.now() - timedelta(hours=3), risk_score=10)
    assert SessionTally.objects.filter(compacted=False).count() == 2

    with override_settings(ROUNDTABLE_API_KEY=""):
        tasks.dispatch_polls()

    assert list(SessionTally.objects.values_list("sessions", "compacted")) == [
        (2, True)
    ]


def test_dispatch_refreshes_user_risk_even_without_key(api):
    make_session("alice", "s1", timezone.now() - timedelta(hours=3), risk_score=10)

    with override_settings(ROUNDTABLE_API_KEY=""):
        tasks.dispatch_polls()
    make_session("alice", "s2", timezone.now() - timedelta(hours=2), risk_score=90)
    with override_settings(ROUNDTABLE_API_KEY=""):
        tasks.dispatch_polls()

    summary = UserRisk.objects.get(user_id="alice")
    assert (summary.max_risk_score, summary.sessions) == (90, 2)
    assert not UserRiskChange.objects.exists()


def test_failing_session_does_not_block_events_queue(api):
    now = timezone.now()
    stuck = WatchedUser.objects.create(user_id="bot-farm-7", next_poll_at=now)
    tasks.queue_immediate_poll(stuck)
    Session.objects.filter(user_id="bot-farm-7").update(
        first_seen_at=now - timedelta(days=1)
    )
    other = WatchedUser.objects.create(user_id="reseller-42", next_poll_at=now)
    tasks.queue_immediate_poll(other)
    api.faults.add("server_error", user_id="bot-farm-7", status=500)
    stuck_pending = Session.objects.filter(user_id="bot-farm-7", needs_events=True)
    stuck_count = stuck_pending.count()

    tasks.fetch_events(budget=stuck_count + 2)

    assert Session.objects.filter(
        user_id="reseller-42", session_time_source=SessionTimeSource.EVENTS
    ).exists()
    assert set(stuck_pending.values_list("events_attempts", flat=True)) == {1}


def test_events_given_up_after_max_attempts(api):
    watched = WatchedUser.objects.create(
        user_id="bot-farm-7", next_poll_at=timezone.now()
    )
    tasks.queue_immediate_poll(watched)
    session = Session.objects.filter(needs_events=True).first()
    Session.objects.filter(pk=session.pk).update(
        events_attempts=Session.MAX_EVENTS_ATTEMPTS - 1
    )
    Session.objects.exclude(pk=session.pk).update(needs_events=False)
    api.faults.add("server_error", user_id="bot-farm-7", status=500)

    tasks.fetch_events(budget=1)

    session.refresh_from_db()
    assert session.needs_events is False
    assert session.session_time_source == SessionTimeSource.FIRST_SEEN
