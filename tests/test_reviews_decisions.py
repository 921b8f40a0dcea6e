import csv
import io
from datetime import timedelta
from urllib.parse import urlencode

import pytest
import time_machine
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from pytest_django.asserts import assertContains, assertNotContains

from reviews.decisions import record_decision
from reviews.models import Decision, DecisionKind
from roundtable_sync.models import WatchedUser
from tests.fixtures_web import (  # noqa: F401
    NOW,
    anonymous_client_fixture,
    frozen_now_fixture,
    make_session,
)
from workflow.models import AuditEvent

pytestmark = pytest.mark.django_db

HOSTILE = [
    "<script>alert(1)</script>",
    '"><img src=x onerror=alert(1)>',
]


@pytest.fixture(name="reviewer")
def reviewer_fixture(django_user_model):
    user = django_user_model.objects.create_user("reviewer", password="unused")
    Group.objects.get(name="analysts").user_set.add(user)
    return user


@pytest.fixture(name="viewer")
def viewer_fixture(django_user_model):
    user = django_user_model.objects.create_user("viewer", password="unused")
    Group.objects.get(name="viewers").user_set.add(user)
    return user


@pytest.fixture(name="reviewer_client")
def reviewer_client_fixture(reviewer, frozen_now):
    client = Client()
    client.force_login(reviewer)
    return client


@pytest.fixture(name="viewer_client")
def viewer_client_fixture(viewer, frozen_now):
    client = Client()
    client.force_login(viewer)
    return client


@pytest.fixture(name="watched")
def watched_fixture(frozen_now):
    return WatchedUser.objects.create(
        user_id="alice", added_at=NOW, next_poll_at=NOW + timedelta(minutes=5)
    )


def detail_url(session_id):
    return f"{reverse('session_detail')}?{urlencode({'id': session_id})}"


def decide_session(client, session_id, kind="confirmed_bot", note=""):
    return client.post(
        reverse("reviews:decide_session"),
        {"session": session_id, "kind": kind, "note": note},
    )


def test_session_decision_is_recorded(reviewer_client, reviewer):
    make_session("alice", "s1", NOW, risk_score=80)

    response = decide_session(reviewer_client, "s1", "confirmed_bot", "typing bot")

    decision = Decision.objects.get()
    assert response.status_code == 302
    assert response["Location"] == detail_url("s1") + "#decisions-heading"
    assert decision.session_id == "s1"
    assert decision.user_id == ""
    assert decision.kind == DecisionKind.CONFIRMED_BOT
    assert decision.note == "typing bot"
    assert decision.decided_by == reviewer
    assert decision.decided_by_label == "reviewer"
    assert decision.decided_at == NOW


def test_session_decision_is_audited(reviewer_client, reviewer):
    make_session("alice", "s1", NOW, risk_score=80)

    decide_session(reviewer_client, "s1", "legitimate")

    event = AuditEvent.objects.get(action="decision_recorded")
    assert event.actor == reviewer
    assert event.target == "session s1"
    assert event.details == {"kind": "legitimate"}


def test_new_decision_keeps_history(reviewer_client, time_machine):
    make_session("alice", "s1", NOW, risk_score=80)
    decide_session(reviewer_client, "s1", "needs_evidence", "first look")
    time_machine.move_to(NOW + timedelta(hours=1), tick=False)

    decide_session(reviewer_client, "s1", "confirmed_bot", "second look")

    notes = list(Decision.objects.values_list("note", flat=True))
    assert notes == ["second look", "first look"]


def test_session_page_shows_history_newest_first(reviewer_client, time_machine):
    make_session("alice", "s1", NOW, risk_score=80)
    decide_session(reviewer_client, "s1", "needs_evidence", "first look")
    time_machine.move_to(NOW + timedelta(hours=1), tick=False)
    decide_session(reviewer_client, "s1", "escalated", "second look")

    response = reviewer_client.get(detail_url("s1"))

    history = response.content.decode().split('id="decisions-heading"')[1]
    assert history.index("second look") < history.index("first look")
    assertContains(response, "2026-03-02 13:00:00 UTC")
    assertContains(response, "reviewer")
    assertContains(response, "decision-escalated")


def test_decision_cannot_be_changed_or_deleted(reviewer):
    session = make_session("alice", "s1", NOW, risk_score=80)
    decision = record_decision(reviewer, "legitimate", "", session=session)
    decision.note = "rewritten"

    with pytest.raises(PermissionError):
        decision.save()
    with pytest.raises(PermissionError):
        decision.delete()


def test_invalid_kind_records_nothing(reviewer_client):
    make_session("alice", "s1", NOW, risk_score=80)

    response = decide_session(reviewer_client, "s1", "banned")

    assert response.status_code == 302
    assert not Decision.objects.exists()
    assert not AuditEvent.objects.filter(action="decision_recorded").exists()


def test_unknown_session_is_404(reviewer_client):
    response = decide_session(reviewer_client, "missing")

    assert response.status_code == 404


def test_user_decision_is_recorded_and_audited(reviewer_client, reviewer, watched):
    url = reverse("reviews:decide_user", args=[watched.pk])

    response = reviewer_client.post(url, {"kind": "escalated", "note": "fraud team"})

    decision = Decision.objects.get()
    event = AuditEvent.objects.get(action="decision_recorded")
    assert response["Location"] == (
        reverse("user_detail", args=[watched.pk]) + "#decisions-heading"
    )
    assert decision.session is None
    assert decision.user_id == "alice"
    assert decision.kind == DecisionKind.ESCALATED
    assert event.target == "user alice"


def test_user_page_shows_user_history(reviewer_client, reviewer, watched):
    record_decision(reviewer, "escalated", "sent to fraud team", user_id="alice")

    response = reviewer_client.get(reverse("user_detail", args=[watched.pk]))

    assertContains(response, "sent to fraud team")
    assertContains(response, reverse("reviews:decide_user", args=[watched.pk]))


def test_viewer_gets_403_on_every_decision_post(viewer_client, watched):
    make_session("alice", "s1", NOW, risk_score=80)
    posts = [
        (reverse("reviews:decide_session"), {"session": "s1", "kind": "legitimate"}),
        (reverse("reviews:decide_user", args=[watched.pk]), {"kind": "legitimate"}),
    ]

    for url, data in posts:
        response = viewer_client.post(url, data)
        assert response.status_code == 403

    assert not Decision.objects.exists()


def test_viewer_reads_history_without_form(viewer_client, reviewer, watched):
    session = make_session("alice", "s1", NOW, risk_score=80)
    record_decision(reviewer, "legitimate", "known customer", session=session)

    response = viewer_client.get(detail_url("s1"))

    assertContains(response, "known customer")
    assertNotContains(response, reverse("reviews:decide_session"))


def test_anonymous_decision_post_redirects_to_login(anonymous_client, watched):
    make_session("alice", "s1", NOW, risk_score=80)
    posts = [
        (reverse("reviews:decide_session"), {"session": "s1", "kind": "legitimate"}),
        (reverse("reviews:decide_user", args=[watched.pk]), {"kind": "legitimate"}),
    ]

    for url, data in posts:
        response = anonymous_client.post(url, data)
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("login"))

    assert not Decision.objects.exists()


def test_decision_get_is_not_allowed(reviewer_client, watched):
    urls = [
        reverse("reviews:decide_session"),
        reverse("reviews:decide_user", args=[watched.pk]),
    ]

    for url in urls:
        assert reviewer_client.get(url).status_code == 405


def test_hostile_note_is_escaped(reviewer_client, reviewer, watched):
    session = make_session("alice", "s1", NOW, risk_score=80)
    for text in HOSTILE:
        record_decision(reviewer, "legitimate", text, session=session)
        record_decision(reviewer, "legitimate", text, user_id="alice")

    pages = [
        reviewer_client.get(detail_url("s1")),
        reviewer_client.get(reverse("user_detail", args=[watched.pk])),
    ]

    for response in pages:
        for text in HOSTILE:
            assertNotContains(response, text)


# --- Marks in session tables --------------------------------------------------


def test_explorer_marks_current_decision(reviewer_client, reviewer, time_machine):
    decided = make_session("alice", "s1", NOW, risk_score=80)
    make_session("alice", "s2", NOW, risk_score=80)
    record_decision(reviewer, "needs_evidence", "", session=decided)
    time_machine.move_to(NOW + timedelta(minutes=1), tick=False)
    record_decision(reviewer, "confirmed_bot", "", session=decided)

    response = reviewer_client.get(reverse("session_list"))

    assertContains(response, "decision-confirmed_bot")
    assertNotContains(response, "decision-needs_evidence")
    assertContains(response, '<span class="undecided">Undecided</span>', count=1)


def test_user_table_marks_current_decision(reviewer_client, reviewer, watched):
    session = make_session("alice", "s1", NOW, risk_score=80)
    record_decision(reviewer, "legitimate", "", session=session)

    response = reviewer_client.get(reverse("user_detail", args=[watched.pk]))

    table = response.content.decode().split('class="session-table"')[1]
    assert "Legitimate (false positive)" in table


def decide_sessions(reviewer, start, stop):
    for index in range(start, stop):
        session = make_session("alice", f"s{index:03}", NOW, risk_score=80)
        record_decision(reviewer, "legitimate", "", session=session)
        record_decision(reviewer, "confirmed_bot", "", session=session)


def test_explorer_marks_query_count_is_constant(reviewer_client, reviewer):
    decide_sessions(reviewer, 0, 2)
    # The first request of a client also loads and caches the analyst's time zone.
    reviewer_client.get(reverse("session_list"))
    with CaptureQueriesContext(connection) as few:
        reviewer_client.get(reverse("session_list"))
    decide_sessions(reviewer, 2, 40)

    with CaptureQueriesContext(connection) as many:
        response = reviewer_client.get(reverse("session_list"))

    assert len(many) == len(few)
    assertContains(response, "decision-confirmed_bot", count=40)


# --- Decision filter ------------------------------------------------------------


@pytest.fixture(name="decided_sessions")
def decided_sessions_fixture(reviewer, frozen_now, time_machine):
    bot = make_session("alice", "bot", NOW, risk_score=90)
    changed = make_session("alice", "changed", NOW, risk_score=60)
    make_session("alice", "open", NOW, risk_score=70)
    record_decision(reviewer, "confirmed_bot", "", session=bot)
    record_decision(reviewer, "confirmed_bot", "", session=changed)
    time_machine.move_to(NOW + timedelta(minutes=1), tick=False)
    record_decision(reviewer, "legitimate", "", session=changed)


@pytest.mark.parametrize(
    ("decision", "expected"),
    [
        ("confirmed_bot", ["bot"]),
        ("legitimate", ["changed"]),
        ("escalated", []),
        ("undecided", ["open"]),
        ("decided", ["bot", "changed"]),
        ("", ["bot", "changed", "open"]),
    ],
)
def test_decision_filter(reviewer_client, decided_sessions, decision, expected):
    response = reviewer_client.get(
        reverse("session_list"), {"decision": decision, "sort": "session"}
    )

    rows = [session.session_id for session in response.context["table"].rows]
    assert rows == expected


def test_decision_filter_rejects_unknown_value(reviewer_client, decided_sessions):
    response = reviewer_client.get(reverse("session_list"), {"decision": "maybe"})

    assert len(response.context["table"].rows) == 3
    assertContains(response, "Decision &quot;maybe&quot; is invalid")


# --- Export ------------------------------------------------------------------------


def export_rows(*args):
    stdout = io.StringIO()
    call_command("export_sessions", *args, stdout=stdout, stderr=io.StringIO())
    return list(csv.DictReader(io.StringIO(stdout.getvalue())))


def test_export_has_current_decision(reviewer, decided_sessions):
    rows = {row["session_id"]: row for row in export_rows()}

    assert rows["changed"]["decision"] == "legitimate"
    assert rows["changed"]["decided_by"] == "reviewer"
    assert rows["changed"]["decided_at"] == "2026-03-02T12:01:00Z"
    assert rows["bot"]["decided_at"] == "2026-03-02T12:00:00Z"


def test_export_undecided_columns_are_empty(decided_sessions):
    rows = {row["session_id"]: row for row in export_rows()}

    assert rows["open"]["decision"] == ""
    assert rows["open"]["decided_by"] == ""
    assert rows["open"]["decided_at"] == ""


def test_export_neutralises_decided_by(django_user_model):
    analyst = django_user_model.objects.create_user("=cmd", password="unused")
    session = make_session("alice", "s1", NOW, risk_score=80)
    with time_machine.travel(NOW, tick=False):
        record_decision(analyst, "legitimate", "", session=session)

    rows = export_rows()

    assert rows[0]["decided_by"] == "'=cmd"


def test_web_export_filters_by_decision(reviewer_client, decided_sessions):
    response = reviewer_client.get(reverse("session_export"), {"decision": "undecided"})

    text = b"".join(response.streaming_content).decode()
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [row["session_id"] for row in rows] == ["open"]


def test_decisions_cannot_be_bulk_updated(reviewer):
    session = make_session("u", "s-bulk", NOW, risk_score=80)
    record_decision(reviewer, "legitimate", "", session=session)

    with pytest.raises(PermissionError):
        Decision.objects.update(kind="confirmed_bot")

    assert Decision.objects.get().kind == "legitimate"
