import csv
import io
import types
from datetime import UTC, datetime

import pytest
from django.contrib.auth.models import Permission
from django.core.management import call_command
from django.db import connection
from django.http import QueryDict
from django.test import override_settings
from django.urls import reverse
from pytest_django.asserts import assertRedirects

from dashboard.filters import SessionFilterForm
from dashboard.views.export import audited_stream
from roundtable_sync import export_rows
from roundtable_sync.export import stream_sessions_csv
from roundtable_sync.models import Session, SessionCheck
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
from workflow.models import AuditEvent

pytestmark = pytest.mark.django_db


def export_url(query=""):
    url = reverse("session_export")
    return f"{url}?{query}" if query else url


def content(response):
    return b"".join(response.streaming_content).decode()


def rows(response):
    return list(csv.reader(io.StringIO(content(response))))


def by_session_id(response):
    header, *data = rows(response)
    return {row[1]: dict(zip(header, row, strict=True)) for row in data}


# Access and response


def test_anonymous_redirected_to_login(anonymous_client):
    response = anonymous_client.get(export_url("user=alice"))

    assertRedirects(
        response, f"{reverse('login')}?next={reverse('session_export')}%3Fuser%3Dalice"
    )


def test_post_is_405(analyst_client):
    response = analyst_client.post(export_url())

    assert response.status_code == 405


def test_response_is_streamed_csv_attachment(analyst_client):
    make_session("alice", "s1", NOW)

    response = analyst_client.get(export_url())

    assert response.streaming is True
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert (
        response["Content-Disposition"]
        == 'attachment; filename="sessions-20260302T120000Z.csv"'
    )


def test_content_matches_export_command(analyst_client):
    first = make_session("alice", "s1", NOW, tags=["a", "b"], risk_explanation="x")
    SessionCheck.objects.create(session=first, group="device", name="vpn", status="D")
    make_session("bob", "s2", NOW, risk_score=None, recommended_action=None)
    stdout = io.StringIO()
    call_command("export_sessions", stdout=stdout, stderr=io.StringIO())

    response = analyst_client.get(export_url())

    assert content(response) == stdout.getvalue()


# Filters


def test_exports_exactly_filtered_rows(analyst_client):
    make_session("alice", "match", NOW, risk_score=80, tags=["x"])
    make_session("alice", "low", NOW, risk_score=20, tags=["x"])
    make_session("alice", "untagged", NOW, risk_score=80, tags=["xy"])
    make_session("bob", "other", NOW, risk_score=80, tags=["x"])

    response = analyst_client.get(export_url("user=alice&band=block&tag=x"))

    assert list(by_session_id(response)) == ["match"]


@pytest.fixture(name="varied_sessions")
def varied_sessions_fixture(frozen_now):
    """Sessions that each filter below splits, around midnight in Paris."""
    paris_midnight = datetime(2026, 2, 28, 23, 0, tzinfo=UTC)
    make_session("alice", "a-low", paris_midnight.replace(hour=22), risk_score=10)
    make_session(
        "alice",
        "a-review",
        paris_midnight,
        risk_score=55,
        recommended_action="Manual review or require additional verification",
        tags=["checkout"],
    )
    make_session("bob", "b-block", NOW, risk_score=90, risk_explanation="Needle")
    make_session("bob", "b-unscored", NOW, risk_score=None, recommended_action=None)
    make_session("carol", "c-odd", NOW, risk_score=70, recommended_action="Escalate")


@override_settings(DASHBOARD_TIME_ZONE="Europe/Paris")
@pytest.mark.parametrize(
    "query",
    [
        "score_min=50&score_max=80",
        "flagged=1",
        "action=Escalate",
        "action=Manual+review+or+require+additional+verification",
        "q=needle",
        "q=a-",
        "since=2026-03-01",
        "until=2026-02-28",
        "since=2026-03-01T00:00&until=2026-03-02T12:00",
        "flagged=1&since=2026-02-28&until=2026-03-01&score_min=50",
    ],
)
def test_export_equals_explorer_rows(analyst_client, varied_sessions, query):
    explorer = analyst_client.get(f"{reverse('session_list')}?{query}")

    exported = sorted(by_session_id(analyst_client.get(export_url(query))))
    shown = sorted(row.session_id for row in explorer.context["table"].rows)
    assert not explorer.context["form"].errors
    assert exported == shown
    assert 0 < len(shown) < Session.objects.count()


def test_check_filter_exports_matching_sessions(analyst_client):
    hit = make_session("alice", "hit", NOW)
    SessionCheck.objects.create(
        session=hit, group="device", name="vpn", status="Detected"
    )
    miss = make_session("alice", "miss", NOW)
    SessionCheck.objects.create(
        session=miss, group="device", name="vpn", status="Not detected"
    )

    response = analyst_client.get(export_url("check_name=vpn&check_status=Detected"))

    assert list(by_session_id(response)) == ["hit"]


def test_user_page_export_url_exports_that_user(analyst_client):
    make_session("alice", "s1", NOW)
    make_session("bob", "s2", NOW)
    form = SessionFilterForm(QueryDict(""), user_id="alice")

    response = analyst_client.get(form.export_url())

    assert list(by_session_id(response)) == ["s1"]


def test_no_match_exports_header_only(analyst_client):
    make_session("alice", "s1", NOW)

    response = analyst_client.get(export_url("user=nobody"))

    assert len(rows(response)) == 1


def test_invalid_filter_is_rejected_naming_value(analyst_client):
    make_session("alice", "s1", NOW)

    response = analyst_client.get(export_url("user=alice&score_min=lots"))

    assert response.status_code == 400
    assert '"lots"' in response.content.decode()


# Neutralising and hostile strings


@pytest.mark.parametrize("prefix", ["=", "+", "-", "@", "\t", "\r"])
def test_formula_prefixes_are_neutralized(analyst_client, prefix):
    text = f'{prefix}HYPERLINK("http://x")'
    make_session(text, "s1", NOW, tags=[text], risk_explanation=text)

    response = analyst_client.get(export_url())

    values = by_session_id(response)["s1"]
    assert values["user_id"] == "'" + text
    assert values["risk_explanation"] == "'" + text
    assert values["tags"] == "'" + text


def test_hostile_strings_round_trip_as_text(analyst_client):
    script = "<script>alert(1)</script>"
    image = '"><img src=x onerror=alert(1)>'
    formula = "=cmd|' /C calc'!A0"
    make_session(script, image, NOW, recommended_action=formula, tags=[script])

    response = analyst_client.get(export_url(f"tag={script}"))

    values = by_session_id(response)[image]
    assert values["user_id"] == script
    assert values["recommended_action"] == "'" + formula
    assert values["tags"] == script


# Streaming


def test_stream_is_lazy_generator():
    make_session("alice", "s1", NOW)

    stream = stream_sessions_csv(Session.objects.all())

    assert isinstance(stream, types.GeneratorType)
    assert next(stream)[0].startswith("user_id,session_id,")
    assert next(stream)[0].startswith("alice,s1,")


@pytest.mark.parametrize("size", [5, 50])
def test_stream_query_count_is_fixed(
    analyst_client, django_assert_max_num_queries, size
):
    for index in range(size):
        make_session("alice", f"s{index}", NOW)
    response = analyst_client.get(export_url())

    # The checks present (two), the rows in one chunk, and the audit event.
    # On PostgreSQL the rows are read in a transaction, which inside the
    # test's own transaction is a savepoint and its release.
    expected = 6 if connection.vendor == "postgresql" else 4
    with django_assert_max_num_queries(expected):
        text = b"".join(response.streaming_content).decode()

    assert text.count("\r\n") == size + 1


# Roles and audit


def test_viewer_cannot_export(viewer_client):
    make_session("alice", "s1", NOW)

    response = viewer_client.get(export_url())

    assert response.status_code == 403
    assert not AuditEvent.objects.exists()


def test_viewer_granted_export_can_export(viewer_client, viewer):
    make_session("alice", "s1", NOW)
    viewer.user_permissions.add(
        Permission.objects.get(content_type__app_label="workflow", codename="export")
    )

    response = viewer_client.get(export_url())

    assert response.status_code == 200
    assert len(rows(response)) == 2


def test_viewer_sees_no_export_link(viewer_client):
    response = viewer_client.get(reverse("session_list"))

    assert reverse("session_export").encode() not in response.content


def test_analyst_sees_export_link(analyst_client):
    response = analyst_client.get(reverse("session_list"))

    assert reverse("session_export").encode() in response.content


def test_finished_export_is_audited_with_filter(analyst_client):
    make_session("alice", "s1", NOW)
    make_session("alice", "s2", NOW)
    make_session("bob", "s3", NOW)

    response = analyst_client.get(export_url("user=alice"))
    content(response)

    event = AuditEvent.objects.get()
    assert event.action == "sessions_exported"
    assert event.actor_label == "analyst"
    assert event.details == {"filters": {"user": "alice"}, "rows": 2, "completed": True}


def test_export_is_audited_only_when_streamed(analyst_client):
    make_session("alice", "s1", NOW)

    analyst_client.get(export_url())

    assert not AuditEvent.objects.exists()


def test_export_cut_short_is_audited(analyst, monkeypatch):
    monkeypatch.setattr(export_rows, "CHUNK_SIZE", 1)
    for index in range(3):
        make_session("alice", f"s{index}", NOW)
    lines = stream_sessions_csv(Session.objects.all())
    stream = audited_stream(lines, analyst, {"user": "alice"})
    next(stream)  # the header
    next(stream)  # the first row

    # What a WSGI server does, through the response, when the client leaves.
    stream.close()

    event = AuditEvent.objects.get()
    assert event.details["completed"] is False
    assert event.details["rows"] == 1
    assert event.details["filters"] == {"user": "alice"}


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_abandoned_export_keeps_audit_record(migration_data, analyst):
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL")
    for index in range(3):
        make_session("alice", f"s{index}", NOW)
    lines = stream_sessions_csv(Session.objects.all())
    stream = audited_stream(lines, analyst, {})
    next(stream)
    next(stream)

    stream.close()
    # The export read in a transaction of its own, which must end before the
    # record is written, or closing it would roll the record back.
    lines.close()

    assert AuditEvent.objects.filter(action="sessions_exported").count() == 1


def test_invalid_filter_is_not_audited(analyst_client):
    analyst_client.get(export_url("score_min=high"))

    assert not AuditEvent.objects.exists()
