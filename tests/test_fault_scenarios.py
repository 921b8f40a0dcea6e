"""The worker through API faults and back, over several dispatch cycles.

Each test runs the per-minute dispatcher (tasks run inline) against the
sandbox over real HTTP, with the wall clock stopped by time-machine and the
client's sleeps and deadline on a fake monotonic clock, so no test sleeps.
It checks that each fault is retried within bounds, recorded once, shown on
the pages, and that polling recovers with no action from an analyst.
"""

import socket
from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth.models import Group
from django.test import Client, override_settings
from django.urls import reverse

from alerts.models import Alert, RuleKind
from roundtable_sync import tasks
from roundtable_sync.client import RoundtableClient
from roundtable_sync.models import (
    AccountState,
    PauseReason,
    PollOutcome,
    PollRecord,
    Session,
    WatchedUser,
)
from roundtable_sync.sandbox import SandboxServer

pytestmark = pytest.mark.django_db

START = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
USER_IDS = ("alice@example.com", "bot-farm-7", "reseller-42")
MAX_ATTEMPTS = 3
POLL_INTERVAL = timedelta(seconds=300)


class Clock:
    """Wall and monotonic time for the worker, moved only by the test.

    ``sleep`` moves both, as a real sleep would, and records the wait.
    """

    def __init__(self, traveller, sandbox):
        self.traveller = traveller
        self.sandbox = sandbox
        self.seconds = 0.0
        self.slept = []

    def monotonic(self):
        return self.seconds

    def sleep(self, seconds):
        self.slept.append(seconds)
        self.advance(timedelta(seconds=seconds))

    def advance(self, delta):
        self.seconds += delta.total_seconds()
        self.traveller.shift(delta)
        self.sandbox.clock.advance(delta)


@pytest.fixture
def clock(time_machine, sandbox):
    time_machine.move_to(START, tick=False)
    sandbox.clock.now = START
    return Clock(time_machine, sandbox)


@pytest.fixture
def api(sandbox, clock, monkeypatch):
    """Point the worker at the sandbox, with its client on the test's clock."""

    class ControlledClient(RoundtableClient):
        @classmethod
        def from_settings(cls, **overrides):
            return super().from_settings(
                sleep=clock.sleep, monotonic=clock.monotonic, rng=lambda: 0.0
            )

    monkeypatch.setattr(tasks, "RoundtableClient", ControlledClient)
    with override_settings(
        ROUNDTABLE_API_URL=sandbox.url,
        ROUNDTABLE_API_KEY=sandbox.key,
        ROUNDTABLE_MAX_ATTEMPTS=MAX_ATTEMPTS,
        ROUNDTABLE_POLL_INTERVAL=int(POLL_INTERVAL.total_seconds()),
        # The events task is not under test here, and costs time.
        ROUNDTABLE_EVENTS_PER_MINUTE=0,
    ):
        yield sandbox


@pytest.fixture
def watched(clock):
    return [
        WatchedUser.objects.create(user_id=user_id, next_poll_at=START)
        for user_id in USER_IDS
    ]


@pytest.fixture
def analyst_client(django_user_model):
    user = django_user_model.objects.create_user("analyst", password="unused")
    Group.objects.get(name="analysts").user_set.add(user)
    client = Client()
    client.force_login(user)
    return client


def run_cycles(clock, count, every=timedelta(minutes=1)):
    """Run the dispatcher ``count`` times, ``every`` apart; return polls queued."""
    queued = []
    for _ in range(count):
        queued.append(tasks.dispatch_polls())
        clock.advance(every)
    return queued


def user_requests(sandbox):
    return [r for r in sandbox.requests if r.path.startswith("/v1/users/")]


def page_text(analyst_client, url):
    response = analyst_client.get(url)
    assert response.status_code == 200, url
    return response.content.decode()


def outcome(user_id):
    return WatchedUser.objects.get(user_id=user_id).last_poll_outcome


def failure_alerts():
    return Alert.objects.filter(kind=RuleKind.SYNC_FAILING)


def assert_all_synced():
    for user_id in USER_IDS:
        watched = WatchedUser.objects.get(user_id=user_id)
        assert watched.last_poll_outcome == PollOutcome.SYNCED, user_id
        assert watched.last_poll_error == "", user_id
        assert watched.claim_token is None, user_id
        assert Session.objects.filter(user_id=user_id).count() > 0, user_id


def test_api_down_fails_users_then_recovers(api, watched, clock, analyst_client):
    port = api.port
    api.stop()

    # 70 minutes down, one dispatch a minute: each user is polled every
    # poll interval and fails after MAX_ATTEMPTS connection attempts.
    queued = run_cycles(clock, 70)

    assert sum(queued) == len(USER_IDS) * 14
    for user_id in USER_IDS:
        watched_user = WatchedUser.objects.get(user_id=user_id)
        assert watched_user.last_poll_outcome == PollOutcome.FAILED
        assert "could not be reached" in watched_user.last_poll_error
        assert watched_user.claim_token is None
    # Each failed poll slept between its attempts, never more.
    assert len(clock.slept) == sum(queued) * (MAX_ATTEMPTS - 1)
    # The sync-failure rule (60 minutes by default) fired once per user.
    assert failure_alerts().count() == len(USER_IDS)
    assert "could not be reached" in page_text(analyst_client, reverse("watchlist"))
    user_page = reverse("user_detail", args=[watched[0].pk])
    assert "could not be reached" in page_text(analyst_client, user_page)
    # A failing user is no reason to pause the account.
    assert AccountState.load().pause_reason == ""

    restarted = SandboxServer(key=api.key, port=port, clock=api.clock)
    restarted.start()
    try:
        run_cycles(clock, 6)
    finally:
        restarted.stop()

    assert_all_synced()
    assert failure_alerts().count() == len(USER_IDS)
    # The poll history keeps the failures; the last poll shows no error.
    assert '<p class="poll-error">' not in page_text(analyst_client, user_page)


@override_settings(ROUNDTABLE_READ_TIMEOUT=0.2, ROUNDTABLE_REQUEST_DEADLINE=1.0)
def test_slow_api_times_out_within_deadline(api, watched, clock):
    # Slower than the read timeout on every request of the first cycle.
    api.faults.add("slow", delay=30, count=len(USER_IDS))

    run_cycles(clock, 1)

    for user_id in USER_IDS:
        watched_user = WatchedUser.objects.get(user_id=user_id)
        assert watched_user.last_poll_outcome == PollOutcome.FAILED
        assert "did not answer within 0.2 s" in watched_user.last_poll_error
        # One attempt: the 1 s backoff would pass the 1 s deadline.
        assert "would pass the 1 s deadline" in watched_user.last_poll_error
    assert clock.slept == []

    run_cycles(clock, 6)

    assert_all_synced()


def test_rate_limit_storm_pauses_account_once(api, watched, clock, analyst_client):
    # The first poll and the first probe each get a 429 whose wait is longer
    # than the client's own retries.
    api.faults.add("rate_limit", retry_after=120, count=2)

    run_cycles(clock, 1)

    state = AccountState.load()
    assert state.pause_reason == PauseReason.RATE_LIMITED
    assert "429" in state.pause_error
    # One request, not one per user: the other polls saw the pause.
    assert len(user_requests(api)) == 1
    assert PollRecord.objects.count() == 1
    assert "Polling is paused account-wide" in page_text(analyst_client, "/")

    # Paused for 120 s, then one probe meets the second 429 and pauses
    # again, then the next probe succeeds and everyone is polled.
    queued = run_cycles(clock, 8)

    assert len(user_requests(api)) == 1 + 1 + len(USER_IDS)
    assert queued[0] == 0
    assert AccountState.load().pause_reason == ""
    assert_all_synced()
    assert PollRecord.objects.exclude(outcome=PollOutcome.SYNCED).count() == 2
    assert "Polling is paused account-wide" not in page_text(analyst_client, "/")


def test_short_rate_limits_retried_inside_call(api, watched, clock):
    # 429s with a short wait, fewer than the attempts of one call.
    api.faults.add("rate_limit", retry_after=2, count=MAX_ATTEMPTS - 1)

    run_cycles(clock, 1)

    assert_all_synced()
    assert clock.slept == [2.0] * (MAX_ATTEMPTS - 1)
    assert AccountState.load().pause_reason == ""


def test_server_error_burst_fails_then_recovers(api, watched, clock, analyst_client):
    victim, *others = USER_IDS
    # More 5xx responses than one call's attempts, for one user only.
    api.faults.add("server_error", user_id=victim, count=MAX_ATTEMPTS + 1)

    run_cycles(clock, 1)

    assert outcome(victim) == PollOutcome.FAILED
    error = WatchedUser.objects.get(user_id=victim).last_poll_error
    assert f"answered HTTP 503 on all {MAX_ATTEMPTS} attempts" in error
    for user_id in others:
        assert outcome(user_id) == PollOutcome.SYNCED
    assert "answered HTTP 503" in page_text(analyst_client, reverse("watchlist"))

    # The next poll of the victim meets one 503, retries, and succeeds.
    run_cycles(clock, 6)

    assert_all_synced()
    assert api.faults.list() == []
    assert AccountState.load().pause_reason == ""


def test_truncated_bodies_store_nothing_twice(api, watched, clock):
    victim = USER_IDS[0]
    # One truncated body is retried inside the call.
    api.faults.add("truncated", user_id=victim, count=1)

    run_cycles(clock, 1)

    error = WatchedUser.objects.get(user_id=victim).last_poll_error
    assert outcome(victim) == PollOutcome.SYNCED, error
    stored = Session.objects.filter(user_id=victim).count()
    assert stored == 100

    # As many truncated bodies as attempts fail the whole poll.
    api.faults.add("truncated", user_id=victim, count=MAX_ATTEMPTS)
    clock.advance(POLL_INTERVAL)
    run_cycles(clock, 1)

    error = WatchedUser.objects.get(user_id=victim).last_poll_error
    assert outcome(victim) == PollOutcome.FAILED
    assert "closed the connection before the whole response arrived" in error

    run_cycles(clock, 6)

    assert_all_synced()
    session_ids = list(
        Session.objects.filter(user_id=victim).values_list("session_id", flat=True)
    )
    assert len(session_ids) == len(set(session_ids))
    assert len(session_ids) >= stored


def test_revoked_key_pauses_then_recovers(api, watched, clock, analyst_client):
    run_cycles(clock, 1)
    assert_all_synced()
    clock.advance(POLL_INTERVAL)
    api.faults.add("key_revoked")
    before = len(user_requests(api))

    queued = run_cycles(clock, 30)

    state = AccountState.load()
    assert state.pause_reason == PauseReason.KEY_REJECTED
    assert "rejected the API key" in state.pause_error
    # One rejected request in 30 minutes, and nothing queued afterwards.
    assert len(user_requests(api)) == before + 1
    assert sum(queued[1:]) == 0
    banner = page_text(analyst_client, reverse("watchlist"))
    assert "Polling is paused account-wide" in banner
    assert "Set a valid ROUNDTABLE_API_KEY" in banner
    assert api.key not in banner

    # The vendor restores the key. After the hour's recheck, one probe
    # succeeds, and the other users follow on the next minute.
    api.faults.clear()
    run_cycles(clock, 32)

    assert AccountState.load().pause_reason == ""
    assert_all_synced()
    assert "Polling is paused account-wide" not in page_text(analyst_client, "/")


def test_unreachable_port_is_connection_error(api, watched, clock):
    # A port nothing listens on: refused at once on loopback.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_url = f"http://127.0.0.1:{probe.getsockname()[1]}"
    with override_settings(ROUNDTABLE_API_URL=closed_url):
        run_cycles(clock, 1)

    for user_id in USER_IDS:
        assert outcome(user_id) == PollOutcome.FAILED
    assert AccountState.load().pause_reason == ""
