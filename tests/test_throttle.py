"""The account-wide request limit, ROUNDTABLE_REQUESTS_PER_SECOND."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from django.conf import settings

from roundtable_sync import errors
from roundtable_sync.client import RoundtableClient
from roundtable_sync.models import RequestSlot
from roundtable_sync.throttle import JITTER_ALLOWANCE, LATE_START, RequestThrottle
from tests.test_cluster import database_url


class FakeClock:
    def __init__(self, now=1_000_000.0):
        self.now = now

    def __call__(self):
        return self.now


@pytest.mark.django_db
def test_reservations_spaced_by_rate():
    clock = FakeClock()
    throttle = RequestThrottle(10, clock=clock)
    spacing = (1 + JITTER_ALLOWANCE) / 10

    waits = [throttle.reserve() for _ in range(4)]

    assert waits == pytest.approx([0.0, spacing, 2 * spacing, 3 * spacing])


@pytest.mark.django_db
def test_idle_throttle_reserves_now():
    clock = FakeClock()
    throttle = RequestThrottle(10, clock=clock)
    throttle.reserve()
    throttle.reserve()

    clock.now += 5

    assert throttle.reserve() == 0.0
    assert RequestSlot.objects.get().reserved_until == clock.now


@pytest.mark.django_db
def test_two_throttles_share_slots():
    # Two throttles stand for two processes: the row, not the object, counts.
    clock = FakeClock()
    first = RequestThrottle(4, clock=clock)
    second = RequestThrottle(4, clock=clock)

    first.reserve()

    assert second.reserve() == pytest.approx((1 + JITTER_ALLOWANCE) / 4)


def test_zero_rate_needs_no_database():
    # Without the django_db mark, any query would fail this test.
    assert RequestThrottle(0).reserve() == 0.0


def test_negative_rate_rejected():
    with pytest.raises(ValueError, match="rate is -1"):
        RequestThrottle(-1)


class CountingThrottle:
    def __init__(self, wait=0.0):
        self.wait = wait
        self.calls = 0

    def reserve(self):
        self.calls += 1
        return self.wait

    def missed(self):
        return False


def test_client_reserves_before_each_attempt(sandbox):
    sandbox.faults.add("server_error", count=2)
    throttle = CountingThrottle(wait=0.25)
    sleeps = []
    client = RoundtableClient(
        sandbox.key, sandbox.url, throttle=throttle, sleep=sleeps.append
    )

    client.user_sessions("user-1")

    assert throttle.calls == 3
    assert sleeps.count(0.25) == 3


@pytest.mark.django_db
def test_late_wakeup_reserves_again(sandbox):
    clock = FakeClock()
    throttle = RequestThrottle(10, clock=clock)
    throttle.reserve()  # Another request has the current turn.
    sleeps = []

    def oversleep(seconds):
        # The first sleep overruns by 200 ms, as on a busy machine.
        sleeps.append(seconds)
        clock.now += seconds + (0.2 if len(sleeps) == 1 else 0.0)

    client = RoundtableClient(
        sandbox.key, sandbox.url, throttle=throttle, sleep=oversleep
    )

    client.user_sessions("user-1")

    assert sleeps == [pytest.approx((1 + JITTER_ALLOWANCE) / 10)]
    # The second reservation starts at the late wake-up time, not at the
    # missed turn, so the request went out in a turn of its own.
    assert RequestSlot.objects.get().reserved_until == pytest.approx(clock.now)
    assert len(sandbox.requests) == 1


@pytest.mark.django_db
def test_timely_wakeup_keeps_turn():
    clock = FakeClock()
    throttle = RequestThrottle(10, clock=clock)
    throttle.reserve()
    wait = throttle.reserve()

    clock.now += wait + LATE_START / 2

    assert not throttle.missed()
    clock.now += LATE_START
    assert throttle.missed()


def test_client_wait_past_deadline_raises(sandbox):
    throttle = CountingThrottle(wait=120.0)
    client = RoundtableClient(
        sandbox.key, sandbox.url, throttle=throttle, deadline=60.0
    )

    with pytest.raises(errors.ApiTimeoutError, match="ROUNDTABLE_REQUESTS_PER_SECOND"):
        client.user_sessions("user-1")
    assert sandbox.requests == []


def test_from_settings_uses_configured_rate(settings):
    settings.ROUNDTABLE_REQUESTS_PER_SECOND = 7.5

    client = RoundtableClient.from_settings()

    assert client.throttle.rate == 7.5


# Each process sends REQUESTS_PER_PROCESS report requests as fast as its
# client lets it. The sandbox returns 404 quickly, so only the throttle
# spaces them.
REQUESTS_PER_PROCESS = 15
RATE = 12
REQUESTER = textwrap.dedent(
    """
    import time
    import django
    django.setup()
    from roundtable_sync.client import RoundtableClient
    from roundtable_sync.errors import NotFoundError
    with RoundtableClient.from_settings() as client:
        reserve = client.throttle.reserve
        def reserve_and_print():
            now = time.time()
            wait = reserve()
            print(now + wait, flush=True)
            return wait
        client.throttle.reserve = reserve_and_print
        missed = client.throttle.missed
        def missed_and_print():
            late = missed()
            if late:
                print("missed", flush=True)
            return late
        client.throttle.missed = missed_and_print
        for number in range({count}):
            try:
                client.session_report(f"missing-{{number}}")
            except NotFoundError:
                pass
    """
)


def used_slots(output):
    """Return the reserved starts a process used, from the requester's lines.

    A request that wakes up too late gives its start up ("missed") and
    reserves another one.
    """
    slots = []
    for line in output.split():
        if line == "missed":
            slots.pop()
        else:
            slots.append(float(line))
    return slots


def max_starts_in_one_second(times):
    times = sorted(times)
    busiest = 0
    first = 0
    for last, moment in enumerate(times):
        while moment - times[first] >= 1.0:
            first += 1
        busiest = max(busiest, last - first + 1)
    return busiest


@pytest.mark.process
@pytest.mark.django_db(transaction=True)
def test_limit_holds_across_processes(sandbox):
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "dashboard.settings",
        "DJANGO_DEBUG": "1",
        "DATABASE_URL": database_url(),
        "ROUNDTABLE_API_URL": sandbox.url,
        "ROUNDTABLE_API_KEY": sandbox.key,
        "ROUNDTABLE_REQUESTS_PER_SECOND": str(RATE),
        "LOG_LEVEL": "WARNING",
    }
    script = REQUESTER.format(count=REQUESTS_PER_PROCESS)
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", script],
            cwd=Path(settings.BASE_DIR),
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    outputs = [process.communicate(timeout=60) for process in processes]

    assert [process.returncode for process in processes] == [0, 0, 0], outputs
    slots = sorted(slot for out, _ in outputs for slot in used_slots(out))
    arrivals = sorted(request.received_at for request in sandbox.requests)
    assert len(slots) == 3 * REQUESTS_PER_PROCESS
    assert len(arrivals) == 3 * REQUESTS_PER_PROCESS
    # The reserved start times, which the throttle controls, never put more
    # than RATE requests in one second. Arrival times also carry this
    # machine's scheduling delay, so they are only checked to come after the
    # slots: the n-th request to arrive came no earlier than the n-th slot.
    assert max_starts_in_one_second(slots) <= RATE
    assert all(
        arrival >= slot - 0.005 for arrival, slot in zip(arrivals, slots, strict=True)
    )
    # 45 starts 1.05 / 12 s apart take at least 44 gaps.
    assert slots[-1] - slots[0] >= 44 * (1 + JITTER_ALLOWANCE) / RATE - 0.001


def test_window_count_sees_bursts():
    assert max_starts_in_one_second([0.0, 0.1, 0.2, 1.5]) == 3
    assert max_starts_in_one_second([0.0, 1.0, 2.0]) == 1
