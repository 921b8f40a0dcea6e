import csv
import io
import types

import pytest
from django.core.management import call_command
from django.http import QueryDict
from django.urls import reverse
from pytest_django.asserts import assertRedirects

from dashboard.filters import SessionFilterForm
from roundtable_sync.export import stream_sessions_csv
from roundtable_sync.models import Session, SessionCheck
from tests.fixtures_web import (  # noqa: F401
    NOW,
    analyst_client_fixture,
    analyst_fixture,
    anonymous_client_fixture,
    frozen_now_fixture,
    make_session,
)

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
    assert next(stream).startswith("user_id,session_id,")
    assert next(stream).startswith("alice,s1,")


def test_stream_runs_two_queries(analyst_client, django_assert_max_num_queries):
    for index in range(5):
        make_session("alice", f"s{index}", NOW)
    response = analyst_client.get(export_url())

    with django_assert_max_num_queries(2):
        lines = list(response.streaming_content)

    assert len(lines) == 6
