"""A real django-q2 cluster in its own process, polling the sandbox."""

import os
import signal
import subprocess
import sys
import time
from importlib import import_module
from pathlib import Path

import pytest
from django.apps import apps
from django.conf import settings
from django.db import connection
from django.utils import timezone

from roundtable_sync.models import PollOutcome, Session, WatchedUser

# The cluster's scheduler first runs about 30 s after start.
WAIT_SECONDS = 90

pytestmark = [pytest.mark.process, pytest.mark.django_db(transaction=True)]


def database_url():
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    host = db["HOST"] or "127.0.0.1"
    return f"postgres://{db['USER']}@{host}:{db['PORT'] or 5432}/{db['NAME']}"


def start_cluster(sandbox, log_path, extra_env=None):
    """Start ``manage.py qcluster`` in its own process group, logging to a file.

    ``extra_env`` adds or overrides environment variables, such as
    ROUNDTABLE_WORKERS.
    """
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "dashboard.settings",
        "DJANGO_DEBUG": "1",
        "DATABASE_URL": database_url(),
        "ROUNDTABLE_API_URL": sandbox.url,
        "ROUNDTABLE_API_KEY": sandbox.key,
        **(extra_env or {}),
    }
    log = log_path.open("a")
    return subprocess.Popen(
        [sys.executable, "manage.py", "qcluster"],
        cwd=Path(settings.BASE_DIR),
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def stop_cluster(process):
    # SIGTERM to the cluster's main process only: it stops its own workers.
    process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        return process.wait(timeout=10)


def test_cluster_runs_schedule_and_polls(sandbox, tmp_path):
    sandbox.clock.now = timezone.now()
    schedule_migration = import_module(
        "roundtable_sync.migrations.0002_dispatch_schedule"
    )
    schedule_migration.create_schedule(apps, None)
    WatchedUser.objects.create(user_id="bot-farm-7", next_poll_at=timezone.now())
    log_path = tmp_path / "qcluster.log"

    process = start_cluster(sandbox, log_path)
    try:
        deadline = time.monotonic() + WAIT_SECONDS
        while time.monotonic() < deadline and process.poll() is None:
            watched = WatchedUser.objects.get(user_id="bot-farm-7")
            if watched.last_poll_outcome:
                break
            time.sleep(0.5)
    finally:
        returncode = stop_cluster(process)

    log = log_path.read_text()
    watched = WatchedUser.objects.get(user_id="bot-farm-7")
    assert watched.last_poll_outcome == PollOutcome.SYNCED, log
    assert Session.objects.filter(user_id="bot-farm-7").count() == 100
    assert returncode == 0, log
    assert sandbox.key not in log
