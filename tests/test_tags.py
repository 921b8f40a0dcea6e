"""Tag watches in the worker: tag polls, report lookups, budget and failures."""

from datetime import timedelta
from urllib.parse import unquote

import pytest
from django.test import override_settings
from django.utils import timezone

from roundtable_sync import tags, tasks
from roundtable_sync.client import RoundtableClient
from roundtable_sync.dispatch import claim_due_tags
from roundtable_sync.models import (
    AccountState,
    PauseReason,
    PendingTagSession,
    PollOutcome,
    ScoreChange,
    Session,
    WatchedTag,
    WatchedUser,
)
from roundtable_sync.sandbox import data
from roundtable_sync.signals import sessions_stored
from roundtable_sync.store import raw_digest
from roundtable_sync.sync import poll_interval, sync_user
from tests.fixtures_web import make_session

pytestmark = pytest.mark.django_db

TAG = "checkout-flow"


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


@pytest.fixture
def watched_tag():
    return WatchedTag.objects.create(tag=TAG, next_poll_at=timezone.now())


def poll(watched_tag, now=timezone.now):
    with RoundtableClient.from_settings() as client:
        return tags.sync_tag(watched_tag, client, now=now)


def poll_user(user_id):
    watched = WatchedUser.objects.create(user_id=user_id, next_poll_at=timezone.now())
    with RoundtableClient.from_settings() as client:
        sync_user(watched, client)
    return watched


def requests_to(api, endpoint):
    return [request for request in api.requests if endpoint in request.path]


def list_tag_sessions():
    with RoundtableClient.from_settings() as client:
        return client.tag_sessions(TAG).sessions


def reported_ids(api):
    # Report paths are /v1/sessions/{percent-encoded session ID}/report.
    return {unquote(r.path.split("/")[3]) for r in requests_to(api, "/report")}


def pending_ids():
    return set(PendingTagSession.objects.values_list("session_id", flat=True))


# Tag polls


def test_tag_poll_queues_unknown_sessions(api, watched_tag):
    result = poll(watched_tag)

    assert result.outcome == PollOutcome.SYNCED
    assert result.received > 0
    assert result.queued == result.received
    assert PendingTagSession.objects.count() == result.received
    assert Session.objects.count() == 0
    assert requests_to(api, "/report") == []


def test_tag_poll_records_success_on_tag(api, watched_tag):
    now = timezone.now()

    poll(watched_tag, now=lambda: now)

    watched_tag.refresh_from_db()
    assert watched_tag.last_poll_outcome == PollOutcome.SYNCED
    assert watched_tag.last_synced_at == now
    assert watched_tag.next_poll_at == now + poll_interval()
    assert watched_tag.claim_token is None


def test_known_sessions_need_no_report(api, watched_tag):
    poll_user("bot-farm-7")
    known = set(Session.objects.values_list("session_id", flat=True))

    poll(watched_tag)
    tasks.fetch_events(budget=5)

    listed = {session.session_id for session in list_tag_sessions()}
    assert listed & known
    assert pending_ids().isdisjoint(known)
    assert reported_ids(api).isdisjoint(known)


def test_known_session_change_recorded_once(api, watched_tag):
    watched_user = poll_user("bot-farm-7")
    stored_ids = set(Session.objects.values_list("session_id", flat=True))
    listed = next(s for s in list_tag_sessions() if s.session_id in stored_ids)
    Session.objects.filter(pk=listed.session_id).update(
        risk_score=(listed.risk_score + 1) % 100, raw_digest="stale"
    )

    poll(watched_tag)
    with RoundtableClient.from_settings() as client:
        sync_user(watched_user, client)

    changes = ScoreChange.objects.filter(session_id=listed.session_id)
    assert changes.count() == 1
    stored = Session.objects.get(pk=listed.session_id)
    assert stored.user_id == "bot-farm-7"
    assert stored.risk_score == listed.risk_score


def test_tag_store_clears_user_response_digest(api, watched_tag):
    watched_user = poll_user("bot-farm-7")
    watched_user.refresh_from_db()
    assert watched_user.response_digest != ""
    stored_ids = set(Session.objects.values_list("session_id", flat=True))
    listed = next(s for s in list_tag_sessions() if s.session_id in stored_ids)
    Session.objects.filter(pk=listed.session_id).update(raw_digest="stale")

    poll(watched_tag)

    watched_user.refresh_from_db()
    assert watched_user.response_digest == ""


def test_tag_poll_failure_recorded_on_tag(api, watched_tag):
    api.faults.add("server_error", status=500)
    now = timezone.now()

    result = poll(watched_tag, now=lambda: now)

    watched_tag.refresh_from_db()
    assert result.outcome == PollOutcome.FAILED
    assert watched_tag.last_poll_outcome == PollOutcome.FAILED
    assert "HTTP 500" in watched_tag.last_poll_error
    assert watched_tag.next_poll_at == now + poll_interval()
    assert AccountState.load().pause_reason == ""


def test_rejected_key_pauses_account_not_tag(api, watched_tag):
    api.faults.add("key_revoked")
    now = timezone.now()

    result = poll(watched_tag, now=lambda: now)

    watched_tag.refresh_from_db()
    assert result.account_wide is True
    assert watched_tag.last_poll_outcome == PollOutcome.DEFERRED
    assert watched_tag.next_poll_at == now
    assert AccountState.load().pause_reason == PauseReason.KEY_REJECTED


def test_long_rate_limit_defers_tag_poll(api, watched_tag):
    api.faults.add("rate_limit", retry_after=3600)

    poll(watched_tag)

    assert AccountState.load().pause_reason == PauseReason.RATE_LIMITED
    assert PendingTagSession.objects.count() == 0


# Report lookups


def test_lookup_stores_under_reported_user(api, watched_tag):
    poll(watched_tag)
    queued = pending_ids()

    tasks.fetch_events(budget=5)

    stored = Session.objects.filter(session_id__in=queued)
    assert stored.count() == 5
    for session in stored:
        report = data.session_report(session.session_id, api.clock())
        assert session.user_id == report["user_id"]
        assert TAG in session.tags


def test_lookup_stores_list_item_digest(api, watched_tag):
    poll(watched_tag)
    first = tags.pending_lookups().first()

    tasks.fetch_events(budget=1)

    stored = Session.objects.get(pk=first.session_id)
    assert "user_id" not in stored.raw
    listed = data.session_report(first.session_id, api.clock())
    del listed["user_id"]
    assert stored.raw_digest == raw_digest(listed)


def test_lookup_respects_budget(api, watched_tag):
    poll(watched_tag)
    before = PendingTagSession.objects.count()

    tasks.fetch_events(budget=3)

    assert len(requests_to(api, "/report")) == 3
    assert Session.objects.count() == 3
    assert PendingTagSession.objects.count() == before - 3


def test_lookups_share_budget_with_events(api, watched_tag):
    poll_user("bot-farm-7")
    assert Session.objects.filter(needs_events=True).exists()
    poll(watched_tag)
    assert PendingTagSession.objects.count() > 3
    api.requests.clear()

    tasks.fetch_events(budget=5)

    assert len(requests_to(api, "/report")) == 3
    assert len(requests_to(api, "/events")) == 2


def test_dispatch_polls_tag_then_looks_up_users(api, watched_tag):
    with override_settings(ROUNDTABLE_EVENTS_PER_MINUTE=4):
        queued = tasks.dispatch_polls()

    watched_tag.refresh_from_db()
    assert queued == 1
    assert watched_tag.last_poll_outcome == PollOutcome.SYNCED
    assert 0 < len(requests_to(api, "/report")) <= 4
    assert Session.objects.exists()


def test_failed_lookup_goes_to_back_of_queue(api, watched_tag):
    poll(watched_tag)
    failing = PendingTagSession.objects.order_by("first_seen_at", "session_id")[0]
    user_id = data.session_report(failing.session_id, api.clock())["user_id"]
    api.faults.add("server_error", user_id=user_id, status=500)

    tasks.fetch_events(budget=1)

    failing.refresh_from_db()
    assert failing.attempts == 1
    assert tags.pending_lookups().first().pk != failing.pk


def test_lookup_given_up_after_max_attempts(api, watched_tag):
    poll(watched_tag)
    failing = tags.pending_lookups().first()
    PendingTagSession.objects.exclude(pk=failing.pk).delete()
    PendingTagSession.objects.filter(pk=failing.pk).update(
        attempts=PendingTagSession.MAX_ATTEMPTS - 1
    )
    api.faults.add("server_error", status=500)

    tasks.fetch_events(budget=1)

    assert not PendingTagSession.objects.filter(pk=failing.pk).exists()
    assert not Session.objects.filter(pk=failing.pk).exists()


def test_missing_report_drops_pending_session(api, watched_tag):
    PendingTagSession.objects.create(
        session_id="no-such-session",
        watched_tag=watched_tag,
        first_seen_at=timezone.now(),
    )

    tasks.fetch_events(budget=5)

    assert PendingTagSession.objects.count() == 0
    assert len(requests_to(api, "/report")) == 1


def test_rate_limited_lookup_stops_the_run(api, watched_tag):
    poll(watched_tag)
    api.faults.add("rate_limit", retry_after=3600)

    tasks.fetch_events(budget=5)

    assert len(requests_to(api, "/report")) == 1
    assert AccountState.load().pause_reason == PauseReason.RATE_LIMITED
    assert Session.objects.count() == 0


def test_stored_meanwhile_needs_no_report(api, watched_tag):
    poll(watched_tag)
    pending = tags.pending_lookups().first()
    make_session("someone", pending.session_id, timezone.now())

    tasks.fetch_events(budget=1)

    assert pending.session_id not in reported_ids(api)
    assert not PendingTagSession.objects.filter(pk=pending.pk).exists()


def test_lookup_of_new_session_raises_no_alerts(api, watched_tag):
    poll(watched_tag)
    pending = tags.pending_lookups().first()
    user_id = data.session_report(pending.session_id, api.clock())["user_id"]
    WatchedUser.objects.create(user_id=user_id, last_synced_at=timezone.now())
    received = []

    def receiver(watched_user, stored, first_sync, **kwargs):
        received.append((watched_user.user_id, stored.new_session_ids, first_sync))

    sessions_stored.connect(receiver)
    try:
        tasks.fetch_events(budget=1)
    finally:
        sessions_stored.disconnect(receiver)

    # A tag lists history far beyond the user's newest 100: no flood.
    assert received == []
    assert Session.objects.filter(pk=pending.session_id, user_id=user_id).exists()


# Pausing, claims and dispatch


def test_paused_tag_is_not_polled(api):
    WatchedTag.objects.create(tag=TAG, next_poll_at=timezone.now(), is_active=False)

    assert tasks.dispatch_polls() == 0
    assert api.requests == []


def test_paused_tag_holds_its_lookups(api, watched_tag):
    poll(watched_tag)
    tags.set_active(watched_tag, False)

    tasks.fetch_events(budget=5)

    assert requests_to(api, "/report") == []
    assert PendingTagSession.objects.exists()


def test_resumed_tag_is_due_at_once(api, watched_tag):
    later = timezone.now() + timedelta(hours=1)
    WatchedTag.objects.filter(pk=watched_tag.pk).update(
        is_active=False, next_poll_at=later
    )

    tags.set_active(watched_tag, True)

    watched_tag.refresh_from_db()
    assert watched_tag.is_active is True
    assert watched_tag.next_poll_at <= timezone.now()


def test_second_tag_claim_finds_nothing(watched_tag):
    now = timezone.now()
    claim_due_tags(now)

    _, claimed = claim_due_tags(now)

    assert claimed == []


def test_poll_tag_skips_without_claim(api, watched_tag):
    assert (
        tasks.poll_tag(watched_tag.pk, "00000000-0000-0000-0000-000000000000") is None
    )
    assert api.requests == []


def test_probe_after_pause_polls_one_tag(api):
    now = timezone.now()
    for tag in (TAG, "signup"):
        WatchedTag.objects.create(tag=tag, next_poll_at=now)
    AccountState.objects.create(
        pk=1,
        paused_until=now - timedelta(seconds=1),
        pause_reason=PauseReason.RATE_LIMITED,
    )

    with override_settings(ROUNDTABLE_EVENTS_PER_MINUTE=0):
        assert tasks.dispatch_polls() == 1
        assert tasks.dispatch_polls() == 1


def test_removing_tag_drops_its_pending_sessions(api, watched_tag):
    poll(watched_tag)

    tags.remove_tags([TAG])

    assert PendingTagSession.objects.count() == 0


# Cleaning tags


@pytest.mark.parametrize("value", ["", "   ", ".", "..", "tab\there", "x" * 256, None])
def test_clean_tag_rejects(value):
    with pytest.raises(tags.InvalidTagError):
        tags.clean_tag(value)


def test_clean_tags_trims_and_deduplicates():
    cleaned = tags.clean_tags(["  checkout-flow ", "checkout-flow", "a/b?c#d%"])

    assert cleaned == ["checkout-flow", "a/b?c#d%"]
