"""The sandbox's hostile fixture users, synced for real and shown on every page.

The users are polled through the dispatcher and the events task against the
sandbox over HTTP. Then every page that shows their data is parsed. No
element or event-handler attribute from the payloads may exist in the HTML,
and chart data must stay inside its JSON script element. The CSV export must
neutralise every formula, and no page may fail.
"""

import csv
import io
import json
import logging
from html.parser import HTMLParser
from urllib.parse import urlencode

import pytest
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.test import Client, override_settings
from django.urls import resolve, reverse

from roundtable_sync import tags, tasks, watchlist
from roundtable_sync.client import RoundtableClient
from roundtable_sync.errors import InvalidIdError
from roundtable_sync.formulas import FORMULA_PREFIXES
from roundtable_sync.models import (
    PollOutcome,
    PollRecord,
    Session,
    SessionCheck,
    WatchedUser,
)
from roundtable_sync.sandbox import hostile
from tests.conftest import SANDBOX_NOW

pytestmark = pytest.mark.django_db

# Users expected to sync. The oversized user is expected to fail.
SYNCING_USERS = [u for u in hostile.HOSTILE_USER_IDS if u != hostile.OVERSIZED_USER]
# Attributes that run script, which no payload may add.
HANDLER_ATTRIBUTES = {"onerror", "onload", "onclick", "onmouseover"}


class _ElementCollector(HTMLParser):
    """Collect every start tag with its attributes, and each script's text."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.elements = []
        self.scripts = []
        self._in_script = None

    def handle_starttag(self, tag, attrs):
        self.elements.append((tag, dict(attrs)))
        if tag == "script":
            self._in_script = dict(attrs)
            self.scripts.append([dict(attrs), ""])

    def handle_startendtag(self, tag, attrs):
        self.elements.append((tag, dict(attrs)))

    def handle_data(self, data):
        if self._in_script is not None:
            self.scripts[-1][1] += data

    def handle_endtag(self, tag):
        if tag == "script":
            self._in_script = None


def assert_no_payload_markup(html, where):
    """Fail if the page contains any element or handler attribute from a payload."""
    parser = _ElementCollector()
    parser.feed(html)
    parser.close()
    for tag, attrs in parser.elements:
        assert hostile.MARKER not in attrs, f"{where}: unescaped <{tag}> from payload"
        handlers = HANDLER_ATTRIBUTES & attrs.keys()
        assert not handlers, f"{where}: <{tag}> has handler attribute {handlers}"
    for attrs, text in parser.scripts:
        # json_script elements carry data, so each must parse as JSON.
        if attrs.get("type") == "application/json":
            json.loads(text)
        else:
            assert "alert(" not in text, f"{where}: payload inside a script"
    return parser


@pytest.fixture
def api_settings(sandbox, settings, time_machine):
    time_machine.move_to(SANDBOX_NOW, tick=False)
    sandbox.clock.now = SANDBOX_NOW
    settings.ROUNDTABLE_API_URL = sandbox.url
    settings.ROUNDTABLE_API_KEY = sandbox.key
    settings.ROUNDTABLE_MAX_ATTEMPTS = 1
    return settings


@pytest.fixture
def synced(api_settings):
    """Watch every hostile user, poll them all, then fetch events for all."""
    watchlist.add_users(hostile.HOSTILE_USER_IDS, note="Hostile fixture")
    WatchedUser.objects.update(next_poll_at=SANDBOX_NOW)
    tasks.dispatch_polls()
    while tasks.fetch_events(budget=50):
        pass
    return {w.user_id: w for w in WatchedUser.objects.all()}


@pytest.fixture
def analyst_client(django_user_model):
    user = django_user_model.objects.create_user("analyst", password="unused")
    Group.objects.get(name="analysts").user_set.add(user)
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def pages(synced, analyst_client):
    return analyst_client


def _get(client, url, where=None):
    response = client.get(url)
    assert response.status_code == 200, f"{url}: HTTP {response.status_code}"
    html = response.content.decode()
    assert_no_payload_markup(html, where or url)
    return html


def _session_url(session_id):
    return f"{reverse('session_detail')}?{urlencode({'id': session_id})}"


def _csv_rows(response):
    assert response.status_code == 200
    text = b"".join(response.streaming_content).decode()
    return list(csv.reader(io.StringIO(text, newline="")))


# --- Sync and storage --------------------------------------------------------


def test_hostile_users_sync_except_oversized(synced):
    for user_id in SYNCING_USERS:
        watched = synced[user_id]
        assert watched.last_poll_outcome == PollOutcome.SYNCED, (
            f"{user_id!r}: {watched.last_poll_error}"
        )
    oversized = synced[hostile.OVERSIZED_USER]
    assert oversized.last_poll_outcome == PollOutcome.FAILED
    assert "larger than the cap" in oversized.last_poll_error
    assert "ROUNDTABLE_MAX_RESPONSE_MB" in oversized.last_poll_error
    record = PollRecord.objects.get(user_id=hostile.OVERSIZED_USER)
    assert record.error == oversized.last_poll_error


def test_text_payloads_stored_verbatim(synced):
    markup = Session.objects.filter(user_id=hostile.MARKUP_USER)
    # The 300-character session ID is skipped, the other four kept.
    assert markup.count() == 4
    first = markup.get(session_id=f"<i {hostile.MARKER}>markup</i>-1")
    assert first.risk_explanation == hostile.MARKUP
    assert first.recommended_action == hostile.MARKUP
    assert first.tags[0] == hostile.MARKUP
    assert first.checks["biometric"][hostile.MARKUP] == hostile.MARKUP
    assert first.events.first().action == hostile.MARKUP
    long = markup.get(session_id="markup-long")
    assert long.risk_explanation == hostile.LONG_TEXT + hostile.MARKUP
    assert long.has_unindexed_checks
    formulas = Session.objects.filter(user_id=hostile.FORMULA_USER)
    assert formulas.count() == len(hostile.FORMULAS)


def test_value_user_keeps_every_usable_session(synced):
    stored = {s.session_id: s for s in Session.objects.filter(user_id="hostile-values")}
    expected = {f"score-{index}" for index in range(7)} | {
        "score-missing",
        "unknown-enums",
        "null-objects",
        "wrong-types",
        "only-an-id",
        "duplicate",
        "nul-text\ufffd",
        "surrogate-text",
        "bad-events",
    }
    assert set(stored) == expected
    # Scores outside the contract are stored as missing, never coerced.
    for index in range(7):
        assert stored[f"score-{index}"].risk_score is None
    assert stored["duplicate"].risk_score == 90
    assert stored["unknown-enums"].recommended_action == "Quarantine"
    statuses = stored["unknown-enums"].checks["biometric"]
    assert statuses["programmatic_typing"] == "Maybe"
    assert stored["null-objects"].checks == {"biometric": {}, "device": {}}
    assert stored["bad-events"].events.count() == 3


def test_nul_and_surrogates_stored_as_replacement(synced):
    session = Session.objects.get(session_id="nul-text\ufffd")
    text = "before\ufffdafter"
    assert session.risk_explanation == text
    assert session.recommended_action == text
    assert session.tags == [text]
    assert session.checks["biometric"] == {text: text}
    assert session.raw["risk_explanation"] == text
    assert session.events.get().action == text
    assert SessionCheck.objects.filter(session=session, name=text).exists()
    surrogate = Session.objects.get(session_id="surrogate-text")
    assert surrogate.risk_explanation == "lone \ufffd surrogate"
    assert surrogate.tags == ["lone \ufffd surrogate"]
    events = Session.objects.get(session_id=f"markup-events{hostile.MARKUP}").events
    assert events.filter(action=text).exists()


def test_nul_warning_names_user_and_session(api_settings, caplog):
    watchlist.add_users([hostile.VALUES_USER])
    WatchedUser.objects.update(next_poll_at=SANDBOX_NOW)
    with caplog.at_level(logging.WARNING, logger="roundtable_sync.parsing"):
        tasks.dispatch_polls()
    messages = [
        r.getMessage()
        for r in caplog.records
        if "NUL" in r.getMessage() and "of user" in r.getMessage()
    ]
    assert len(messages) == 2
    assert "'nul-text\ufffd' of user 'hostile-values'" in messages[0]
    assert "'surrogate-text' of user 'hostile-values'" in messages[1]


def test_url_special_ids_stored_with_events(synced):
    for user_id in (hostile.URL_USER, hostile.DOT_USER, hostile.DOT_DOT_USER):
        assert Session.objects.filter(user_id=user_id).exists(), user_id
    stored = Session.objects.filter(user_id=hostile.URL_USER)
    ids = set(stored.values_list("session_id", flat=True))
    assert ids == {
        ".",
        "..",
        "a/b",
        "../../admin",
        "?x=1&y=2#frag",
        "%2e%2e",
        "%",
        " . ",
    }
    for session in stored.exclude(session_id__in=[".", ".."]):
        assert not session.needs_events, session.session_id
        assert session.events.exists(), session.session_id
    # The events endpoint takes the ID only in the path, where "." and ".."
    # are dot segments: the fetch is given up at once, not retried.
    for session in stored.filter(session_id__in=[".", ".."]):
        assert not session.needs_events, session.session_id
        assert session.events_attempts == 0, session.session_id
        assert session.events_fetched_at is not None, session.session_id


def test_oversized_user_costs_others_nothing(api_settings):
    watchlist.add_users([hostile.OVERSIZED_USER, "alice@example.com"])
    WatchedUser.objects.update(next_poll_at=SANDBOX_NOW)
    tasks.dispatch_polls()
    alice = WatchedUser.objects.get(user_id="alice@example.com")
    assert alice.last_poll_outcome == PollOutcome.SYNCED
    assert Session.objects.filter(user_id="alice@example.com").exists()
    assert not Session.objects.filter(user_id=hostile.OVERSIZED_USER).exists()


def test_twenty_thousand_events_stored_and_paged(synced, analyst_client):
    session = Session.objects.get(session_id="hostile-events-20000")
    assert session.events.count() == hostile.LARGE_EVENT_COUNT
    assert session.session_time_source == "events"
    url = _session_url("hostile-events-20000")
    first = _get(analyst_client, url)
    assert "20000 events, in the order received; showing 1–200." in first
    parser = assert_no_payload_markup(first, url)
    last_links = [
        attrs["href"]
        for tag, attrs in parser.elements
        if tag == "a" and "events_page=100" in attrs.get("href", "")
    ]
    assert last_links, "no link to the last page of events"
    # The links carry only a query string, relative to the session page.
    last = _get(analyst_client, reverse("session_detail") + last_links[-1])
    assert "showing 19801–20000" in last
    assert "#19999" in last


@override_settings(ROUNDTABLE_EVENTS_PER_MINUTE=0)
def test_session_before_events_renders(api_settings, analyst_client):
    watchlist.add_users([hostile.EVENTS_USER])
    WatchedUser.objects.update(next_poll_at=SANDBOX_NOW)
    tasks.dispatch_polls()
    _get(analyst_client, _session_url("hostile-events-20000"))


# --- Pages -------------------------------------------------------------------


def test_overview_and_user_pages_escape(pages, synced):
    for key in ("24h", "7d", "30d", "all"):
        html = _get(pages, f"/?range={key}")
    # json_script escapes <, > and &, so no payload can close the element.
    assert f"<u {hostile.MARKER}" not in html
    for user_id, watched in synced.items():
        _get(pages, reverse("user_detail", args=[watched.pk]), user_id)


def test_session_pages_escape_and_round_trip(pages, synced):
    for session in Session.objects.all():
        response = pages.get(_session_url(session.session_id))
        assert response.status_code == 200, session.session_id
        assert response.context["session"].session_id == session.session_id
        assert_no_payload_markup(response.content.decode(), session.session_id)
    # Every session link on a user page opens that session's page.
    for user_id in (hostile.URL_USER, hostile.MARKUP_USER, hostile.FORMULA_USER):
        parser = assert_no_payload_markup(
            _get(pages, reverse("user_detail", args=[synced[user_id].pk])), user_id
        )
        hrefs = [
            attrs["href"]
            for tag, attrs in parser.elements
            if tag == "a" and attrs.get("href", "").startswith(_session_url("")[:-3])
        ]
        opened = {pages.get(href).context["session"].session_id for href in hrefs}
        stored = set(
            Session.objects.filter(user_id=user_id).values_list("session_id", flat=True)
        )
        assert opened == stored, user_id


def test_explorer_escapes_and_searches(pages):
    queries = [
        {},
        {"q": hostile.MARKUP},
        {"q": "%"},
        {"q": "_"},
        {"tag": hostile.MARKUP},
        {"action": hostile.MARKUP},
        {"check_name": hostile.MARKUP, "check_status": hostile.MARKUP},
        {"user": hostile.URL_USER},
        {"user": hostile.FORMULA_USER},
        {"user": ".."},
        {"sort": hostile.MARKUP, "after": hostile.MARKUP},
    ]
    for query in queries:
        _get(pages, f"/sessions/?{urlencode(query)}", repr(query))
    searches = {
        "<script": hostile.MARKUP_USER,
        "\u202eexe": hostile.MARKUP_USER,
        "=HYPERLINK": hostile.FORMULA_USER,
        "?x=1&y=2#frag": hostile.URL_USER,
        "before\ufffdafter": hostile.VALUES_USER,
    }
    for text, user_id in searches.items():
        response = pages.get("/sessions/", {"q": text})
        assert_no_payload_markup(response.content.decode(), text)
        found = {row.user_id for row in response.context["table"].rows}
        assert user_id in found, text
    tagged = pages.get("/sessions/", {"tag": hostile.MARKUP}).context["table"].rows
    assert [row.user_id for row in tagged] == [hostile.MARKUP_USER]


def test_workflow_pages_escape(pages):
    tags.add_tags([hostile.MARKUP, hostile.FORMULAS[0]])
    for name in (
        "reviews:queue",
        "reviews:calibration",
        "alerts:inbox",
        "workflow:audit_list",
        "watchlist",
        "tag_list",
    ):
        _get(pages, reverse(name), name)
    _get(pages, f"{reverse('watchlist')}?{urlencode({'q': hostile.URL_USER})}")


def test_export_neutralises_every_formula(pages):
    rows = _csv_rows(pages.get("/sessions/export.csv"))
    header, body = rows[0], rows[1:]
    assert len(body) == Session.objects.count()
    for row in [header, *body]:
        for cell in row:
            runs = cell.lstrip().startswith(FORMULA_PREFIXES)
            assert not runs or cell.startswith("'"), f"formula cell {cell[:40]!r}"
    formula_rows = [row for row in body if row[0] == "'" + hostile.FORMULA_USER]
    assert len(formula_rows) == len(hostile.FORMULAS)
    for row in formula_rows:
        for cell in row[1:2] + row[5:8]:
            assert cell.startswith("'"), f"cell {cell!r} not neutralised"
    filtered = _csv_rows(pages.get("/sessions/export.csv", {"user": hostile.URL_USER}))
    assert len(filtered) - 1 == Session.objects.filter(user_id=hostile.URL_USER).count()


# --- URLs --------------------------------------------------------------------

URL_SESSION_IDS = ["a/b", "../../admin", "?x=1&y=2#frag", "%2e%2e", "%", " . "]


def test_client_urls_round_trip_special_ids(sandbox):
    with RoundtableClient(sandbox.key, sandbox.url, max_attempts=1) as client:
        for user_id in (hostile.URL_USER, hostile.DOT_USER, hostile.DOT_DOT_USER):
            listing = client.user_sessions(user_id)
            assert listing.owner == user_id
        for session_id in [*URL_SESSION_IDS, ".", ".."]:
            report = client.session_report(session_id)
            assert report.session_id == session_id
            assert report.user_id == hostile.URL_USER
        for session_id in URL_SESSION_IDS:
            events = client.session_events(session_id)
            assert events.session_id == session_id
        for session_id in (".", ".."):
            with pytest.raises(InvalidIdError, match="dot segment"):
                client.session_events(session_id)
    paths = [request.path for request in sandbox.requests]
    assert "/v1/sessions/report?sessionId=.." in paths
    assert "/v1/sessions/%3Fx%3D1%26y%3D2%23frag/events" in paths


def test_dashboard_urls_round_trip_special_ids(synced, analyst_client):
    for user_id in (hostile.URL_USER, hostile.DOT_USER, hostile.DOT_DOT_USER):
        response = analyst_client.get(f"/sessions/?{urlencode({'user': user_id})}")
        found = {row.user_id for row in response.context["table"].rows}
        assert found == {user_id}
    for session_id in [*URL_SESSION_IDS, ".", ".."]:
        url = _session_url(session_id)
        assert resolve(url.partition("?")[0]).url_name == "session_detail"
        response = analyst_client.get(url)
        assert response.context["session"].session_id == session_id


def test_demo_setup_watches_hostile_users(api_settings):
    call_command("demo_setup", "--watch-hostile-users", stdout=io.StringIO())
    watched = set(WatchedUser.objects.values_list("user_id", flat=True))
    assert watched == set(hostile.HOSTILE_USER_IDS)
