"""Fetch: poll many watched users through real django-q2 clusters.

Run alone with ``python -m bench.fetch [--size small|full] [--runs N]``.

Each run marks every user due, calls the dispatcher once (as the per-minute
schedule does) and times until every user's poll is recorded. The clusters
run ``manage.py qcluster`` against a database of their own (a temporary
SQLite file, or a ``bench_fetch_<pid>`` database on the PostgreSQL server
that DATABASE_URL names), so the bench's data set is left untouched. The
sandbox responds to every request after SANDBOX_LATENCY seconds and records when
each request arrived.

Two figures:

- poll time at ROUNDTABLE_WORKERS=2 with a request limit of 100/s, which
  2 workers cannot reach at 50 ms a request: the target is 1.5 x users x
  50 ms / workers. The users were polled once before, untimed, so a run
  measures the steady state of re-polling stored users.
- the most requests that arrived at the sandbox in any one second while two
  clusters of 4 workers each polled under a limit of 20/s: the target is at
  most 20. Without the limit, 8 workers would send about 160 a second.

The clusters use django-q2's database broker unless BENCH_BROKER_URL names a
Redis database (``redis://127.0.0.1:6379/11``), as production on PostgreSQL
would. DATABASE_CONN_MAX_AGE passes through to them.

Event fetching is off (ROUNDTABLE_EVENTS_PER_MINUTE=0) so that only user
polls reach the sandbox.
"""

import argparse
import json
import os
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

PROJECT_DIR = Path(__file__).resolve().parent.parent
SANDBOX_LATENCY = 0.05
SIZES = {"small": 100, "full": 1000}
TIMED_WORKERS = 2
TIMED_RATE = 100
LIMIT_CLUSTERS = 2
LIMIT_WORKERS = 4
LIMIT_RATE = 20
# The limit scenario polls fewer users: it only needs to saturate the limit.
LIMIT_USERS = {"small": 60, "full": 200}
USER_PREFIX = "fetch-user-"


# --- The bench process ------------------------------------------------------


def measure(runs, scale):
    """Return the fetch rows: poll time, and the requests-per-second check."""
    users = SIZES[scale]
    with BenchDatabase("fetch") as database, CachedSandbox() as sandbox:
        database.run_child("setup", users)
        broker_url = os.environ.get("BENCH_BROKER_URL", "")
        with Clusters(
            database, sandbox, 1, TIMED_WORKERS, TIMED_RATE, broker_url
        ) as clusters:
            clusters.run_round(users)  # first poll, untimed
            seconds = [clusters.run_round(users) for _ in range(runs)]
        ideal = users * SANDBOX_LATENCY / TIMED_WORKERS
        limit = 1.5 * ideal

        limit_users = LIMIT_USERS[scale]
        database.run_child("setup", limit_users)
        busiest = []
        with Clusters(
            database, sandbox, LIMIT_CLUSTERS, LIMIT_WORKERS, LIMIT_RATE, broker_url
        ) as clusters:
            clusters.run_round(limit_users)  # first poll, untimed
            for _ in range(runs):
                sandbox.requests.clear()
                clusters.run_round(limit_users)
                starts = [request.received_at for request in sandbox.requests]
                busiest.append(max_starts_in_one_second(starts))
    return [
        result_row(
            f"Fetch: poll {users} users, {TIMED_WORKERS} workers, "
            f"{SANDBOX_LATENCY * 1000:g} ms latency",
            "s",
            seconds,
            target=f"<= {limit:.1f} s (1.5 x {ideal:.1f} s)",
            met=statistics.median(seconds) <= limit and max(seconds) <= limit,
        ),
        result_row(
            f"Fetch: busiest second, {LIMIT_CLUSTERS} clusters x "
            f"{LIMIT_WORKERS} workers, {limit_users} users",
            "requests",
            busiest,
            target=f"<= {LIMIT_RATE} (ROUNDTABLE_REQUESTS_PER_SECOND)",
            met=max(busiest) <= LIMIT_RATE,
        ),
    ]


def result_row(name, unit, values, target, met):
    return {
        "name": name,
        "unit": unit,
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "baseline_median": None,
        "ratio": None,
        "target": target,
        "met": met,
    }


def max_starts_in_one_second(times):
    """Return the most of ``times`` (seconds) inside any window of 1 s."""
    times = sorted(times)
    busiest = 0
    first = 0
    for last, moment in enumerate(times):
        while moment - times[first] >= 1.0:
            first += 1
        busiest = max(busiest, last - first + 1)
    return busiest


class CachedSandbox:
    """The product's sandbox with a fixed clock and rendered payloads reused.

    The sandbox spends about 25 ms of CPU building one user's 100 sessions,
    on the same cores as the workers under test; the real API does that on
    its own servers. With the clock fixed, a user's payload never changes,
    so it is rendered once per user and reused for later requests.
    """

    def __enter__(self):
        from datetime import UTC, datetime

        from roundtable_sync.sandbox import FixedClock, SandboxServer, api

        self._api = api
        self._render = api.render
        rendered = {}

        def render(route, now, known_users):
            if route.endpoint != "user_sessions":
                return self._render(route, now, known_users)
            key = (route, now)
            if key not in rendered:
                rendered[key] = self._render(route, now, known_users)
            return rendered[key]

        api.render = render
        clock = FixedClock(datetime.now(UTC).replace(microsecond=0))
        self.server = SandboxServer(
            key="sandbox-key", port=0, latency=SANDBOX_LATENCY, clock=clock
        )
        self.server.start()
        return self.server

    def __exit__(self, *exc_info):
        self.server.stop()
        self._api.render = self._render


class BenchDatabase:
    """A migrated database for the bench's clusters, dropped afterwards."""

    def __init__(self, name):
        self.name = f"bench_{name}_{os.getpid()}"
        self._directory = None
        self._admin_url = None

    def __enter__(self):
        source = os.environ.get("BENCH_DATABASE_URL") or os.environ.get(
            "DATABASE_URL", ""
        )
        if urlsplit(source).scheme in ("postgres", "postgresql"):
            self._admin_url = source
            self._postgres(f'CREATE DATABASE "{self.name}"')
            self.url = urlsplit(source)._replace(path=f"/{self.name}").geturl()
        else:
            self._directory = tempfile.TemporaryDirectory(prefix="roundtable-")
            self.url = f"sqlite:///{self._directory.name}/{self.name}.sqlite3"
        self.env = child_env(self.url)
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "--verbosity", "0"],
            cwd=PROJECT_DIR,
            env=self.env,
            check=True,
        )
        return self

    def __exit__(self, *exc_info):
        if self._admin_url:
            self._postgres(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
        if self._directory is not None:
            self._directory.cleanup()

    def _postgres(self, statement):
        import psycopg

        with psycopg.connect(self._admin_url, autocommit=True) as connection:
            connection.execute(statement)

    def run_child(self, action, count, module="bench.fetch", extra_args=(), env=None):
        """Run ``module``'s child action in a new process; return its JSON.

        ``env`` replaces the database's environment, e.g. with a cluster's.
        """
        result = subprocess.run(
            [sys.executable, "-m", module, "--child", action, str(count)]
            + list(extra_args),
            cwd=PROJECT_DIR,
            env=self.env if env is None else env,
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"bench child {action} failed:\n{result.stderr}")
        return json.loads(result.stdout)


def child_env(database_url, **overrides):
    """Return the environment of the product's processes under the bench."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DJANGO_", "ROUNDTABLE_", "BENCH_"))
    }
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "dashboard.settings",
            "DJANGO_DEBUG": "0",
            "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
            "DATABASE_URL": database_url,
            "ROUNDTABLE_EVENTS_PER_MINUTE": "0",
            "LOG_LEVEL": "WARNING",
            "PYTHONPATH": str(PROJECT_DIR),
        }
    )
    env.update(overrides)
    return env


class Clusters:
    """Several ``manage.py qcluster`` processes, stopped on exit."""

    def __init__(self, database, sandbox, count, workers, rate, broker_url=""):
        self._database = database
        self.env = {
            **database.env,
            "ROUNDTABLE_API_URL": sandbox.url,
            "ROUNDTABLE_API_KEY": sandbox.key,
            "ROUNDTABLE_WORKERS": str(workers),
            "ROUNDTABLE_REQUESTS_PER_SECOND": str(rate),
            "ROUNDTABLE_BROKER_URL": broker_url,
        }
        self._count = count
        self.processes = []

    def __enter__(self):
        for _ in range(self._count):
            self.processes.append(
                subprocess.Popen(
                    [sys.executable, "manage.py", "qcluster"],
                    cwd=PROJECT_DIR,
                    env=self.env,
                    stdout=subprocess.DEVNULL,
                    start_new_session=True,
                )
            )
        return self

    def run_round(self, users):
        """Run one timed round of polls (child_round); return its seconds.

        The child gets the clusters' environment: without ROUNDTABLE_API_KEY
        its dispatch_polls would queue nothing, and the round would time the
        wait for the clusters' own per-minute dispatch instead.
        """
        return self._database.run_child("round", users, env=self.env)

    def __exit__(self, *exc_info):
        for process in self.processes:
            process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)


# --- Child processes, with Django set up on the bench's own database --------


def child_setup(users):
    """Replace the watchlist with ``users`` users that are not yet due."""
    from datetime import timedelta

    from django.utils import timezone

    from roundtable_sync.models import WatchedUser

    WatchedUser.objects.all().delete()
    later = timezone.now() + timedelta(days=1)
    WatchedUser.objects.bulk_create(
        WatchedUser(user_id=f"{USER_PREFIX}{number:05d}", next_poll_at=later)
        for number in range(users)
    )
    return users


def child_round(users, timeout=600):
    """Make every user due, dispatch once, and time until all are polled."""
    from django.utils import timezone

    from roundtable_sync.models import WatchedUser
    from roundtable_sync.tasks import dispatch_polls

    started_at = timezone.now()
    WatchedUser.objects.update(next_poll_at=started_at, claim_token=None)
    started = time.perf_counter()
    if not dispatch_polls():
        raise RuntimeError(
            "dispatch_polls queued no poll: check the worker log for the reason "
            "(a missing ROUNDTABLE_API_KEY, an account-wide pause)."
        )
    polled = WatchedUser.objects.filter(last_polled_at__gte=started_at)
    while polled.count() < users:
        if time.perf_counter() - started > timeout:
            raise RuntimeError(f"only {polled.count()} of {users} users polled")
        time.sleep(0.05)
    return time.perf_counter() - started


CHILD_ACTIONS = {"setup": child_setup, "round": child_round}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=SIZES, default="small")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--child", choices=CHILD_ACTIONS, help=argparse.SUPPRESS)
    parser.add_argument("users", nargs="?", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        import django

        django.setup()
        sys.stdout.write(json.dumps(CHILD_ACTIONS[args.child](args.users)) + "\n")
        return 0
    for row in measure(args.runs, args.size):
        sys.stdout.write(json.dumps(row) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
