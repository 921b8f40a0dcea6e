"""The tagwatch command: add, remove and list watched tags."""

import io
from datetime import timedelta
from unittest import mock

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from roundtable_sync.models import AccountState, PauseReason, WatchedTag
from workflow import audit
from workflow.models import AuditEvent

pytestmark = pytest.mark.django_db


@pytest.fixture
def queued_polls():
    with mock.patch("roundtable_sync.tasks.async_task", autospec=True) as async_task:
        yield async_task


def run(*args, stderr=None):
    stdout = io.StringIO()
    call_command("tagwatch", *args, stdout=stdout, stderr=stderr or io.StringIO())
    return stdout.getvalue()


def test_add_watches_tags_and_queues_polls(queued_polls):
    output = run("add", "  checkout-flow ", "signup", "--note", "fraud wave")

    added = WatchedTag.objects.get(tag="checkout-flow")
    assert added.note == "fraud wave"
    assert added.added_by_label == "command line"
    assert "Added checkout-flow" in output
    assert queued_polls.call_count == 2


def test_add_is_audited_as_command_line(queued_polls):
    run("add", "signup")

    event = AuditEvent.objects.get()
    assert event.action == "tag_added"
    assert event.target == "signup"
    assert event.actor_label == audit.COMMAND_LINE


def test_add_skips_watched_tag(queued_polls):
    WatchedTag.objects.create(tag="signup")

    output = run("add", "signup")

    assert "Skipped signup: already watched" in output
    assert AuditEvent.objects.count() == 0


def test_invalid_tag_changes_nothing(queued_polls):
    with pytest.raises(CommandError) as raised:
        run("add", "signup", "tab\there")

    assert raised.value.returncode == 2
    assert "control character" in str(raised.value)
    assert WatchedTag.objects.count() == 0


def test_remove_unwatches_and_audits():
    WatchedTag.objects.create(tag="signup")

    output = run("remove", "signup", "login")

    assert "Removed signup" in output
    assert "Skipped login: not watched" in output
    assert WatchedTag.objects.count() == 0
    assert list(AuditEvent.objects.values_list("action", "target")) == [
        ("tag_removed", "signup")
    ]


def test_list_prints_state_and_outcome():
    WatchedTag.objects.create(
        tag="signup", last_poll_outcome="failed", last_poll_error="HTTP 500"
    )
    WatchedTag.objects.create(tag="login", is_active=False)

    output = run("list")

    assert output.splitlines() == [
        "login\tpaused\tnever polled",
        "signup\tactive\tFailed (HTTP 500)",
    ]


def test_list_reports_account_pause():
    AccountState.objects.create(
        pk=1,
        paused_until=timezone.now() + timedelta(minutes=5),
        pause_reason=PauseReason.RATE_LIMITED,
        pause_error="Rate limited.",
    )
    stderr = io.StringIO()

    run("list", stderr=stderr)

    assert "Polling is paused account-wide" in stderr.getvalue()
