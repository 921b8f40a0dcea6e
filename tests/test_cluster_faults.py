"""A real django-q2 cluster killed mid-poll, then restarted: nothing lost."""

import os
import signal
import time
from datetime import timedelta
from importlib import import_module

import pytest
from django.apps import apps
from django.utils import timezone

from roundtable_sync.models import PollOutcome, PollRecord, Session, WatchedUser
from tests.test_cluster import start_cluster, stop_cluster

pytestmark = [pytest.mark.process, pytest.mark.django_db(transaction=True)]

USERS = 4
# The scheduler's first run comes about 30 s after start; a released claim
# is polled by that first dispatch. Well below the 210 s lease.
REPOLL_BOUND_SECONDS = 100


def create_schedule():
    migration = import_module("roundtable_sync.migrations.0002_dispatch_schedule")
    migration.create_schedule(apps, None)


def wait_for(condition, seconds, process=None):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            return False
        if condition():
            return True
        time.sleep(0.5)
    return False


def test_killed_cluster_repolls_after_restart(sandbox, tmp_path):
    sandbox.clock.now = timezone.now()
    create_schedule()
    user_ids = [f"killed-{number}" for number in range(USERS)]
    for user_id in user_ids:
        WatchedUser.objects.create(user_id=user_id, next_poll_at=timezone.now())
    # Every first request hangs, so each poll is mid-flight when killed.
    sandbox.faults.add("slow", delay=60, count=USERS)
    log_path = tmp_path / "qcluster.log"
    # One worker per user, so every claimed poll is running, not queued.
    cluster_env = {
        "ROUNDTABLE_WORKERS": str(USERS),
        "ROUNDTABLE_EVENTS_PER_MINUTE": "0",
    }

    first = start_cluster(sandbox, log_path, cluster_env)
    try:
        running = WatchedUser.objects.exclude(claim_holder="")
        all_running = wait_for(lambda: running.count() == USERS, 90, first)
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(timeout=10)
    log = log_path.read_text()
    assert all_running, log
    assert PollRecord.objects.count() == 0
    assert Session.objects.count() == 0
    sandbox.faults.clear()

    restarted_at = timezone.now()
    second = start_cluster(sandbox, log_path, cluster_env)
    try:
        synced = WatchedUser.objects.filter(last_poll_outcome=PollOutcome.SYNCED)
        all_synced = wait_for(
            lambda: synced.count() == USERS, REPOLL_BOUND_SECONDS, second
        )
    finally:
        returncode = stop_cluster(second)

    log = log_path.read_text()
    assert all_synced, log
    assert returncode == 0, log
    assert f"Released {USERS} watched user claim(s)" in log
    for user_id in user_ids:
        watched = WatchedUser.objects.get(user_id=user_id)
        assert watched.claim_token is None
        assert watched.last_polled_at - restarted_at < timedelta(
            seconds=REPOLL_BOUND_SECONDS
        )
        assert Session.objects.filter(user_id=user_id).count() == len(
            {s.session_id for s in Session.objects.filter(user_id=user_id)}
        )
        # One poll recorded per user: the interrupted ones left nothing.
        assert PollRecord.objects.filter(user_id=user_id).count() == 1
    served = sandbox.served.as_dict()["sessions"]
    assert set(Session.objects.values_list("session_id", flat=True)) <= set(served)
