import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from django.test import override_settings

from roundtable_sync import account
from roundtable_sync.client import RoundtableClient
from roundtable_sync.models import (
    AccountState,
    CoverageGap,
    PauseReason,
    PollOutcome,
    PollRecord,
    Session,
    WatchedUser,
)
from roundtable_sync.parsing import parse_session_list
from roundtable_sync.sync import sync_user
from tests import payloads
from workflow import audit
from workflow.erasure import erase_user
from workflow.tasks import apply_retention

pytestmark = pytest.mark.django_db

START = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


class FakeTime:
    """A wall clock for sync_user that tests move by hand."""

    def __init__(self, now):
        self.now = now
        self.slept = []

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.slept.append(seconds)


@pytest.fixture
def clock(sandbox):
    sandbox.clock.now = START
    return FakeTime(START)


@pytest.fixture
def client(sandbox, clock):
    with override_settings(
        ROUNDTABLE_API_URL=sandbox.url, ROUNDTABLE_API_KEY=sandbox.key
    ):
        yield RoundtableClient(
            sandbox.key, sandbox.url, sleep=clock.sleep, max_attempts=2
        )


@pytest.fixture
def watched():
    return WatchedUser.objects.create(user_id="alice@example.com", next_poll_at=START)


def test_sync_stores_sessions_and_records_poll(watched, client, clock):
    result = sync_user(watched, client, now=clock)

    watched.refresh_from_db()
    assert result.outcome == PollOutcome.SYNCED
    assert result.new > 0
    assert Session.objects.filter(user_id=watched.user_id).count() == result.new
    assert watched.last_poll_outcome == PollOutcome.SYNCED
    assert watched.last_synced_at == START
    assert watched.next_poll_at == START + timedelta(seconds=300)
    assert watched.claim_token is None
    record = PollRecord.objects.get(user_id=watched.user_id)
    assert record.sessions_new == result.new
    assert AccountState.load().heartbeat_at == START


def test_repoll_later_adds_only_new_sessions(watched, client, clock, sandbox):
    first = sync_user(watched, client, now=clock)
    sandbox.clock.now = clock.now = START + timedelta(days=3)

    second = sync_user(watched, client, now=clock)

    assert first.received == 100
    assert 0 < second.new < 20
    total = Session.objects.filter(user_id=watched.user_id).count()
    assert total == first.new + second.new


def test_immediate_repoll_changes_nothing(watched, client, clock):
    sync_user(watched, client, now=clock)

    again = sync_user(watched, client, now=clock)

    assert again.new == 0
    assert again.changed == 0


def test_coverage_gap_recorded_after_long_silence(client, clock, sandbox):
    busy = WatchedUser.objects.create(user_id="bot-farm-7", next_poll_at=START)
    sync_user(busy, client, now=clock)
    busy.refresh_from_db()
    sandbox.clock.now = clock.now = START + timedelta(days=10)

    result = sync_user(busy, client, now=clock)

    busy.refresh_from_db()
    assert result.coverage_gap is True
    assert busy.coverage_gap_at == clock.now
    gap = CoverageGap.objects.get(user_id="bot-farm-7")
    assert gap.previous_sync_at == START


def test_first_poll_is_never_a_coverage_gap(client, clock):
    busy = WatchedUser.objects.create(user_id="bot-farm-7", next_poll_at=START)

    result = sync_user(busy, client, now=clock)

    assert result.received == 100
    assert result.coverage_gap is False


def test_server_error_fails_one_user_only(watched, client, clock, sandbox):
    other = WatchedUser.objects.create(user_id="carol+shop@example.net")
    sandbox.faults.add("server_error", user_id=watched.user_id, status=500)

    failed = sync_user(watched, client, now=clock)
    synced = sync_user(other, client, now=clock)

    watched.refresh_from_db()
    assert failed.outcome == PollOutcome.FAILED
    assert "500" in watched.last_poll_error
    assert watched.next_poll_at == START + timedelta(seconds=300)
    assert synced.outcome == PollOutcome.SYNCED
    assert AccountState.load().paused_until is None


def test_not_found_is_recorded_on_user(watched, client, clock, sandbox):
    sandbox.faults.add("not_found", user_id=watched.user_id)

    result = sync_user(watched, client, now=clock)

    watched.refresh_from_db()
    assert result.outcome == PollOutcome.FAILED
    assert watched.last_poll_outcome == PollOutcome.FAILED
    assert watched.last_poll_error


def test_bad_body_is_recorded_on_user(watched, client, clock, sandbox):
    sandbox.faults.add("not_json", user_id=watched.user_id)

    result = sync_user(watched, client, now=clock)

    assert result.outcome == PollOutcome.FAILED
    assert not Session.objects.exists()


def test_rejected_key_pauses_account_once(watched, client, clock, sandbox):
    sandbox.faults.add("key_revoked")

    result = sync_user(watched, client, now=clock)

    state = AccountState.load()
    assert result.outcome == PollOutcome.DEFERRED
    assert state.pause_reason == PauseReason.KEY_REJECTED
    assert state.paused_until == START + account.KEY_RECHECK_INTERVAL
    assert sandbox.key not in state.pause_error
    assert state.rejected_key_fingerprint
    assert state.rejected_key_fingerprint != sandbox.key
    assert account.active_pause(START) is not None


def test_changed_key_ends_rejected_key_pause(watched, client, clock, sandbox):
    sandbox.faults.add("key_revoked")
    sync_user(watched, client, now=clock)

    with override_settings(ROUNDTABLE_API_KEY="a-new-key"):
        pause = account.active_pause(START)

    assert pause is None
    assert AccountState.load().pause_reason == ""


def test_long_retry_after_pauses_account(watched, client, clock, sandbox):
    sandbox.faults.add("rate_limit", retry_after=600)

    result = sync_user(watched, client, now=clock)

    state = AccountState.load()
    assert result.outcome == PollOutcome.DEFERRED
    assert state.pause_reason == PauseReason.RATE_LIMITED
    assert state.paused_until >= START + timedelta(seconds=599)
    assert clock.slept == []


def test_short_rate_limit_is_retried_inside_the_call(watched, client, clock, sandbox):
    sandbox.faults.add("rate_limit", retry_after=2, count=1)

    result = sync_user(watched, client, now=clock)

    assert result.outcome == PollOutcome.SYNCED
    assert clock.slept == [2]


def test_successful_poll_clears_an_ended_pause(watched, client, clock):
    AccountState.objects.create(
        pk=1,
        paused_until=START - timedelta(seconds=1),
        pause_reason=PauseReason.RATE_LIMITED,
        pause_error="Rate limited.",
    )

    sync_user(watched, client, now=clock)

    assert AccountState.load().pause_reason == ""


def test_removed_user_gets_nothing_stored(watched, client, clock):
    WatchedUser.objects.filter(pk=watched.pk).delete()

    result = sync_user(watched, client, now=clock)

    assert result.outcome == PollOutcome.FAILED
    assert "Removed from the watchlist" in result.error
    assert not Session.objects.exists()
    assert not PollRecord.objects.exists()


def test_per_user_answer_ends_probe_mode(watched, client, clock, sandbox):
    AccountState.objects.create(
        pk=1,
        paused_until=START - timedelta(seconds=1),
        pause_reason=PauseReason.KEY_REJECTED,
    )
    sandbox.faults.add("not_found", user_id=watched.user_id)

    result = sync_user(watched, client, now=clock)

    assert result.outcome == PollOutcome.FAILED
    assert AccountState.load().pause_reason == ""


def test_rate_limit_without_wait_fails_one_user(watched, client, clock, sandbox):
    sandbox.faults.add("rate_limit")

    result = sync_user(watched, client, now=clock)

    assert result.outcome == PollOutcome.FAILED
    assert result.account_wide is False
    assert AccountState.load().paused_until is None


class ListingClient:
    """A client stand-in returning one fixed payload, for response shapes the
    sandbox does not produce on demand (a malformed item inside a full page).
    """

    def __init__(self, payload):
        self.payload = payload
        self.parsed = 0

    def user_sessions_response(self, user_id):
        return FixedResponse(self, json.dumps(self.payload).encode())


@dataclass
class FixedResponse:
    client: ListingClient
    content: bytes

    def parse(self):
        self.client.parsed += 1
        return parse_session_list(json.loads(self.content), "user_id")


def test_coverage_gap_counts_malformed_items(watched, clock):
    WatchedUser.objects.filter(pk=watched.pk).update(last_synced_at=START)
    watched.refresh_from_db()
    items = [payloads.session(f"new-{i}") for i in range(99)] + [{"bad": True}]

    result = sync_user(
        watched, ListingClient(payloads.user_sessions("u", items)), now=clock
    )

    assert result.received == 99
    assert result.coverage_gap is True


def test_poll_history_survives_removal_and_is_pruned(watched, client, clock):
    for _ in range(PollRecord.KEEP_PER_USER + 3):
        sync_user(watched, client, now=clock)
        clock.now += timedelta(minutes=5)

    WatchedUser.objects.filter(pk=watched.pk).delete()

    history = PollRecord.objects.filter(user_id=watched.user_id)
    assert history.count() == PollRecord.KEEP_PER_USER


def test_retention_is_not_undone_by_next_poll(watched, client, clock, settings):
    sync_user(watched, client, now=clock)
    settings.ROUNDTABLE_RETENTION_DAYS = 30
    counts = apply_retention(now=START)
    assert counts["sessions"] > 0
    remaining = Session.objects.count()

    again = sync_user(watched, client, now=clock)

    assert again.new == 0
    assert Session.objects.count() == remaining


def test_erased_sessions_stay_gone_after_re_adding(watched, client, clock):
    sync_user(watched, client, now=clock)
    erase_user(watched.user_id, audit.COMMAND_LINE)
    readded = WatchedUser.objects.create(user_id=watched.user_id, next_poll_at=START)

    result = sync_user(readded, client, now=clock)

    assert result.new == 0
    assert not Session.objects.exists()


def test_all_skipped_page_is_no_coverage_gap(watched, clock):
    WatchedUser.objects.filter(pk=watched.pk).update(last_synced_at=START)
    watched.refresh_from_db()
    items = [payloads.session("x" * 250 + f"{i:06d}") for i in range(100)]

    result = sync_user(
        watched, ListingClient(payloads.user_sessions("u", items)), now=clock
    )

    assert result.new == 0
    assert result.coverage_gap is False
