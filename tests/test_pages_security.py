"""Every page: login enforced, and text from the API never rendered as markup."""

from datetime import UTC, datetime
from urllib.parse import urlencode

import pytest
from django.contrib.auth.models import Group
from django.test import Client
from django.urls import URLPattern, get_resolver, reverse

from roundtable_sync.models import ScoreChange, Session, SessionEvent, WatchedUser
from roundtable_sync.parsing import parse_events
from roundtable_sync.store import replace_fetched_events, store_sessions
from tests import payloads
from tests.test_store import parsed

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
ESCAPED_SCRIPT = "&lt;script&gt;alert(1)&lt;/script&gt;"
SCRIPT = "<script>alert(1)</script>"
IMAGE = '"><img src=x onerror=alert(1)>'
HOSTILE = f"{SCRIPT}{IMAGE}"
# Routes that anyone may open, or that Django's own apps protect.
PUBLIC = {"login", "logout", "favicon"}


def dashboard_routes():
    for pattern in get_resolver().url_patterns:
        if isinstance(pattern, URLPattern) and pattern.name not in PUBLIC:
            yield pattern


@pytest.mark.django_db
@pytest.mark.parametrize("method", ["get", "post"])
def test_every_route_requires_login(method):
    watched = WatchedUser.objects.create(user_id="alice")
    client = Client()

    for pattern in dashboard_routes():
        kwargs = {"pk": watched.pk} if "pk" in pattern.pattern.converters else {}
        url = reverse(pattern.name, kwargs=kwargs)

        response = getattr(client, method)(url)

        assert response.status_code == 302, url
        assert response["Location"].startswith(reverse("login")), url


@pytest.fixture
def hostile_data(db):
    """A watched user whose every API field carries markup."""
    user_id = f"user{HOSTILE}"
    session_id = f"s{SCRIPT}"
    watched = WatchedUser.objects.create(user_id=user_id, note=HOSTILE)
    session = payloads.session(
        session_id,
        tags=[HOSTILE, "=cmd|' /C calc'!A0"],
        risk_score=40,
        risk_explanation=HOSTILE,
        recommended_action=HOSTILE,
        biometric_checks={HOSTILE: HOSTILE, "agent_behavior": "Detected"},
        device_checks={"vpn": HOSTILE},
        user_logs=payloads.DROP,
    )
    store_sessions(user_id, parsed(session), NOW)
    rescored = dict(session, risk_score=95)
    store_sessions(user_id, parsed(rescored), NOW)
    stored_session = Session.objects.get(pk=session_id)
    events = parse_events(
        {
            "session_id": session_id,
            "event_count": 1,
            "events": [
                {"action": HOSTILE, "user_time": HOSTILE, "unix_timestamp": 17e11}
            ],
        }
    )
    replace_fetched_events(stored_session, events, NOW)
    return watched, session_id


def hostile_pages(watched, session_id):
    detail = reverse("session_detail") + "?" + urlencode({"id": session_id})
    return [
        reverse("overview") + "?range=all",
        reverse("watchlist"),
        reverse("user_detail", kwargs={"pk": watched.pk}),
        reverse("session_list"),
        reverse("session_list") + "?" + urlencode({"tag": HOSTILE, "q": HOSTILE}),
        reverse("session_list") + "?" + urlencode({"action": HOSTILE}),
        detail,
        reverse("watchlist_remove", kwargs={"pk": watched.pk}),
        reverse("workflow:erase_user") + "?" + urlencode({"user": watched.user_id}),
        reverse("preferences"),
    ]


@pytest.mark.django_db
def test_markup_from_api_is_escaped_on_every_page(
    hostile_data, django_user_model, time_machine
):
    # After the stored sessions, so every figure of the overview shows them.
    time_machine.move_to(NOW, tick=False)
    watched, session_id = hostile_data
    assert ScoreChange.objects.count() == 1
    assert SessionEvent.objects.count() == 1
    client = Client()
    analyst = django_user_model.objects.create_user("analyst")
    Group.objects.get(name="analysts").user_set.add(analyst)
    client.force_login(analyst)

    for url in hostile_pages(watched, session_id):
        response = client.get(url)
        html = response.content.decode()

        assert response.status_code == 200, url
        assert SCRIPT not in html, url
        assert "<img src=x" not in html, url


@pytest.mark.django_db
def test_hostile_session_page_shows_escaped_text(hostile_data, django_user_model):
    watched, session_id = hostile_data
    client = Client()
    client.force_login(django_user_model.objects.create_user("analyst"))

    response = client.get(reverse("session_detail"), {"id": session_id})

    assert ESCAPED_SCRIPT in response.content.decode()


@pytest.mark.django_db
def test_unknown_hostile_session_id_is_404_escaped(django_user_model):
    client = Client()
    client.force_login(django_user_model.objects.create_user("analyst"))

    response = client.get(reverse("session_detail"), {"id": HOSTILE})

    html = response.content.decode()
    assert response.status_code == 404
    assert SCRIPT not in html
    assert "<img src=x" not in html
    assert ESCAPED_SCRIPT in html
