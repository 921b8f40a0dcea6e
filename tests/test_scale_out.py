"""Two django-q2 clusters sharing the polls through Redis and PostgreSQL.

Needs Redis; TEST_REDIS_URL picks the server and database number (default
redis://127.0.0.1:6379/9, a database the product does not use by default).
Takes about three minutes, most of it waiting for a killed cluster's claims
to expire.
"""

import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from importlib import import_module
from pathlib import Path

import pytest
import redis
from django.apps import apps
from django.conf import settings
from django.db import connection
from django.utils import timezone

from roundtable_sync.models import PollRecord, WatchedUser
from roundtable_sync.sandbox import SandboxServer
from tests.test_cluster import database_url, stop_cluster

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.process,
    pytest.mark.django_db(transaction=True),
]

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/9")
USER_IDS = [f"scale-user-{number:02d}" for number in range(24)]
# A 1 s deadline gives the shortest claim lease the settings allow: task
# timeout 2 x 1 + 30 = 32 s, lease (the broker's retry) 32 + 60 = 92 s.
REQUEST_DEADLINE = 1
CLAIM_LEASE = 92
# The dispatcher runs every minute, and django-q2's scheduler checks its
# schedules about every 30 s.
DISPATCH_DELAY = 60 + 30
# Each poll waits this long in the sandbox, so that a cluster killed while
# polling is almost surely in the middle of one.
SANDBOX_LATENCY = 0.7


def start_cluster(sandbox, log_path):
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "dashboard.settings",
        "DJANGO_DEBUG": "1",
        "DATABASE_URL": database_url(),
        "ROUNDTABLE_API_URL": sandbox.url,
        "ROUNDTABLE_API_KEY": sandbox.key,
        "ROUNDTABLE_BROKER_URL": REDIS_URL,
        "ROUNDTABLE_POLL_INTERVAL": "60",
        "ROUNDTABLE_REQUEST_DEADLINE": str(REQUEST_DEADLINE),
        "ROUNDTABLE_WORKERS": "2",
    }
    return subprocess.Popen(
        [sys.executable, "manage.py", "qcluster"],
        cwd=Path(settings.BASE_DIR),
        env=env,
        stdout=log_path.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def users_started_in(log_text):
    return {user_id for user_id in USER_IDS if f"{user_id}: poll started" in log_text}


def synced_user_ids():
    return set(
        PollRecord.objects.filter(outcome="synced").values_list("user_id", flat=True)
    )


def sandbox_polls(sandbox, user_id, before):
    """Count the user's session requests that reached the sandbox before then."""
    path = f"/v1/users/{user_id}/sessions"
    cutoff = before.timestamp()
    return sum(
        1
        for request in sandbox.requests
        if request.path == path and request.received_at < cutoff
    )


@pytest.fixture
def slow_sandbox():
    server = SandboxServer(key="sandbox-key", port=0, latency=SANDBOX_LATENCY)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_queue():
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.ConnectionError as error:
        pytest.fail(f"Redis at {REDIS_URL} is not reachable ({error}); start it.")
    # django-q2 names the list after the cluster name in the settings.
    queue = f"django_q:{settings.Q_CLUSTER['name']}:q"
    client.delete(queue)
    yield
    client.delete(queue)
    client.close()


def test_two_clusters_share_polls_and_recover(slow_sandbox, redis_queue, tmp_path):
    if connection.vendor != "postgresql":
        pytest.skip("several clusters need PostgreSQL: set TEST_DATABASE_URL")
    import_module("roundtable_sync.migrations.0002_dispatch_schedule").create_schedule(
        apps, None
    )
    started = timezone.now()
    for user_id in USER_IDS:
        WatchedUser.objects.create(user_id=user_id, next_poll_at=started)
    logs = [tmp_path / "cluster-a.log", tmp_path / "cluster-b.log"]
    clusters = [start_cluster(slow_sandbox, log) for log in logs]
    try:
        # Wait for cluster B to be in the middle of a poll, then kill it.
        deadline = time.monotonic() + 90
        while not users_started_in(logs[1].read_text()):
            exited = [
                process.args for process in clusters if process.poll() is not None
            ]
            assert not exited, logs[1].read_text()
            assert time.monotonic() < deadline, logs[1].read_text()
            time.sleep(0.2)
        time.sleep(SANDBOX_LATENCY / 2)
        os.killpg(clusters[1].pid, signal.SIGKILL)
        killed_at = time.monotonic()
        clusters[1].wait(timeout=10)

        # Every user is polled: by A directly, or by A once B's claims expire.
        bound = CLAIM_LEASE + DISPATCH_DELAY + 15
        while time.monotonic() < killed_at + bound:
            if synced_user_ids() == set(USER_IDS):
                break
            time.sleep(1)
        recovered_after = time.monotonic() - killed_at
    finally:
        stop_cluster(clusters[0])
        for process in clusters:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)

    log_a, log_b = (log.read_text() for log in logs)
    assert users_started_in(log_a), log_a
    assert users_started_in(log_b), log_b
    assert synced_user_ids() == set(USER_IDS), log_a
    assert recovered_after < bound
    # No user was polled twice within the 60 s interval: a user counted twice
    # by the sandbox is one whose first request died with cluster B.
    interval_end = started + timedelta(seconds=60)
    for user_id in USER_IDS:
        polls = PollRecord.objects.filter(user_id=user_id, started_at__lt=interval_end)
        assert polls.count() <= 1, user_id
        # Later requests are the next interval's polls.
        assert sandbox_polls(slow_sandbox, user_id, interval_end) <= 2, user_id
    stranded = [
        user_id
        for user_id in USER_IDS
        if sandbox_polls(slow_sandbox, user_id, interval_end) == 2
        or not PollRecord.objects.filter(
            user_id=user_id, started_at__lt=interval_end
        ).exists()
    ]
    assert stranded, "cluster B was killed holding no claim: nothing was tested"
