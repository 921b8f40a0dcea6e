"""Soak: a real cluster polls 200 users twice each through injected faults.

The run takes about three and a half minutes, and a second process reads
pages all the while. At the end every session the sandbox sent in a
complete 200 response is stored exactly once, and every user has recovered
by itself. The resident memory of the cluster's worker processes has grown
by at most 10% since warm-up (every user polled once).

Runs in the SQLite pass of scripts/test only (marker ``soak``); run it alone
with ``.venv/bin/pytest -m soak``.
"""

import json
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.utils import timezone
from django_q.models import OrmQ, Schedule

from roundtable_sync.models import (
    AccountState,
    PollOutcome,
    PollRecord,
    Session,
    WatchedUser,
)
from roundtable_sync.sandbox import data as sandbox_data
from roundtable_sync.tasks import DISPATCH_SCHEDULE_NAME
from tests.test_cluster import database_url, start_cluster, stop_cluster
from tests.test_cluster_faults import create_schedule, wait_for

pytestmark = [
    pytest.mark.process,
    pytest.mark.soak,
    pytest.mark.django_db(transaction=True),
]

USERS = 200
# The waits of faulted polls are sleeps, not CPU work, so more workers than
# cores shorten the run without loading the machine.
WORKERS = 12
MAX_ATTEMPTS = 3
# Bounds of the three phases. The scheduler first runs about 30 s after the
# cluster starts and then about every minute, and a user is due 60 s after
# its last poll, so the second polls follow the next two dispatches. With
# another test suite running on the same two cores, warm-up (every user
# polled once) took 73-96 s from the cluster start and the cycle (every user
# polled again) 114-122 s more. The rest is headroom.
WARM_UP_SECONDS = 150
CYCLE_SECONDS = 180
DRAIN_SECONDS = 90
READER_MAX_SECONDS = WARM_UP_SECONDS + CYCLE_SECONDS + DRAIN_SECONDS
# Seconds between two armings of the faults, and between two memory samples.
REARM_SECONDS = 10
MAX_RSS_GROWTH = 0.10
# Sandbox time runs this many times faster than real time, so users get new
# sessions, live sessions change score and old ones leave the newest 100.
SANDBOX_SPEED = 60
# The sandbox shows each user's sessions of this many days instead of 120.
# A first poll stores up to 100 sessions at about 0.7 s of CPU. With the
# full history the 200 first polls alone took over two minutes on a loaded
# two-core machine. Seven days still fill the newest 100 of 20 users.
SANDBOX_HISTORY_DAYS = 7
READER = "soak-reader"


class FastClock:
    """A sandbox clock that starts at ``start`` and runs ``speed`` times fast."""

    def __init__(self, start, speed):
        self.start = start
        self.speed = speed
        self.started = time.monotonic()

    def __call__(self):
        elapsed = time.monotonic() - self.started
        return self.start + timedelta(seconds=elapsed * self.speed)


def fault_for(number, first):
    """Return (kind, parameters) of user ``number``'s fault, or None.

    The client retries each fault but the last, and the poll succeeds. The
    slow response (2 s) stays well inside ROUNDTABLE_READ_TIMEOUT. The last
    fault fails every attempt of one poll, so only the first arming gives it
    and the user's next poll must recover on its own.
    """
    kind = number % 10
    if kind == 0:
        return "rate_limit", {"retry_after": 1, "count": 1}
    if kind == 1:
        return "server_error", {"count": MAX_ATTEMPTS - 1}
    if kind == 2:
        return "truncated", {"count": 1}
    if kind == 3:
        return "slow", {"delay": 2, "count": 1}
    if kind == 4 and first:
        return "server_error", {"count": MAX_ATTEMPTS}
    return None


def arm_faults(sandbox, user_ids, first=False):
    """Give faults to the users that have none left and no poll in flight.

    A user is claimed from dispatch until its poll records an outcome, so
    skipping claimed users keeps a poll's retries from meeting a fresh fault.
    Otherwise 429s could use up its attempts and pause the whole account.
    Returns how many faults were added.
    """
    armed = {rule["user_id"] for rule in sandbox.faults.list()}
    in_flight = set(
        WatchedUser.objects.filter(claim_token__isnull=False).values_list(
            "user_id", flat=True
        )
    )
    added = 0
    for number, user_id in enumerate(user_ids):
        fault = fault_for(number, first)
        if fault is None or user_id in armed or user_id in in_flight:
            continue
        kind, params = fault
        sandbox.faults.add(kind, user_id=user_id, **params)
        added += 1
    return added


def _stat_fields(pid):
    """Return the fields of /proc/PID/stat after the command name, or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    return stat[stat.rfind(b")") + 2 :].split()


def _children(pid):
    """Return the child PIDs of ``pid`` in the order they started."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(entry.name)
        # Fields 4 and 22 of stat(5): parent PID and start time.
        if fields is not None and int(fields[1]) == pid:
            found.append((int(fields[19]), int(entry.name)))
    return [child for _, child in sorted(found)]


def worker_pids(cluster_pid):
    """Return the PIDs of the cluster's django-q2 worker processes.

    The qcluster process forks one sentinel, and the sentinel forks the
    workers first, then the monitor and the pusher (django-q2 1.11,
    Sentinel.spawn_cluster).
    """
    sentinels = _children(cluster_pid)
    assert len(sentinels) == 1, sentinels
    return _children(sentinels[0])[:-2]


def rss_kib(pids):
    """Return the summed VmRSS of ``pids``, in KiB."""
    total = 0
    for pid in pids:
        status = Path(f"/proc/{pid}/status").read_text()
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total


def start_reader(seconds, log_path):
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "dashboard.settings",
        "DJANGO_DEBUG": "1",
        "DATABASE_URL": database_url(),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "tests.page_reader", str(seconds), READER],
        cwd=Path(settings.BASE_DIR),
        env=env,
        stdout=subprocess.PIPE,
        stderr=log_path.open("w"),
        text=True,
    )


def test_soak_loses_nothing_and_keeps_memory(sandbox, tmp_path, monkeypatch):
    if not Path("/proc/self/status").exists():
        pytest.skip("reads resident memory from /proc")
    # The sandbox serves from a thread of this process.
    history = timedelta(days=SANDBOX_HISTORY_DAYS)
    monkeypatch.setattr(
        sandbox_data, "_HISTORY_MS", history // timedelta(milliseconds=1)
    )
    # Sandbox time stays more than an hour behind real time, so no session
    # starts in the dashboard's future.
    sandbox_span = timedelta(seconds=READER_MAX_SECONDS * SANDBOX_SPEED)
    sandbox.clock = FastClock(
        timezone.now() - sandbox_span - timedelta(hours=1), SANDBOX_SPEED
    )
    create_schedule()
    get_user_model().objects.create_user(READER, password="unused")
    user_ids = [f"soak-{number:03d}" for number in range(USERS)]
    WatchedUser.objects.bulk_create(
        WatchedUser(user_id=user_id, next_poll_at=timezone.now())
        for user_id in user_ids
    )
    faults_added = arm_faults(sandbox, user_ids, first=True)
    log_path = tmp_path / "qcluster.log"
    started = time.monotonic()
    cluster = start_cluster(
        sandbox,
        log_path,
        {
            "ROUNDTABLE_POLL_INTERVAL": "60",
            "ROUNDTABLE_WORKERS": str(WORKERS),
            "ROUNDTABLE_MAX_ATTEMPTS": str(MAX_ATTEMPTS),
        },
    )
    reader = start_reader(READER_MAX_SECONDS, tmp_path / "reader.log")
    try:
        polled = WatchedUser.objects.exclude(last_poll_outcome="")
        warmed = wait_for(lambda: polled.count() == USERS, WARM_UP_SECONDS, cluster)
        warmed_at = timezone.now()
        warm_seconds = time.monotonic() - started
        workers = worker_pids(cluster.pid)
        warm_rss = rss_kib(workers)

        # One more cycle: every user polled again, meeting fresh faults.
        peak_rss = warm_rss
        stale = WatchedUser.objects.filter(last_polled_at__lt=warmed_at)
        cycle_ends = time.monotonic() + CYCLE_SECONDS
        while warmed and stale.exists() and time.monotonic() < cycle_ends:
            faults_added += arm_faults(sandbox, user_ids)
            if not wait_for(lambda: not stale.exists(), REARM_SECONDS, cluster):
                peak_rss = max(peak_rss, rss_kib(workers))
        repolled = not stale.exists()
        cycle_seconds = time.monotonic() - started - warm_seconds

        # Let the queued polls finish with no new dispatch, then stop.
        Schedule.objects.filter(name=DISPATCH_SCHEDULE_NAME).delete()
        in_flight = WatchedUser.objects.filter(claim_token__isnull=False)
        quiet = wait_for(
            lambda: not OrmQ.objects.exists() and not in_flight.exists(),
            DRAIN_SECONDS,
            cluster,
        )
        end_workers = worker_pids(cluster.pid)
        end_rss = rss_kib(workers)
        peak_rss = max(peak_rss, end_rss)
    finally:
        reader.send_signal(signal.SIGTERM)
        returncode = stop_cluster(cluster)
        reader_output, _ = reader.communicate(timeout=60)
    total_seconds = time.monotonic() - started
    reader_result = json.loads(reader_output or "{}")
    served = sandbox.served.as_dict()
    faults_applied = faults_added - len(sandbox.faults.list())
    growth = peak_rss / warm_rss - 1 if warmed else 0.0
    print(  # noqa: T201
        f"soak: warm-up {warm_seconds:.0f} s, cycle {cycle_seconds:.0f} s, "
        f"total {total_seconds:.0f} s; worker RSS {warm_rss} KiB after warm-up, "
        f"peak {peak_rss} KiB ({growth:+.1%}), end {end_rss} KiB; "
        f"{len(served['sessions'])} sessions served in "
        f"{served['responses']} complete responses; {faults_applied} faults; "
        f"{reader_result.get('requests')} page requests"
    )

    log = log_path.read_text()
    tail = log[-5000:]
    assert warmed, f"not every user polled in {WARM_UP_SECONDS} s\n{tail}"
    assert repolled, f"not every user polled again in {CYCLE_SECONDS} s\n{tail}"
    assert quiet, f"polls still queued or running after the run\n{tail}"
    assert returncode == 0, tail
    reader_log = (tmp_path / "reader.log").read_text()[-5000:]
    assert reader.returncode == 0, f"{reader_output}\n{reader_log}"
    assert reader_result["requests"] > 0

    # Nothing lost, nothing stored twice.
    assert served["complete"]
    stored = list(Session.objects.values_list("session_id", flat=True))
    assert len(stored) == len(set(stored))
    assert set(served["sessions"]) - set(stored) == set()
    assert set(stored) - set(served["sessions"]) == set()
    # Each complete response was stored by one poll, and each user synced twice
    # but for the polls failed on purpose.
    synced_polls = PollRecord.objects.filter(outcome=PollOutcome.SYNCED).count()
    assert served["responses"] == synced_polls
    assert synced_polls >= USERS * 2 - USERS // 10

    # The faults happened, and every user recovered from them by itself.
    assert faults_applied >= USERS // 2
    assert PollRecord.objects.filter(outcome=PollOutcome.FAILED).exists()
    not_synced = WatchedUser.objects.exclude(last_poll_outcome=PollOutcome.SYNCED)
    assert list(not_synced.values_list("user_id", "last_poll_error")) == []
    assert AccountState.load().pause_reason == ""

    # The same workers ran throughout, so their memory is comparable.
    assert len(workers) == WORKERS, workers
    assert end_workers == workers
    assert growth <= MAX_RSS_GROWTH, (warm_rss, peak_rss)
