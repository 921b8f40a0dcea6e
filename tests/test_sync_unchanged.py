"""Polls that skip a response byte-identical to the last one stored."""

import json
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection, transaction
from django.test import override_settings
from django.test.utils import CaptureQueriesContext

from roundtable_sync import client as client_module
from roundtable_sync import sync
from roundtable_sync.client import RoundtableClient
from roundtable_sync.errors import ServerError
from roundtable_sync.models import PollOutcome, PollRecord, Session, WatchedUser
from roundtable_sync.parsing import parse_session_list
from roundtable_sync.store import store_sessions
from roundtable_sync.sync import response_digest, sync_user
from roundtable_sync.watchlist import add_users, remove_users
from tests import payloads
from workflow import audit
from workflow.erasure import delete_stored_data, erase_user
from workflow.tasks import apply_retention

pytestmark = pytest.mark.django_db

START = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
USER_ID = "alice@example.com"
SESSION_TABLE = '"roundtable_sync_session"'


class FakeTime:
    def __init__(self, now):
        self.now = now

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        pass


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
            sandbox.key, sandbox.url, sleep=clock.sleep, max_attempts=1
        )


@pytest.fixture
def watched():
    return WatchedUser.objects.create(user_id=USER_ID, next_poll_at=START)


@pytest.fixture
def parses(monkeypatch):
    """Owner keys of the sessions lists that the client parsed, in order."""
    calls = []
    real = client_module.parse_session_list

    def counting(payload, owner_key):
        calls.append(owner_key)
        return real(payload, owner_key)

    monkeypatch.setattr(client_module, "parse_session_list", counting)
    return calls


def poll_again(watched, client, clock):
    """Poll the user five minutes later, as the worker would."""
    watched.refresh_from_db()
    clock.now += timedelta(minutes=5)
    return sync_user(watched, client, now=clock)


def session_statements(queries):
    return [q["sql"] for q in queries if SESSION_TABLE in q["sql"]]


class ListingClient:
    """A client stand-in that returns one fixed payload, or fails on request."""

    def __init__(self, payload):
        self.content = json.dumps(payload).encode()
        self.parsed = 0
        self.fail_next = False

    def user_sessions_response(self, user_id):
        if self.fail_next:
            self.fail_next = False
            raise ServerError("Roundtable answered HTTP 500.", status=500)
        return self

    def parse(self):
        self.parsed += 1
        return parse_session_list(json.loads(self.content), "user_id")


@pytest.fixture
def warning_client(watched):
    """A client whose response has one good session and one malformed item."""
    items = [payloads.session("s1"), {"not_a_session": True}]
    return ListingClient(payloads.user_sessions(watched.user_id, items))


# Skipping an unchanged response


def test_unchanged_response_not_parsed_or_stored(watched, client, clock, parses):
    first = sync_user(watched, client, now=clock)
    assert parses == ["user_id"]

    with CaptureQueriesContext(connection) as queries:
        again = poll_again(watched, client, clock)

    assert parses == ["user_id"]
    assert session_statements(queries.captured_queries) == []
    assert again.outcome == PollOutcome.SYNCED
    assert again.received == first.received
    assert again.new == 0
    assert again.changed == 0


def test_unchanged_response_recorded_as_synced(watched, client, clock):
    first = sync_user(watched, client, now=clock)

    poll_again(watched, client, clock)

    watched.refresh_from_db()
    assert watched.last_poll_outcome == PollOutcome.SYNCED
    assert watched.last_synced_at == clock.now
    assert watched.next_poll_at == clock.now + timedelta(seconds=300)
    newest = PollRecord.objects.filter(user_id=USER_ID).first()
    assert newest.finished_at == clock.now
    assert newest.outcome == PollOutcome.SYNCED
    assert newest.sessions_received == first.received
    assert newest.sessions_new == 0
    assert PollRecord.objects.filter(user_id=USER_ID).count() == 2


def test_unchanged_response_keeps_warnings(watched, warning_client, clock):
    first = sync_user(watched, warning_client, now=clock)

    again = poll_again(watched, warning_client, clock)

    assert warning_client.parsed == 1
    assert first.error != ""
    assert again.error == first.error
    assert again.received == 1
    watched.refresh_from_db()
    assert watched.last_poll_error == first.error
    newest = PollRecord.objects.filter(user_id=USER_ID).first()
    assert newest.error == first.error


def test_warnings_return_after_failed_poll(watched, warning_client, clock):
    first = sync_user(watched, warning_client, now=clock)
    warning_client.fail_next = True
    failed = poll_again(watched, warning_client, clock)

    again = poll_again(watched, warning_client, clock)

    assert failed.outcome == PollOutcome.FAILED
    assert warning_client.parsed == 1
    assert again.outcome == PollOutcome.SYNCED
    assert again.error == first.error
    watched.refresh_from_db()
    assert watched.last_poll_error == first.error


def test_changed_response_is_stored(watched, client, clock, sandbox, parses):
    sync_user(watched, client, now=clock)
    watched.refresh_from_db()
    first_digest = watched.response_digest
    sandbox.clock.now = START + timedelta(days=3)

    again = poll_again(watched, client, clock)

    assert parses == ["user_id", "user_id"]
    assert again.new > 0
    watched.refresh_from_db()
    assert watched.response_digest not in ("", first_digest)
    stored = Session.objects.filter(user_id=USER_ID, first_seen_at=clock.now)
    assert stored.count() == again.new


def test_digest_covers_body_bytes(settings):
    settings.ROUNDTABLE_RETENTION_DAYS = 0
    body = b'{"user_id": "u", "sessions": []}'

    assert response_digest(body) == response_digest(bytes(body))
    assert response_digest(body) != response_digest(body.replace(b": ", b":"))


# Digests that are not trusted


def test_older_format_digest_not_trusted(watched, client, clock, parses, monkeypatch):
    with monkeypatch.context() as old_code:
        old_code.setattr(sync, "RESPONSE_FORMAT", "roundtable-user-sessions-store/0")
        sync_user(watched, client, now=clock)
    watched.refresh_from_db()
    old_digest = watched.response_digest

    again = poll_again(watched, client, clock)

    assert parses == ["user_id", "user_id"]
    assert again.outcome == PollOutcome.SYNCED
    watched.refresh_from_db()
    assert watched.response_digest not in ("", old_digest)


def test_other_retention_period_not_trusted(watched, client, clock, parses, settings):
    settings.ROUNDTABLE_RETENTION_DAYS = 0
    sync_user(watched, client, now=clock)
    settings.ROUNDTABLE_RETENTION_DAYS = 3650

    poll_again(watched, client, clock)

    assert parses == ["user_id", "user_id"]


def test_digest_without_recorded_sync_not_trusted(watched, client, clock, parses):
    sync_user(watched, client, now=clock)
    # As if the store committed but recording the poll failed.
    WatchedUser.objects.filter(pk=watched.pk).update(last_synced_at=None)

    poll_again(watched, client, clock)

    assert parses == ["user_id", "user_id"]


# Invalidation: whatever changes or deletes the user's stored sessions


def test_retention_clears_digest(watched, client, clock, parses, settings):
    settings.ROUNDTABLE_RETENTION_DAYS = 30
    sync_user(watched, client, now=clock)
    counts = apply_retention(now=START + timedelta(days=60))
    assert counts["sessions"] > 0
    watched.refresh_from_db()
    assert watched.response_digest == ""

    again = poll_again(watched, client, clock)

    assert parses == ["user_id", "user_id"]
    assert again.new == 0
    assert not Session.objects.filter(user_id=USER_ID).exists()
    watched.refresh_from_db()
    assert watched.response_digest != ""


def test_retention_keeps_other_users_digest(client, clock, settings):
    settings.ROUNDTABLE_RETENTION_DAYS = 30
    watched = WatchedUser.objects.create(user_id=USER_ID, next_poll_at=START)
    sync_user(watched, client, now=clock)
    # Polled 60 days later, bob stores only sessions newer than the cutoff.
    other = WatchedUser.objects.create(user_id="bob@example.com", next_poll_at=START)
    clock.now = START + timedelta(days=60)
    sync_user(other, client, now=clock)
    other.refresh_from_db()
    digest = other.response_digest

    apply_retention(now=START + timedelta(days=60))

    other.refresh_from_db()
    watched.refresh_from_db()
    assert watched.response_digest == ""
    assert Session.objects.filter(user_id=other.user_id).exists()
    assert other.response_digest == digest


def test_erased_and_readded_user_parses_again(watched, client, clock, parses):
    sync_user(watched, client, now=clock)
    erase_user(USER_ID, audit.COMMAND_LINE)
    readded = WatchedUser.objects.create(user_id=USER_ID, next_poll_at=START)

    result = poll_again(readded, client, clock)

    assert parses == ["user_id", "user_id"]
    assert result.new == 0
    assert not Session.objects.exists()


def test_deleting_stored_data_clears_digest(watched, client, clock):
    sync_user(watched, client, now=clock)

    with transaction.atomic():
        delete_stored_data(USER_ID)

    watched.refresh_from_db()
    assert watched.response_digest == ""


def test_purged_and_readded_user_parses_again(watched, client, clock, parses):
    sync_user(watched, client, now=clock)
    remove_users([USER_ID], purge=True)
    add_users([USER_ID])
    readded = WatchedUser.objects.get(user_id=USER_ID)

    result = poll_again(readded, client, clock)

    assert parses == ["user_id", "user_id"]
    assert result.new == 0
    assert not Session.objects.exists()


def test_removed_and_readded_user_parses_again(watched, client, clock, parses):
    first = sync_user(watched, client, now=clock)
    remove_users([USER_ID])
    add_users([USER_ID])
    readded = WatchedUser.objects.get(user_id=USER_ID)

    result = poll_again(readded, client, clock)

    assert parses == ["user_id", "user_id"]
    assert result.received == first.received
    assert result.new == 0
    assert result.changed == 0


def test_other_store_of_user_clears_digest(watched, client, clock, parses):
    sync_user(watched, client, now=clock)
    stored = Session.objects.filter(user_id=USER_ID).first()
    # Another version of one session, as a tag poll or report lookup stores.
    other_version = payloads.session(stored.session_id, risk_score=1)
    listing = parse_session_list(
        payloads.user_sessions(USER_ID, [other_version]), "user_id"
    )
    store_sessions(USER_ID, listing.sessions, START + timedelta(minutes=1))
    watched.refresh_from_db()
    assert watched.response_digest == ""

    again = poll_again(watched, client, clock)

    assert parses == ["user_id", "user_id"]
    assert again.changed == 1
    assert Session.objects.get(pk=stored.session_id).raw == stored.raw


def test_unchanged_store_keeps_digest(watched, client, clock):
    sync_user(watched, client, now=clock)
    watched.refresh_from_db()
    digest = watched.response_digest
    stored = Session.objects.filter(user_id=USER_ID).first()
    listing = parse_session_list(
        payloads.user_sessions(USER_ID, [stored.raw]), "user_id"
    )

    store_sessions(USER_ID, listing.sessions, START + timedelta(minutes=1))

    watched.refresh_from_db()
    assert watched.response_digest == digest
