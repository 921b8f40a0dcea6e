import importlib
from datetime import UTC, datetime

import pytest
from django.apps import apps as django_apps

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


# Data migrations that create rows the product needs: role groups, alert
# rules and django-q2 schedules.
DATA_MIGRATIONS = [
    ("workflow.migrations.0002_role_groups", "create_groups"),
    ("workflow.migrations.0003_retention_schedule", "create_schedule"),
    ("roundtable_sync.migrations.0002_dispatch_schedule", "create_schedule"),
    ("alerts.migrations.0002_default_rules", "create_defaults"),
]


@pytest.fixture
def migration_data(transactional_db):
    """Re-create the rows of the data migrations for a transactional test.

    The flush after each transactional test deletes them. Django's
    serialized_rollback would restore them too, but it collides with the
    content types that the flush of a test without it re-creates.
    """
    for module_name, function_name in DATA_MIGRATIONS:
        create = getattr(importlib.import_module(module_name), function_name)
        create(django_apps, None)
