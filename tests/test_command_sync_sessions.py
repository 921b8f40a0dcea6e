import io
import uuid
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.test import override_settings
from django.utils import timezone

from roundtable_sync import tasks
from roundtable_sync.dispatch import claim
from roundtable_sync.holders import current_holder
from roundtable_sync.models import PollOutcome, Session, WatchedUser

pytestmark = pytest.mark.django_db


@pytest.fixture
def api(sandbox):
    sandbox.clock.now = timezone.now()
    with override_settings(
        ROUNDTABLE_API_URL=sandbox.url,
        ROUNDTABLE_API_KEY=sandbox.key,
        ROUNDTABLE_MAX_ATTEMPTS=1,
    ):
        yield sandbox


def sync(*args):
    stdout = io.StringIO()
    call_command("sync_sessions", *args, stdout=stdout)
    return stdout.getvalue()


def test_syncs_all_active_users(api):
    WatchedUser.objects.create(user_id="alice@example.com")
    WatchedUser.objects.create(user_id="bot-farm-7")
    WatchedUser.objects.create(user_id="paused", is_active=False)

    output = sync()

    lines = output.strip().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("alice@example.com: synced, 100 sessions received")
    assert Session.objects.filter(user_id="bot-farm-7").count() == 100
    assert not any(r.path.endswith("/paused/sessions") for r in api.requests)


def test_syncs_only_named_users(api):
    WatchedUser.objects.create(user_id="alice@example.com")
    WatchedUser.objects.create(user_id="bot-farm-7")

    output = sync("bot-farm-7")

    assert output.startswith("bot-farm-7: synced")
    assert not Session.objects.filter(user_id="alice@example.com").exists()


def test_unwatched_name_fails_before_any_request(api):
    WatchedUser.objects.create(user_id="alice@example.com")

    with pytest.raises(CommandError) as raised:
        sync("alice@example.com", "stranger")

    assert raised.value.returncode == 2
    assert "stranger" in str(raised.value)
    assert api.requests == []


def test_failure_exits_one_and_others_still_sync(api):
    WatchedUser.objects.create(user_id="alice@example.com")
    WatchedUser.objects.create(user_id="bot-farm-7")
    api.faults.add("server_error", user_id="alice@example.com", status=502)

    with pytest.raises(CommandError) as raised:
        sync()

    assert raised.value.returncode == 1
    assert "alice@example.com" in str(raised.value)
    bot = WatchedUser.objects.get(user_id="bot-farm-7")
    assert bot.last_poll_outcome == PollOutcome.SYNCED


def test_deferred_users_exit_zero_and_are_listed(api):
    WatchedUser.objects.create(user_id="alice@example.com")
    WatchedUser.objects.create(user_id="bot-farm-7")
    api.faults.add("rate_limit", retry_after=3600)

    output = sync()

    assert "Deferred by the API: alice@example.com, bot-farm-7" in output
    assert len([r for r in api.requests if "/sessions" in r.path]) == 1


def test_rejected_key_exits_one(api):
    WatchedUser.objects.create(user_id="alice@example.com")
    WatchedUser.objects.create(user_id="bot-farm-7")
    api.faults.add("key_revoked")

    with pytest.raises(CommandError) as raised:
        sync()

    assert raised.value.returncode == 1
    assert len(api.requests) == 1


def test_user_with_running_poll_is_skipped(api):
    WatchedUser.objects.create(
        user_id="alice@example.com",
        claim_token=uuid.uuid4(),
        claim_holder=current_holder(),
        next_poll_at=timezone.now() + timedelta(minutes=3),
    )

    output = sync()

    assert "already running" in output
    assert api.requests == []


def test_queued_poll_is_taken_over(api):
    # Without a cluster, as under cron, a poll queued by "watchlist add" never
    # starts; its claim must not hold the user for the whole lease.
    watched = WatchedUser.objects.create(user_id="alice@example.com")
    queued_token, _ = claim([watched.pk], timezone.now())

    output = sync()

    assert "alice@example.com: synced" in output
    assert Session.objects.filter(user_id="alice@example.com").exists()
    requests_before = len(api.requests)
    # The queued task, should a cluster start it later, finds its claim gone.
    assert tasks.poll_user(watched.pk, str(queued_token)) is None
    assert len(api.requests) == requests_before
