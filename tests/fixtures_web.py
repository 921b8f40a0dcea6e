"""Fixtures shared by the web page tests, imported explicitly by each module.

Each fixture function has a ``_fixture`` suffix and sets ``name=``, so a test
argument named after the fixture does not shadow the imported function.
"""

import hashlib
from datetime import UTC, datetime, timedelta
from unittest import mock

import pytest
from django.contrib.auth.models import Group
from django.test import Client

from roundtable_sync import tasks
from roundtable_sync.models import Session, SessionTimeSource, WatchedUser

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


@pytest.fixture(name="frozen_now")
def frozen_now_fixture(time_machine):
    """Stop the clock at NOW for the whole test."""
    time_machine.move_to(NOW, tick=False)
    return NOW


@pytest.fixture(name="analyst")
def analyst_fixture(django_user_model):
    """A signed-in user in the analysts group: may act and export."""
    user = django_user_model.objects.create_user("analyst", password="unused")
    Group.objects.get(name="analysts").user_set.add(user)
    return user


@pytest.fixture(name="analyst_client")
def analyst_client_fixture(analyst, frozen_now):
    client = Client()
    client.force_login(analyst)
    return client


@pytest.fixture(name="viewer")
def viewer_fixture(django_user_model):
    """A signed-in user in the viewers group: may only read."""
    user = django_user_model.objects.create_user("viewer", password="unused")
    Group.objects.get(name="viewers").user_set.add(user)
    return user


@pytest.fixture(name="viewer_client")
def viewer_client_fixture(viewer, frozen_now):
    client = Client()
    client.force_login(viewer)
    return client


@pytest.fixture(name="anonymous_client")
def anonymous_client_fixture(frozen_now):
    return Client()


@pytest.fixture(name="active_user")
def active_user_fixture(analyst, frozen_now):
    return WatchedUser.objects.create(
        user_id="user-active",
        note="Flagged by support",
        added_by=analyst,
        added_at=NOW - timedelta(days=2),
        next_poll_at=NOW + timedelta(minutes=3),
        last_polled_at=NOW - timedelta(minutes=2),
        last_poll_outcome="failed",
        last_poll_error="The API returned HTTP 503.",
    )


@pytest.fixture(name="paused_user")
def paused_user_fixture(frozen_now):
    return WatchedUser.objects.create(
        user_id="user-paused",
        added_at=NOW - timedelta(days=1),
        is_active=False,
        next_poll_at=NOW - timedelta(hours=1),
    )


@pytest.fixture(name="queued_polls")
def queued_polls_fixture():
    """Replace django-q2's async_task, so queued polls are recorded, not run."""
    with mock.patch.object(tasks, "async_task", autospec=True) as async_task:
        yield async_task


def make_session(user_id, session_id, session_time, **fields):
    """Store one session row directly, with the fields a page reads."""
    raw = {"session_id": session_id}
    defaults = {
        "raw": raw,
        "raw_digest": hashlib.sha256(session_id.encode()).hexdigest(),
        "first_seen_at": session_time,
        "changed_at": session_time,
        "session_time_source": SessionTimeSource.USER_LOGS,
        "risk_score": 20,
        "recommended_action": "Auto-accept",
        "tags": [],
    }
    defaults.update(fields)
    return Session.objects.create(
        session_id=session_id,
        user_id=user_id,
        session_time=session_time,
        **defaults,
    )
