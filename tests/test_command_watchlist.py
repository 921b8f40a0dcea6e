import io
from datetime import timedelta
from unittest import mock

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from roundtable_sync.models import AccountState, PauseReason, Session, WatchedUser
from roundtable_sync.store import store_sessions
from tests import payloads
from tests.test_store import NOW, parsed
from workflow.models import AuditEvent

pytestmark = pytest.mark.django_db


@pytest.fixture
def queued_polls():
    with mock.patch("roundtable_sync.tasks.async_task", autospec=True) as async_task:
        yield async_task


def run(*args):
    stdout = io.StringIO()
    call_command("watchlist", *args, stdout=stdout)
    return stdout.getvalue()


def test_add_watches_trimmed_ids_and_queues_polls(queued_polls):
    output = run("add", "  alice  ", "bob/with?odd#chars%", "--note", "vip")

    alice = WatchedUser.objects.get(user_id="alice")
    assert alice.note == "vip"
    assert alice.added_by is None
    assert alice.added_by_label == "command line"
    assert WatchedUser.objects.filter(user_id="bob/with?odd#chars%").exists()
    assert "Added alice" in output
    assert queued_polls.call_count == 2


def test_add_skips_watched_id(queued_polls):
    WatchedUser.objects.create(user_id="alice")

    output = run("add", "alice", "carol")

    assert "Skipped alice: already on the watchlist" in output
    assert "Added carol" in output
    assert WatchedUser.objects.count() == 2


def test_invalid_id_rejects_whole_command(queued_polls):
    with pytest.raises(CommandError) as raised:
        run("add", "good", "   ", "x" * 256)

    assert raised.value.returncode == 2
    assert "empty" in str(raised.value)
    assert "maximum is 255" in str(raised.value)
    assert not WatchedUser.objects.exists()
    queued_polls.assert_not_called()


def test_remove_keeps_sessions():
    WatchedUser.objects.create(user_id="alice")
    store_sessions("alice", parsed(payloads.session("s1")), NOW)

    output = run("remove", "alice")

    assert "Removed alice" in output
    assert not WatchedUser.objects.exists()
    assert Session.objects.filter(user_id="alice").count() == 1


def test_remove_purge_deletes_sessions():
    WatchedUser.objects.create(user_id="alice")
    store_sessions("alice", parsed(payloads.session("s1")), NOW)
    store_sessions("bob", parsed(payloads.session("s2")), NOW)

    run("remove", "--purge", "alice")

    assert not Session.objects.filter(user_id="alice").exists()
    assert Session.objects.filter(user_id="bob").exists()


def test_remove_unknown_is_reported():
    output = run("remove", "nobody")

    assert "Skipped nobody: not on the watchlist" in output


def test_list_prints_state_and_outcome():
    WatchedUser.objects.create(user_id="alice")
    WatchedUser.objects.create(
        user_id="bob",
        is_active=False,
        last_poll_outcome="failed",
        last_poll_error="Timed out.",
    )

    output = run("list")

    assert "alice\tactive\tnever polled" in output
    assert "bob\tpaused\tFailed (Timed out.)" in output


@pytest.mark.parametrize("user_id", ["tab\there", "bell\x07", "nul\x00"])
def test_control_characters_are_rejected(queued_polls, user_id):
    with pytest.raises(CommandError) as raised:
        run("add", user_id)

    assert "control character" in str(raised.value)
    assert not WatchedUser.objects.exists()


def test_list_reports_account_pause():
    WatchedUser.objects.create(user_id="alice")
    AccountState.objects.create(
        pk=1,
        paused_until=timezone.now() + timedelta(minutes=5),
        pause_reason=PauseReason.RATE_LIMITED,
        pause_error="Rate limited.",
    )
    stderr = io.StringIO()

    call_command("watchlist", "list", stdout=io.StringIO(), stderr=stderr)

    assert "Polling is paused account-wide until" in stderr.getvalue()
    assert "Rate limited." in stderr.getvalue()


# Audit


def test_add_is_audited_as_command_line(queued_polls):
    run("add", "alice", "bob")

    event = AuditEvent.objects.get()
    assert event.action == "watchlist_added"
    assert event.actor is None
    assert event.actor_label == "command line"
    assert event.details["user_ids"] == ["alice", "bob"]


def test_remove_is_audited_per_user():
    WatchedUser.objects.create(user_id="alice")
    WatchedUser.objects.create(user_id="bob")

    run("remove", "alice", "bob", "carol")

    events = AuditEvent.objects.order_by("id")
    assert [event.target for event in events] == ["alice", "bob"]
    assert {event.action for event in events} == {"watchlist_removed"}


def test_purge_is_audited_with_counts():
    WatchedUser.objects.create(user_id="alice")
    store_sessions("alice", parsed(payloads.session("s1")), NOW)

    run("remove", "alice", "--purge")

    event = AuditEvent.objects.get()
    assert event.action == "watchlist_purged"
    assert event.actor_label == "command line"
    assert event.details["sessions"] == 1
    assert event.details["session_related"] > 0


def test_invalid_id_is_not_audited():
    with pytest.raises(CommandError):
        run("add", "alice", "")

    assert not AuditEvent.objects.exists()
