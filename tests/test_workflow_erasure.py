"""Erasure on request: the function, the command and the confirmation page."""

import io
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse
from pytest_django.asserts import assertContains, assertRedirects

from alerts.models import Alert, AlertRule, DetectedCheck
from reviews.decisions import record_decision
from roundtable_sync.models import (
    CoverageGap,
    PollRecord,
    Session,
    SessionCheck,
    WatchedUser,
)
from tests.fixtures_web import (  # noqa: F401
    NOW,
    analyst_client_fixture,
    analyst_fixture,
    anonymous_client_fixture,
    frozen_now_fixture,
    make_session,
    viewer_client_fixture,
    viewer_fixture,
)
from workflow import audit
from workflow.erasure import erase_user
from workflow.models import AuditEvent
from workflow.signals import user_erased

pytestmark = pytest.mark.django_db

ERASE = reverse("workflow:erase_user")
HOSTILE = '<script>alert(1)</script>"><img src=x onerror=alert(1)>'


def store_user_data(user_id, watched=True):
    if watched:
        WatchedUser.objects.create(user_id=user_id)
    session = make_session(user_id, f"{user_id}-s1", NOW)
    SessionCheck.objects.create(
        session=session, group="device", name="vpn", status="Detected"
    )
    make_session(user_id, f"{user_id}-s2", NOW - timedelta(days=1))
    PollRecord.objects.create(
        user_id=user_id, started_at=NOW, finished_at=NOW, outcome="synced"
    )
    CoverageGap.objects.create(user_id=user_id, detected_at=NOW)


def stored_rows(user_id):
    return (
        Session.objects.filter(user_id=user_id).count()
        + PollRecord.objects.filter(user_id=user_id).count()
        + CoverageGap.objects.filter(user_id=user_id).count()
        + WatchedUser.objects.filter(user_id=user_id).count()
    )


@pytest.fixture(name="receiver")
def receiver_fixture():
    """Connect a receiver standing in for another app; yield its calls."""
    calls = []

    def delete_alerts(sender, user_id, **kwargs):
        calls.append(user_id)
        return {"alerts": 4}

    user_erased.connect(delete_alerts)
    yield calls
    user_erased.disconnect(delete_alerts)


# The function


def test_erases_everything_of_the_user(frozen_now):
    store_user_data("alice")
    store_user_data("bob")

    erase_user("alice", audit.COMMAND_LINE)

    assert stored_rows("alice") == 0
    assert not SessionCheck.objects.filter(session__user_id="alice").exists()
    assert stored_rows("bob") == 5


def test_erases_user_no_longer_watched(frozen_now):
    store_user_data("alice", watched=False)

    counts = erase_user("alice", audit.COMMAND_LINE)

    assert stored_rows("alice") == 0
    assert counts["watched_users"] == 0
    assert counts["sessions"] == 2


def test_returns_counts(frozen_now):
    store_user_data("alice")

    counts = erase_user("alice", audit.COMMAND_LINE)

    assert counts == {
        "sessions": 2,
        "session_related": 1,
        "poll_records": 1,
        "coverage_gaps": 1,
        "alerts_and_deliveries": 0,
        "detected_checks": 0,
        "user_decisions": 0,
        "watched_users": 1,
    }


def test_audits_user_id_and_counts_only(frozen_now):
    store_user_data("alice")

    erase_user("alice", audit.COMMAND_LINE)

    event = AuditEvent.objects.get()
    assert event.action == "user_erased"
    assert event.target == "alice"
    assert event.details["sessions"] == 2
    assert "alice-s1" not in str(event.details)


def test_signal_receivers_run_and_report_counts(frozen_now, receiver):
    store_user_data("alice")

    counts = erase_user("alice", audit.COMMAND_LINE)

    assert receiver == ["alice"]
    assert counts["alerts"] == 4
    assert AuditEvent.objects.get().details["alerts"] == 4


def test_failing_receiver_rolls_back_erasure(frozen_now):
    store_user_data("alice")

    def fail(sender, user_id, **kwargs):
        raise RuntimeError("receiver failed")

    user_erased.connect(fail)
    try:
        with pytest.raises(RuntimeError):
            erase_user("alice", audit.COMMAND_LINE)
    finally:
        user_erased.disconnect(fail)

    assert stored_rows("alice") == 5
    assert not AuditEvent.objects.exists()


# The command


def test_command_erases_without_input(frozen_now):
    store_user_data("alice")
    stdout = io.StringIO()

    call_command("erase_user", "alice", "--no-input", stdout=stdout)

    assert stored_rows("alice") == 0
    assert "sessions\t2" in stdout.getvalue()
    assert AuditEvent.objects.get().actor_label == "command line"


def test_command_asks_for_confirmation(frozen_now, monkeypatch):
    store_user_data("alice")
    monkeypatch.setattr("builtins.input", lambda prompt: "yes")

    call_command("erase_user", "alice", stdout=io.StringIO())

    assert stored_rows("alice") == 0


def test_command_cancelled_erases_nothing(frozen_now, monkeypatch):
    store_user_data("alice")
    monkeypatch.setattr("builtins.input", lambda prompt: "no")

    with pytest.raises(CommandError, match="cancelled"):
        call_command("erase_user", "alice")

    assert stored_rows("alice") == 5
    assert not AuditEvent.objects.exists()


def test_command_with_closed_stdin_erases_nothing(frozen_now, monkeypatch):
    store_user_data("alice")

    def closed(prompt):
        raise EOFError

    monkeypatch.setattr("builtins.input", closed)

    with pytest.raises(CommandError, match="--no-input") as raised:
        call_command("erase_user", "alice")

    assert raised.value.returncode == 2
    assert stored_rows("alice") == 5


def test_command_rejects_invalid_id():
    with pytest.raises(CommandError) as error:
        call_command("erase_user", "  ", "--no-input")

    assert error.value.returncode == 2
    assert not AuditEvent.objects.exists()


def test_command_trims_the_id(frozen_now):
    store_user_data("alice")

    call_command("erase_user", " alice ", "--no-input", stdout=io.StringIO())

    assert stored_rows("alice") == 0


# The page


def test_page_shows_counts(analyst_client):
    store_user_data("alice")

    response = analyst_client.get(ERASE, {"user": "alice"})

    assert response.context["counts"]["sessions"] == 2
    assert response.context["counts"]["poll_records"] == 1
    assertContains(response, "2 stored sessions")
    assert stored_rows("alice") == 5


def test_post_erases_and_audits(analyst_client):
    store_user_data("alice")

    response = analyst_client.post(ERASE, {"user": "alice"})

    assertRedirects(response, reverse("watchlist"), fetch_redirect_response=False)
    assert stored_rows("alice") == 0
    event = AuditEvent.objects.get()
    assert event.actor_label == "analyst"
    assert event.target == "alice"


def test_page_works_for_unwatched_user(analyst_client):
    store_user_data("alice", watched=False)

    analyst_client.post(ERASE, {"user": "alice"})

    assert stored_rows("alice") == 0


def test_missing_user_is_400(analyst_client):
    response = analyst_client.get(ERASE)

    assert response.status_code == 400


def test_viewer_cannot_erase(viewer_client):
    store_user_data("alice")

    get = viewer_client.get(ERASE, {"user": "alice"})
    post = viewer_client.post(ERASE, {"user": "alice"})

    assert get.status_code == 403
    assert post.status_code == 403
    assert stored_rows("alice") == 5


def test_anonymous_redirected_to_login(anonymous_client):
    store_user_data("alice")

    response = anonymous_client.post(ERASE, {"user": "alice"})

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))
    assert stored_rows("alice") == 5


def test_page_escapes_hostile_id(analyst_client):
    store_user_data(HOSTILE)

    response = analyst_client.get(ERASE, {"user": HOSTILE})

    html = response.content.decode()
    assert "<script>alert(1)" not in html
    assert "<img src=x" not in html


def test_erasure_reaches_alerts_and_user_decisions(frozen_now, django_user_model):
    store_user_data("alice")
    analyst = django_user_model.objects.create_user("analyst")
    record_decision(analyst, "escalated", "", user_id="alice")
    rule = AlertRule.objects.first()
    Alert.objects.create(
        rule=rule,
        kind=rule.kind,
        user_id="alice",
        dedupe_key="k",
        title="t",
        created_at=frozen_now,
    )
    DetectedCheck.objects.create(
        user_id="alice", check_name="vpn", first_seen_at=frozen_now
    )

    counts = erase_user("alice", audit.COMMAND_LINE)

    assert counts["user_decisions"] == 1
    assert counts["alerts_and_deliveries"] == 1
    assert counts["detected_checks"] == 1
    assert not Alert.objects.filter(user_id="alice").exists()
