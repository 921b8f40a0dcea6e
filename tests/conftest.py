from datetime import UTC, datetime

import pytest

from roundtable_sync.sandbox import FixedClock, SandboxServer

# --- Roundtable sandbox ------------------------------------------------------
# A SandboxServer on a free loopback port. Tests move its time with
# ``sandbox.clock.now = ...`` or ``sandbox.clock.advance(timedelta(...))``.

SANDBOX_KEY = "sandbox-key"
SANDBOX_NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


@pytest.fixture
def sandbox():
    server = SandboxServer(key=SANDBOX_KEY, port=0, clock=FixedClock(SANDBOX_NOW))
    server.start()
    yield server
    server.stop()


# --- end of Roundtable sandbox -----------------------------------------------


# --- Caches -------------------------------------------------------------------
# The thresholds in force are cached per process; each test starts afresh.


@pytest.fixture(autouse=True)
def _clear_cache():
    from django.core.cache import cache

    cache.clear()
    yield
    cache.clear()
