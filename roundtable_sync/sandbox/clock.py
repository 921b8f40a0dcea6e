"""Clocks for the sandbox: the real UTC time, or a fixed time tests move."""

from datetime import UTC, datetime


def utc_now():
    return datetime.now(UTC)


class FixedClock:
    """A clock that returns ``now`` (an aware UTC datetime) until changed."""

    def __init__(self, now):
        self.now = now

    def __call__(self):
        return self.now

    def advance(self, delta):
        self.now += delta
